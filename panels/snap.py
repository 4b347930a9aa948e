"""The "Snap" panel: Snap to Plausible Pose and Find / Fix Implausible Keys (DPoser)."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, active_armature, draw_error, draw_job

_SNAP_JOBS = {"Snap to plausible pose", "Find implausible keys", "Fix implausible keys"}


class POSEFORGE_PT_snap(PoseForgePanel, bpy.types.Panel):
    bl_label = "Snap"
    bl_idname = "POSEFORGE_PT_snap"
    bl_order = 1

    def draw(self, context):
        layout = self.layout
        settings = context.scene.poseforge_snap
        obj = active_armature(context)

        # rig mapping status, with the way to the matching
        row = layout.row(align=True)
        if obj is None:
            row.label(text="No armature selected", icon="ERROR")
        else:
            rig = obj.poseforge_rig
            status = rig.status or "Bones not matched yet (matched on first use)"
            row.label(text=status, icon="ARMATURE_DATA")
            row.operator("poseforge.match_rig", text="", icon="BONE_DATA")

        running = draw_job(layout, context, _SNAP_JOBS)
        draw_error(layout, context)

        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "strength")
        col.prop(settings, "pinned")
        col.prop(settings, "scope")
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not running
        row.operator("poseforge.snap_pose", icon="ARMATURE_DATA")

        # implausible keys
        box = layout.box()
        box.label(text="Implausible Keys", icon="ACTION")
        col = box.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "threshold")
        row = box.row(align=True)
        row.enabled = not running
        row.operator("poseforge.score_keys", text="Find", icon="VIEWZOOM")
        row.operator("poseforge.fix_keys", text="Fix", icon="MODIFIER")
        job = context.window_manager.poseforge_job
        if job.scored_keys and obj is not None and job.scored_object == obj.name:
            box.label(text=f"Worst of {job.scored_count} keys:")
            col = box.column(align=True)
            for item in job.scored_keys:
                row = col.row(align=True)
                above = item.score > settings.threshold
                op = row.operator("poseforge.jump_to_key", text=f"Frame {item.frame}",
                                  icon="ERROR" if above else "KEYFRAME", emboss=False)
                op.frame = item.frame
                row.label(text=f"{item.score:.3f}")


CLASSES = (POSEFORGE_PT_snap,)
