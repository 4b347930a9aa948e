"""Sidebar panels: 3D View > Sidebar (N) > "PoseForge", one panel per action.

"Rig" (how the armature maps onto the canonical body) comes first, then "Snap" (this release);
Generate, In-between and Preview panels join later with higher ``bl_order``.
"""
from __future__ import annotations

import importlib

_MODULES = ("rig", "snap", "inbetween", "generate", "edit", "preview")


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

    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
