"""The "Rig" panel: how the active armature maps onto the canonical body, fixable by hand."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, active_armature


class POSEFORGE_PT_rig(PoseForgePanel, bpy.types.Panel):
    bl_label = "Rig"
    bl_idname = "POSEFORGE_PT_rig"
    bl_order = 0

    def draw(self, context):
        layout = self.layout
        obj = active_armature(context)
        if obj is None:
            layout.label(text="Select a character's armature", icon="INFO")
            return
        settings = obj.poseforge_rig
        layout.prop(settings, "preset")
        row = layout.row(align=True)
        row.operator("poseforge.match_rig", text="Match Bones" if not settings.joints else "Match Again",
                     icon="BONE_DATA").reset = False
        if settings.overrides():
            row.operator("poseforge.match_rig", text="", icon="LOOP_BACK").reset = True
        if settings.status:
            layout.label(text=settings.status, icon="CHECKMARK" if not settings.unmatched else "INFO")
        if settings.unmatched:
            layout.label(text=f"Unmatched: {settings.unmatched}", icon="ERROR")
        if not settings.joints:
            return
        col = layout.column(align=True)
        for item in settings.joints:
            row = col.row(align=True)
            split = row.split(factor=0.4, align=True)
            split.label(text=item.joint.replace("_", " ").title(),
                        icon="PINNED" if item.override else ("BLANK1" if item.bone else "ERROR"))
            split.prop_search(item, "bone", obj.data, "bones", text="")


CLASSES = (POSEFORGE_PT_rig,)
