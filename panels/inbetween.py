"""The "In-between" panel: Fill Keyframe Gaps and its hypotheses (Previous / Next, Accept / Discard)."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, active_armature, draw_error, draw_frame_range, draw_job

_FILL_JOBS = {"Fill keyframe gaps"}


def _draw_pending(layout, context) -> None:
    from ..operators.inbetween import pending_fill, pending_problem

    p = pending_fill()
    if p is None:
        return
    box = layout.box()
    problem = pending_problem(p)
    if problem:
        box.label(text=problem, icon="ERROR")
        box.label(text="The other hypotheses can no longer be shown")
        box.operator("poseforge.inbetween_accept", text="Dismiss", icon="X")
        return
    frames = p.plan.frames
    box.label(text=f"'{p.object_name}', frames {frames[0]}-{frames[-1]}", icon="ARMATURE_DATA")
    box.label(text=f"Hypothesis {p.index + 1} / {p.count}", icon="OUTLINER_OB_ARMATURE")
    row = box.row(align=True)
    row.operator("poseforge.inbetween_cycle", text="Previous", icon="TRIA_LEFT").step = -1
    row.operator("poseforge.inbetween_cycle", text="Next", icon="TRIA_RIGHT").step = 1
    row = box.row(align=True)
    row.operator("poseforge.inbetween_accept", text="Accept", icon="CHECKMARK")
    row.operator("poseforge.inbetween_discard", text="Discard", icon="TRASH")


class POSEFORGE_PT_inbetween(PoseForgePanel, bpy.types.Panel):
    bl_label = "In-between"
    bl_idname = "POSEFORGE_PT_inbetween"
    bl_order = 2

    def draw(self, context):
        layout = self.layout
        settings = context.scene.poseforge_inbetween
        obj = active_armature(context)
        if obj is None:
            layout.label(text="No armature selected", icon="ERROR")
        else:
            rig = obj.poseforge_rig
            layout.label(text=rig.status or "Bones not matched yet (matched on first use)", icon="ARMATURE_DATA")

        running = draw_job(layout, context, _FILL_JOBS)
        draw_error(layout, context)

        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        draw_frame_range(col, context.scene, settings)
        col.prop(settings, "hypotheses")
        sub = col.column()
        sub.active = settings.hypotheses > 1
        sub.prop(settings, "seed")
        col.prop(settings, "foot_contact")
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not running
        row.operator("poseforge.fill_keyframe_gaps", icon="IPO_BEZIER")
        _draw_pending(layout, context)


CLASSES = (POSEFORGE_PT_inbetween,)
