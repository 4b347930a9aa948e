"""Operators: one module per user action, thin (read the rig -> backend job -> write poses/keys).

Long jobs go through the shared runner in :mod:`._job` (modal in the UI, blocking in background
mode, one undo step, nothing changed on failure or cancel).
"""
from __future__ import annotations

import importlib

_MODULES = ("backend", "rig_match", "snap", "inbetween", "text2pose", "preview")


def _classes():
    out = []
    for name in _MODULES:
        out.extend(importlib.import_module(f".{name}", __package__).CLASSES)
    return out


def register() -> None:
    import bpy

    for cls in _classes():
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    from . import _job

    _job.unregister()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
