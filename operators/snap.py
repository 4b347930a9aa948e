"""Snap to Plausible Pose, Find / Fix Implausible Keys (DPoser prior, arXiv 2312.05541).

Thin operators: read the armature through the rig bridge -> a backend job -> write the result
back through the bridge, in one undo step.  Which keys are written:

* Snap, current frame: the pose is set; a bone is keyed only if it already had F-Curves or
  auto-keying is on (then every written bone is keyed).
* Snap, keys in range / Fix Implausible Keys: every written frame is keyed (those frames are
  keys already).  Bones outside the rig map are never touched.
"""
from __future__ import annotations

import bpy
from bpy.props import IntProperty

from ..backend.skeleton import NUM_JOINTS
from ..rig.bridge import RigError, read_action, read_offsets, read_pose, write_pose
from ._job import JobError, JobOperator, OperatorError
from ._rig import (active_armature, armature_rig_map, keyed_frames_in_range, mapped_bones, pinned_joints,
                   poses_from_result, poses_to_request)

#: Worst keys kept for the panel.
WORST_KEYS_SHOWN = 8


def _ik_note(rigmap) -> str:
    """Tell the animator which IK constraints writing the pose muted (they would override it)."""
    if not rigmap.ik_constraints:
        return ""
    bones = ", ".join(sorted({b for b, _ in rigmap.ik_constraints}))
    return f"; IK constraints on {bones} were muted so the pose shows (Undo brings them back)"


def _weights_dir(context):
    from ..preferences import backend_settings

    return backend_settings(context)["weights_dir"]


class _ArmatureJob(JobOperator):
    user_errors = (OperatorError, JobError, RigError)

    def _read(self, context, keys_only: bool) -> dict:
        """Read the active armature: current pose, or the keyed frames in the scene range."""
        obj = active_armature(context)
        rigmap = armature_rig_map(obj)
        scene = context.scene
        if keys_only:
            frames = keyed_frames_in_range(obj, scene, rigmap)
            local, root, offsets = read_action(obj, rigmap, frames, with_offsets=True)
        else:
            frames = [scene.frame_current]
            local, root = read_pose(obj, rigmap)
            local, root = local[None], root[None]
            offsets = read_offsets(obj, rigmap)[None]
        self._obj_name = obj.name
        self._rigmap = rigmap
        self._frames = frames
        request = poses_to_request(local, root)
        request["weights_dir"] = _weights_dir(context)
        request["offsets"] = offsets.tolist()  # the rig's own proportions: pins hold on THIS rig
        return request

    def _read_for_snap(self, context, keys_only: bool) -> dict:
        """:meth:`_read` plus the pinned joints and strength of the Snap settings."""
        settings = context.scene.poseforge_snap
        request = self._read(context, keys_only)
        obj = bpy.data.objects[self._obj_name]
        request["pinned"] = pinned_joints(obj, self._rigmap, settings.pinned).tolist()
        request["strength"] = float(settings.strength)
        return request

    def _target(self):
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None or obj.type != "ARMATURE":
            raise OperatorError(f"The armature '{self._obj_name}' was removed while the job ran; nothing changed")
        return obj

    def _write_keys(self, context, obj, frames, local, root) -> None:
        """Write and key canonical poses at scene frames, then go back to the current frame."""
        scene = context.scene
        current = (scene.frame_current, scene.frame_subframe)
        try:
            for f, l, r in zip(frames, local, root):
                write_pose(obj, self._rigmap, l, r, frame=f, keyframe=True)
        finally:
            if (scene.frame_current, scene.frame_subframe) != current:
                scene.frame_set(current[0], subframe=current[1])

    def _store_scores(self, context, obj, frames, scores) -> None:
        job = context.window_manager.poseforge_job
        job.scored_keys.clear()
        job.scored_object = obj.name
        job.scored_count = len(frames)
        for f, s in sorted(zip(frames, scores), key=lambda fs: -fs[1])[:WORST_KEYS_SHOWN]:
            item = job.scored_keys.add()
            item.frame, item.score = int(f), float(s)


class POSEFORGE_OT_snap_pose(_ArmatureJob, bpy.types.Operator):
    """Pull the pose of the active armature toward a plausible human pose (DPoser prior); pinned bones stay where they are"""

    bl_idname = "poseforge.snap_pose"
    bl_label = "Snap to Plausible Pose"
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "snap"
    job_label = "Snap to plausible pose"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_snap
        self._scope = settings.scope
        request = self._read_for_snap(context, keys_only=settings.scope == "KEYS_IN_RANGE")
        obj = bpy.data.objects[self._obj_name]
        if settings.scope == "CURRENT_FRAME":
            from ..rig.actions import bone_fcurves

            autokey = context.scene.tool_settings.use_keyframe_insert_auto
            self._key_joints = [j for j, b in mapped_bones(self._rigmap).items()
                                if autokey or bone_fcurves(obj, b)]
        return request

    def apply(self, context, result: dict) -> str:
        obj = self._target()
        local, root = poses_from_result(result, len(self._frames))
        if self._scope == "CURRENT_FRAME":
            scene = context.scene
            frame = self._frames[0]
            current = (scene.frame_current, scene.frame_subframe)
            at = None if current == (frame, 0.0) else frame
            try:
                write_pose(obj, self._rigmap, local[0], root[0], frame=at)
                if self._key_joints:
                    write_pose(obj, self._rigmap, local[0], root[0], frame=at, keyframe=True,
                               joints=self._key_joints)
            finally:
                if (scene.frame_current, scene.frame_subframe) != current:
                    scene.frame_set(current[0], subframe=current[1])
        else:
            self._write_keys(context, obj, self._frames, local, root)
        moved = result.get("moved_mm") or [[0.0] * NUM_JOINTS]
        worst = max(max(row) for row in moved)
        return (f"Snapped {len(self._frames)} pose(s) of '{obj.name}' (largest joint move {worst:.0f} mm)"
                + _ik_note(self._rigmap))


class POSEFORGE_OT_score_keys(_ArmatureJob, bpy.types.Operator):
    """Score every keyed frame of the active armature in the scene range under the DPoser prior and list the least plausible"""

    bl_idname = "poseforge.score_keys"
    bl_label = "Find Implausible Keys"
    bl_options = {"REGISTER"}

    job_kind = "score_keys"
    job_label = "Find implausible keys"

    def prepare(self, context) -> dict:
        request = self._read(context, keys_only=True)
        request.pop("root", None)
        return request

    def apply(self, context, result: dict) -> str:
        obj = self._target()
        scores = [float(s) for s in result.get("scores", [])]
        if len(scores) != len(self._frames):
            raise OperatorError(f"The backend scored {len(scores)} of {len(self._frames)} keys")
        self._store_scores(context, obj, self._frames, scores)
        threshold = context.scene.poseforge_snap.threshold
        above = sum(s > threshold for s in scores)
        worst = max(range(len(scores)), key=scores.__getitem__)
        return (f"Scored {len(scores)} keys: worst at frame {self._frames[worst]} ({scores[worst]:.3f}), "
                f"{above} above the threshold {threshold:.3f}")


class POSEFORGE_OT_fix_keys(_ArmatureJob, bpy.types.Operator):
    """Snap only the keyed frames whose implausibility score is above the threshold; other keys stay as they are"""

    bl_idname = "poseforge.fix_keys"
    bl_label = "Fix Implausible Keys"
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "fix_keys"
    job_label = "Fix implausible keys"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_snap
        request = self._read_for_snap(context, keys_only=True)
        request["threshold"] = float(settings.threshold)
        return request

    def apply(self, context, result: dict) -> str:
        obj = self._target()
        fixed = [int(i) for i in result.get("fixed", [])]
        scores = [float(s) for s in result.get("scores", [])]
        if fixed:
            if any(not 0 <= i < len(self._frames) for i in fixed):
                raise OperatorError("The backend answered frames outside the request; nothing was changed")
            local, root = poses_from_result(result, len(fixed))
            self._write_keys(context, obj, [self._frames[i] for i in fixed], local, root)
            for i, s in zip(fixed, result.get("scores_after", [])):
                scores[i] = float(s)
        if len(scores) == len(self._frames):
            self._store_scores(context, obj, self._frames, scores)
        threshold = context.scene.poseforge_snap.threshold
        if not fixed:
            return f"No key of '{obj.name}' is above the threshold {threshold:.3f}: nothing changed"
        return (f"Fixed {len(fixed)} of {len(self._frames)} keys of '{obj.name}' (above {threshold:.3f})"
                + _ik_note(self._rigmap))


class POSEFORGE_OT_jump_to_key(bpy.types.Operator):
    """Go to this key's frame"""

    bl_idname = "poseforge.jump_to_key"
    bl_label = "Jump to Key"
    bl_options = {"INTERNAL"}

    frame: IntProperty(name="Frame")

    def execute(self, context):
        context.scene.frame_set(self.frame)
        return {"FINISHED"}


CLASSES = (POSEFORGE_OT_snap_pose, POSEFORGE_OT_score_keys, POSEFORGE_OT_fix_keys, POSEFORGE_OT_jump_to_key)
