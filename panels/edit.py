"""The "Edit" panel: change the current pose with an instruction (Apply), make Variations of it,
or Mix body parts in from a second pose (another armature or a stored pose)."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, draw_error, draw_job
from .generate import draw_candidates, draw_rig_status

_EDIT_JOBS = {"Edit pose", "Pose variations", "Mix poses"}


def _stored_label(settings) -> str:
    from ..operators.text2pose import stored_pose_info

    info = stored_pose_info(settings.stored_pose)
    if info is None:
        return "No pose stored" if not settings.stored_pose else "The stored pose cannot be read"
    return f"Stored: '{info.get('armature', '?')}', frame {info.get('frame', '?')}"


class POSEFORGE_PT_edit(PoseForgePanel, bpy.types.Panel):
    bl_label = "Edit"
    bl_idname = "POSEFORGE_PT_edit"
    bl_order = 4

    def draw(self, context):
        layout = self.layout
        settings = context.scene.poseforge_edit
        draw_rig_status(layout, context)
        running = draw_job(layout, context, _EDIT_JOBS)
        draw_error(layout, context)

        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "candidates")
        col.prop(settings, "seed")
        col.prop(settings, "pinned")

        # edit with an instruction
        box = layout.box()
        box.label(text="Instruction", icon="GREASEPENCIL")
        box.prop(settings, "instruction", text="")
        row = box.row()
        row.enabled = not running
        row.operator("poseforge.edit_pose", text="Apply", icon="CHECKMARK")

        # variations
        box = layout.box()
        box.label(text="Variations", icon="MOD_NOISE")
        box.prop(settings, "strength")
        row = box.row()
        row.enabled = not running
        row.operator("poseforge.pose_variations", text="Variations", icon="SHADERFX")

        # mix
        box = layout.box()
        box.label(text="Mix", icon="MOD_ARMATURE")
        box.prop(settings, "mix_source", text="")
        if settings.mix_source == "ARMATURE":
            box.prop(settings, "mix_armature", text="")
        else:
            row = box.row(align=True)
            row.label(text=_stored_label(settings), icon="CHECKMARK" if settings.stored_pose else "INFO")
            if settings.stored_pose:
                row.operator("poseforge.clear_stored_pose", text="", icon="X")
        box.operator("poseforge.store_pose", text="Store Pose", icon="COPYDOWN")
        row = box.row(align=True)
        for part in ("arms", "legs", "torso", "head"):
            row.prop(settings, f"mix_{part}", toggle=True)
        row = box.row()
        row.enabled = not running
        row.operator("poseforge.mix_poses", text="Mix", icon="AUTOMERGE_ON")

        draw_candidates(layout, context, {"edit", "variations"})


CLASSES = (POSEFORGE_PT_edit,)
