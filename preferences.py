"""Add-on preferences: where the models run (backend, Python interpreter, device) and their weights.

``bl_idname = __package__`` so the preferences follow the extension wherever Blender installs it
(``bl_ext.<repo>.poseforge``) and also when the repository is registered directly in tests.
"""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import AddonPreferences

BACKEND_ITEMS = [
    ("AUTO", "Automatic", "In Blender's own Python when torch can be imported there, otherwise in a "
     "child process started from the Python interpreter below"),
    ("IN_PROCESS", "In Blender", "Run the models in Blender's own Python (it needs torch installed)"),
    ("CHILD_PROCESS", "Child Process", "Run the models in a separate Python process (an interpreter "
     "that has torch); Blender stays responsive and never imports torch"),
]

DEVICE_ITEMS = [
    ("AUTO", "Automatic", "The GPU when CUDA is usable, otherwise the CPU"),
    ("CPU", "CPU", "Always the CPU"),
    ("CUDA", "CUDA", "An NVIDIA GPU through CUDA (fails with a clear message when none is usable)"),
]


def _backend_changed(self, context) -> None:
    # the job runner caches one backend object; a changed setting makes it start a new one
    from .operators import _job

    _job.invalidate_backend()


class POSEFORGE_AP_preferences(AddonPreferences):
    bl_idname = __package__

    backend: EnumProperty(name="Backend", items=BACKEND_ITEMS, default="AUTO", update=_backend_changed,
                          description="Where the PoseForge models run")
    python_path: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="", update=_backend_changed,
        description="Python interpreter with torch installed, used for the child-process backend "
                    "(for example the 'python' of a virtual environment)")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO", update=_backend_changed,
                         description="Device the models run on")
    weights_dir: StringProperty(
        name="Weights Folder", subtype="DIR_PATH", default="",
        description="Folder with your own trained weights (safetensors + model card); empty uses the "
                    "weights shipped with the extension")

    def draw(self, context) -> None:
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "backend")
        sub = col.column()
        sub.active = self.backend != "IN_PROCESS"
        sub.prop(self, "python_path")
        col.prop(self, "device")
        col.prop(self, "weights_dir")
        row = layout.row()
        row.operator("poseforge.test_backend", icon="PLAY")
        job = getattr(context.window_manager, "poseforge_job", None)
        if job is not None and job.backend_status:
            layout.label(text=job.backend_status, icon="INFO")


def get_preferences(context=None):
    """The add-on preferences, or ``None`` when the add-on is registered without an entry in
    ``Preferences.addons`` (a script calling ``register()`` directly)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def backend_settings(context=None) -> dict:
    """The backend choice as plain data.

    Returns:
        ``{"kind": "AUTO" | "IN_PROCESS" | "CHILD_PROCESS", "python": str, "device": "auto" |
        "cpu" | "cuda", "weights_dir": str | None}`` (defaults when no preferences exist).
    """
    prefs = get_preferences(context)
    if prefs is None:
        return {"kind": "AUTO", "python": "", "device": "auto", "weights_dir": None}
    weights = bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else None
    return {"kind": prefs.backend, "python": bpy.path.abspath(prefs.python_path) if prefs.python_path else "",
            "device": prefs.device.lower(), "weights_dir": weights}


def register() -> None:
    bpy.utils.register_class(POSEFORGE_AP_preferences)


def unregister() -> None:
    bpy.utils.unregister_class(POSEFORGE_AP_preferences)
