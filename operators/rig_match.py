"""Match Rig: show how the active armature maps onto the canonical body, so the animator can fix
a joint by hand.

The matching (a shipped preset, or automatic matching by canonicalised bone names plus the
hierarchy, see backend/matching.py) is listed in ``Object.poseforge_rig.joints``; a bone the
animator picks there becomes an override that every PoseForge operator passes to the rig bridge.
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty

from .. import properties
from ..backend.skeleton import JOINT_NAMES
from ..rig.bridge import RigError
from ._job import OperatorError, job_running
from ._rig import active_armature, armature_rig_map


def _describe(rigmap) -> str:
    n = len(rigmap.bones)
    if rigmap.source.startswith("preset:"):
        how = f"Preset '{rigmap.source.split(':', 1)[1].split('+')[0]}'"
    else:
        how = f"Matched by names and hierarchy (confidence {rigmap.confidence:.2f})"
    if rigmap.source.endswith("+overrides"):
        how += ", with joints set by hand"
    return f"{how}: {n} of {len(JOINT_NAMES)} joints"


def _fill(settings, mapping: dict[str, str]) -> None:
    """Rewrite the joint list from ``mapping``; joints set by hand keep their bone."""
    keep = settings.overrides()
    properties._filling = True
    try:
        settings.joints.clear()
        for joint in JOINT_NAMES:
            item = settings.joints.add()
            item.joint = joint
            item.bone = keep.get(joint, mapping.get(joint, ""))
            item.override = joint in keep
    finally:
        properties._filling = False


class POSEFORGE_OT_match_rig(bpy.types.Operator):
    """Match the bones of the active armature to the body joints PoseForge uses, and list them so you can fix a joint by hand"""

    bl_idname = "poseforge.match_rig"
    bl_label = "Match Rig"
    bl_options = {"REGISTER", "UNDO"}

    reset: BoolProperty(name="Forget Hand Fixes", default=False,
                        description="Drop the bones set by hand and match again from scratch")

    @classmethod
    def poll(cls, context):
        if job_running():
            cls.poll_message_set("A PoseForge job is running")
            return False
        return True

    def execute(self, context):
        try:
            obj = active_armature(context)
        except OperatorError as exc:
            self.report({"ERROR"}, f"{exc.message}. {exc.hint}" if exc.hint else exc.message)
            return {"CANCELLED"}
        settings = obj.poseforge_rig
        if self.reset:
            for item in settings.joints:
                item.override = False
        try:
            rigmap = armature_rig_map(obj)
        except RigError as exc:
            # show what automatic matching finds, so the missing joints can be set by hand
            from ..backend.matching import match_skeleton

            bones = obj.data.bones
            res = match_skeleton([b.name for b in bones], [b.parent.name if b.parent else None for b in bones])
            _fill(settings, dict(res.mapping))
            settings.matched_preset = ""
            settings.unmatched = ", ".join(j for j in res.unmatched if j not in settings.overrides())
            settings.status = str(exc)
            self.report({"WARNING"}, f"{exc}")
            return {"FINISHED"}
        _fill(settings, rigmap.bones)
        settings.matched_preset = rigmap.source
        settings.unmatched = ", ".join(rigmap.unmatched)
        settings.status = _describe(rigmap)
        self.report({"INFO"}, settings.status)
        return {"FINISHED"}


CLASSES = (POSEFORGE_OT_match_rig,)
