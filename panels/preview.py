"""The "Textured Preview" panel: Render Textured Preview (DMM) and its settings."""
from __future__ import annotations

import bpy

from ._common import PoseForgePanel, active_armature, draw_error, draw_frame_range, draw_job

_PREVIEW_JOBS = {"Render textured preview"}


class POSEFORGE_PT_preview(PoseForgePanel, bpy.types.Panel):
    bl_label = "Textured Preview"
    bl_idname = "POSEFORGE_PT_preview"
    bl_order = 5

    def draw(self, context):
        from ..rig.preview_labels import preview_size

        layout = self.layout
        scene = context.scene
        settings = scene.poseforge_preview
        obj = active_armature(context)
        if obj is None:
            layout.label(text="No armature selected", icon="ERROR")
        if scene.camera is None:
            layout.label(text="No scene camera: add one", icon="ERROR")

        running = draw_job(layout, context, _PREVIEW_JOBS)
        draw_error(layout, context)

        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        draw_frame_range(col, scene, settings)
        col.prop(settings, "height")
        width, height = preview_size(scene, settings.height)
        col.label(text=f"{width} x {height} px, {scene.render.fps / scene.render.fps_base:.4g} fps")
        col.prop(settings, "reference")
        if settings.reference == "IMAGE":
            col.prop(settings, "reference_image")
            col.prop(settings, "reference_frame")
        else:
            row = col.row(heading="Reference Frame")
            row.prop(settings, "use_reference_frame", text="")
            sub = row.row()
            sub.active = settings.use_reference_frame
            sub.prop(settings, "reference_frame", text="")
        col.prop(settings, "output")
        if not settings.output and not bpy.data.filepath:
            col.label(text="Save the .blend or choose an output path", icon="INFO")
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not running
        row.operator("poseforge.render_preview", icon="RENDER_ANIMATION")


CLASSES = (POSEFORGE_PT_preview,)
