"""What the PoseForge panels share: the tab, the active armature, the job progress bar."""
from __future__ import annotations

CATEGORY = "PoseForge"


class PoseForgePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


def active_armature(context):
    """The active object when it is an armature, else ``None``."""
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


def draw_job(layout, context, kinds: set[str] | None = None) -> bool:
    """Draw the running job's progress bar and message (Esc cancels); True when one runs.

    ``kinds`` limits it to jobs whose label is in the set (None: any job).
    """
    job = context.window_manager.poseforge_job
    if not job.running or (kinds is not None and job.kind not in kinds):
        return False
    col = layout.column(align=True)
    text = f"{job.kind}: {job.message}" if job.message else job.kind
    if hasattr(layout, "progress"):  # Blender 4.0+
        col.progress(factor=job.progress, type="BAR", text=text)
    else:
        col.label(text=f"{text} ({job.progress:.0%})")
    col.label(text="Esc or right-click cancels", icon="CANCEL")
    return True


def draw_frame_range(col, scene, settings) -> None:
    """The frame range settings (``range_mode``, and ``frame_start`` / ``frame_end`` when custom) of
    ``settings``, or the scene's preview / scene range they stand for."""
    col.prop(settings, "range_mode")
    if settings.range_mode == "CUSTOM":
        sub = col.column(align=True)
        sub.prop(settings, "frame_start")
        sub.prop(settings, "frame_end")
    elif scene.use_preview_range:
        col.label(text=f"Preview range {scene.frame_preview_start}-{scene.frame_preview_end}")
    else:
        col.label(text=f"Frames {scene.frame_start}-{scene.frame_end}")


def draw_error(layout, context) -> None:
    job = context.window_manager.poseforge_job
    if job.last_error and not job.running:
        box = layout.box()
        box.label(text=job.last_error, icon="ERROR")
