"""PoseForge: learned human-pose models for character animators in Blender.

The repository root is the Blender extension (see blender_manifest.toml).  Importing this package
imports neither ``bpy`` nor ``torch``, so ``python -m poseforge.backend`` and the ``backend``
tests run in any Python.  Blender calls :func:`register` / :func:`unregister`; only they import
the Blender-side modules (preferences, properties, operators, panels).
"""

_MODULES = ("preferences", "properties", "operators", "panels")


def _submodules():
    import importlib

    return [importlib.import_module(f".{name}", __package__) for name in _MODULES]


def register() -> None:
    """Register the add-on preferences, the Scene / Object / WindowManager properties, the
    operators and the sidebar panels (in that order)."""
    for mod in _submodules():
        mod.register()


def unregister() -> None:
    """Undo :func:`register` in reverse order and stop a running backend process."""
    for mod in reversed(_submodules()):
        mod.unregister()
