"""POSEFORGE_OT_test_backend: run the "ping" job on the backend the preferences choose."""
from __future__ import annotations

import bpy

from ._job import JobOperator, get_backend


class POSEFORGE_OT_test_backend(JobOperator, bpy.types.Operator):
    """Start the PoseForge backend chosen in the preferences and check that torch runs there"""

    bl_idname = "poseforge.test_backend"
    bl_label = "Test Backend"
    bl_options = {"REGISTER"}

    job_kind = "ping"
    job_label = "Test backend"

    def prepare(self, context) -> dict:
        context.window_manager.poseforge_job.backend_status = ""
        return {"echo": "poseforge"}

    def apply(self, context, result: dict) -> str:
        backend = get_backend(context)
        text = (f"Backend OK: {backend.name}, torch {result.get('torch', '?')}, "
                f"device {result.get('device', '?')}" + (" (CUDA available)" if result.get("cuda") else ""))
        context.window_manager.poseforge_job.backend_status = text
        return text

    def _fail(self, context, message, hint=None):
        context.window_manager.poseforge_job.backend_status = f"Backend failed: {message}"
        return super()._fail(context, message, hint)


CLASSES = (POSEFORGE_OT_test_backend,)
