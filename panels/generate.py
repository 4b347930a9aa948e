"""The "Generate" panel: a prompt (typed or from a preset), candidates, seed, and the candidates
to choose from (Previous / Next, Accept / Discard)."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, active_armature, draw_error, draw_job

_GENERATE_JOBS = {"Generate poses"}


def draw_candidates(layout, context, kinds: set[str]) -> None:
    """Draw the waiting candidates of the given kinds (``generate`` / ``edit`` / ``variations``):
    which one is shown, Previous / Next, Accept / Discard; or why they can no longer be shown."""
    from ..operators.text2pose import CANDIDATE_OPERATORS, pending_candidates, pending_problem

    p = pending_candidates()
    if p is None or p.kind not in kinds:
        return
    box = layout.box()
    problem = pending_problem(p)
    if problem:
        box.label(text=problem, icon="ERROR")
        box.label(text="The other candidates can no longer be shown")
        box.operator("poseforge.candidates_accept", text="Dismiss", icon="X")
        return
    cycle, discard = CANDIDATE_OPERATORS[p.kind]
    box.label(text=f"'{p.object_name}': {p.label}", icon="ARMATURE_DATA")
    note = p.notes[p.index] if p.notes else ""
    box.label(text=f"Candidate {p.index + 1} / {p.count}" + (f" ({note})" if note else ""),
              icon="OUTLINER_OB_ARMATURE")
    if p.message:
        box.label(text=p.message, icon="INFO")
    row = box.row(align=True)
    row.operator(cycle, text="Previous", icon="TRIA_LEFT").step = -1
    row.operator(cycle, text="Next", icon="TRIA_RIGHT").step = 1
    row = box.row(align=True)
    row.operator("poseforge.candidates_accept", text="Accept", icon="CHECKMARK")
    row.operator(discard, text="Discard", icon="TRASH")


def draw_rig_status(layout, context) -> None:
    obj = active_armature(context)
    if obj is None:
        layout.label(text="No armature selected", icon="ERROR")
    else:
        rig = obj.poseforge_rig
        layout.label(text=rig.status or "Bones not matched yet (matched on first use)", icon="ARMATURE_DATA")


class POSEFORGE_PT_generate(PoseForgePanel, bpy.types.Panel):
    bl_label = "Generate"
    bl_idname = "POSEFORGE_PT_generate"
    bl_order = 3

    def draw(self, context):
        layout = self.layout
        settings = context.scene.poseforge_generate
        draw_rig_status(layout, context)
        running = draw_job(layout, context, _GENERATE_JOBS)
        draw_error(layout, context)

        layout.prop(settings, "preset", text="")
        layout.prop(settings, "prompt", text="", icon="OUTLINER_DATA_GP_LAYER")
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "candidates")
        col.prop(settings, "seed")
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not running
        row.operator("poseforge.generate_poses", text="Generate", icon="OUTLINER_OB_ARMATURE")
        draw_candidates(layout, context, {"generate"})


CLASSES = (POSEFORGE_PT_generate,)
