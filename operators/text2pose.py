"""Generate Poses, Edit Pose, Pose Variations and Mix Poses (QPoser codes, arXiv 2312.01104).

Thin operators: read the active armature's current pose through the rig bridge -> a backend job
(``generate`` / ``edit`` / ``variations`` / ``mix``, backend/tasks/text2pose.py) -> candidate
poses written back through the bridge.

What is written:

* The armature keeps its root: the pelvis bone's location stays, and so does its rotation for
  Edit, Variations and Mix (the jobs keep the root).  Generated poses come with the pelvis at the
  origin facing +Z, in the rest orientation or tilted (leaning, lying down): a rest-orientation
  pelvis keeps the armature's own rotation, a tilted one keeps the armature's heading and takes
  the tilt (:func:`pelvis_for_candidate`), so the character neither jumps nor turns.  The body's
  rotations are written relative to that pelvis.
* Generate and Mix write every mapped bone; Edit writes only the bones the instruction concerns
  and Variations only the bones a candidate re-sampled (the job's ``changed``), so every other
  bone keeps its exact rotation.  Bones outside the rig map are never touched.
* Keys: when the scene's auto-keying is on, the written bones are keyed on the current frame each
  time a candidate is shown (what Blender's auto-keying does for any pose change); otherwise
  nothing is keyed.

Candidates: with more than one, the first is shown and the others wait in memory
(:class:`PendingCandidates`, never saved in the .blend): Previous / Next show candidate ``i`` of
``N`` on the armature, Accept keeps the one shown, Discard puts the pose (and keys) back exactly as
they were before.  Running the same action again on the same armature while candidates wait
(another seed, prompt or count) replaces them and works from the pose before them; another action
first accepts the candidate shown.

One undo step, as for Fill Keyframe Gaps (operators/inbetween.py): the job operator pushes a
step named after its ``bl_label``; its Previous / Next / Discard operators have
``'UNDO_GROUPED'`` with ``bl_undo_group`` set to that label, so each of their pushes replaces the
step, and one Ctrl+Z after any number of them (and Accept, which changes nothing and pushes
nothing) brings back the pose before the job.  Before each of them the armature is compared with
what was shown last (pose values and keys of the mapped bones, the Action, the frame): if the
animator changed it, undid or moved to another frame, the candidates are dropped with an error and
nothing is written.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy.props import IntProperty

from ..backend.retarget import np_quat_to_matrix
from ..backend.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from ..rig.bridge import RigError, read_pose, write_pose
from ._job import JobError, JobOperator, OperatorError, job_running
from ._rig import active_armature, armature_rig_map, mapped_bones, pinned_joints, poses_to_request
from .inbetween import key_fingerprint, restore_snapshot, take_snapshot

#: Undo step names (the job operators' labels); the candidate operators group under them.
UNDO_GENERATE = "Generate Poses"
UNDO_EDIT = "Edit Pose"
UNDO_VARIATIONS = "Pose Variations"
UNDO_MIX = "Mix Poses"

_POSE_PROPS = ("rotation_quaternion", "rotation_euler", "rotation_axis_angle", "location")
#: Format tag of a stored pose (``Scene.poseforge_edit.stored_pose``).
STORED_POSE_FORMAT = "poseforge-pose-1"


# --- reading and comparing the armature -------------------------------------------------------------

def pose_fingerprint(obj, rigmap) -> str:
    """A digest of what a candidate changes: the mapped bones' pose values, their keys, the
    Action and the scene frame."""
    h = hashlib.sha1(key_fingerprint(obj, rigmap).encode())
    scene = bpy.context.scene
    h.update(f"{scene.frame_current}:{scene.frame_subframe:.4f}".encode())
    for bone in sorted(mapped_bones(rigmap).values()):
        pb = obj.pose.bones[bone]
        h.update(bone.encode())
        h.update(np.array([v for p in _POSE_PROPS for v in getattr(pb, p)], dtype=np.float32).tobytes())
    return h.hexdigest()


def _weights_dir(context):
    from ..preferences import backend_settings

    return backend_settings(context)["weights_dir"]


def stored_pose_info(text: str) -> dict | None:
    """The stored pose JSON as a dict (``rotations`` ``(22, 4)`` list, ``armature``, ``frame``), or
    ``None`` when nothing (or nothing valid) is stored."""
    if not text:
        return None
    try:
        data = json.loads(text)
        rot = np.asarray(data["rotations"], dtype=np.float64)
    except (ValueError, KeyError, TypeError):
        return None
    if rot.shape != (NUM_JOINTS, 4) or not np.isfinite(rot).all():
        return None
    return data


def heading(rot: np.ndarray) -> np.ndarray:
    """The heading (turn about the vertical Y axis) of a canonical pelvis rotation ``(3, 3)``:
    ``R_y(yaw)`` with ``yaw`` the direction the body's front (+Z) points on the ground."""
    yaw = math.atan2(rot[0, 2], rot[2, 2])
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def pelvis_for_candidate(current: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The pelvis rotation to write for a generated candidate, so the character does not turn.

    Generated poses face +Z: their pelvis rotation is the rest orientation, or a tilt (lean,
    lying down) without heading.  A rest-orientation pelvis keeps the armature's ``current``
    pelvis rotation; a tilted one gets the armature's heading: ``R_y(yaw_current) @ candidate``.

    Args:
        current: ``(3, 3)`` the armature's canonical pelvis rotation (Y up, world heading included).
        candidate: ``(3, 3)`` the candidate's pelvis rotation.
    Returns:
        ``(3, 3)`` rotation.
    """
    if np.allclose(candidate, np.eye(3), atol=1e-6):
        return current.copy()
    return heading(current) @ heading(candidate).T @ candidate


def _canonical_quats(local: np.ndarray) -> list:
    """``(22, 3, 3)`` canonical local rotations -> ``(22, 4)`` quaternion list (w, x, y, z)."""
    return poses_to_request(local[None], np.zeros((1, 3)))["rotations"][0]


# --- the candidates waiting to be accepted -------------------------------------------------------------

@dataclass
class PendingCandidates:
    """Candidates the animator can still cycle through (memory only).

    Attributes:
        kind: the job (``"generate"``, ``"edit"``, ``"variations"``).
        object_name: the armature they were made for; rigmap: its rig map.
        local: ``(N, 22, 3, 3)`` canonical local rotations, the pelvis rotation already the
            armature's own.
        root: ``(3,)`` the armature's canonical root (metres, Y up), kept.
        joints: per candidate, the canonical joints to write.
        key: key the written bones (auto-keying was on).
        snapshot: the mapped bones' pose values, keys and IK mutes before the job.
        original_local: ``(22, 3, 3)`` the canonical pose before the job (what a replacing job reads).
        had_action: the armature had an Action before (Discard removes one keying created).
        notes: per candidate, one line for the panel ("match 0.41", "changed: left_elbow, ...").
        message: the job's note for the animator (e.g. no body part named), or "".
    """
    kind: str
    object_name: str
    rigmap: object
    local: np.ndarray
    root: np.ndarray
    joints: list
    key: bool
    snapshot: object
    original_local: np.ndarray
    had_action: bool
    notes: list = field(default_factory=list)
    message: str = ""
    label: str = ""
    index: int = 0
    fingerprint: str = ""

    @property
    def count(self) -> int:
        return int(self.local.shape[0])


#: The candidates waiting for Accept / Discard, or ``None``.
_pending: PendingCandidates | None = None


def pending_candidates() -> PendingCandidates | None:
    """The candidates waiting to be accepted, or ``None``."""
    return _pending


def clear_pending() -> None:
    """Forget the waiting candidates (the pose shown stays as it is)."""
    global _pending
    _pending = None


def pending_problem(p: PendingCandidates) -> str | None:
    """Why the waiting candidates can no longer be shown (``None`` when they can)."""
    obj = bpy.data.objects.get(p.object_name)
    if obj is None or obj.type != "ARMATURE":
        return f"The armature '{p.object_name}' is gone"
    try:
        if pose_fingerprint(obj, p.rigmap) != p.fingerprint:
            return (f"The pose of '{p.object_name}' changed since the candidates were made "
                    "(edited, undone or another frame)")
    except (KeyError, ReferenceError):
        return f"The bones of '{p.object_name}' changed since the candidates were made"
    return None


def _restore(obj, p: PendingCandidates) -> None:
    """Put the pose, keys and IK mutes of the mapped bones back as they were before the job."""
    from ..rig import actions

    restore_snapshot(obj, p.rigmap, p.snapshot)
    # restore_snapshot re-evaluates the frame: an animated bone posed by hand (not keyed) gets its
    # hand-made values back on top
    for bone, props in p.snapshot.pose.items():
        pb = obj.pose.bones.get(bone)
        if pb is not None:
            for prop, value in props.items():
                setattr(pb, prop, value)
    anim = obj.animation_data
    if not p.had_action and anim is not None and anim.action is not None and not actions.fcurves(obj):
        action = anim.action  # made by auto-keying a candidate: gone with its keys
        anim.action = None
        if action.users == 0:
            bpy.data.actions.remove(action)
    bpy.context.view_layer.update()


def _show(obj, p: PendingCandidates, i: int) -> None:
    """Show candidate ``i``: the pose before the job, then the candidate's bones (keyed when
    ``p.key``)."""
    _restore(obj, p)
    write_pose(obj, p.rigmap, p.local[i], p.root, joints=p.joints[i], keyframe=p.key)
    p.index = i
    p.fingerprint = pose_fingerprint(obj, p.rigmap)


def _ik_note(rigmap) -> str:
    if not rigmap.ik_constraints:
        return ""
    bones = ", ".join(sorted({b for b, _ in rigmap.ik_constraints}))
    return f"; IK constraints on {bones} were muted so the pose shows"


# --- the job operators ------------------------------------------------------------------------------

class _CandidateJob(JobOperator):
    """Shared by the four job operators: read the active armature, write the candidates."""

    user_errors = (OperatorError, JobError, RigError)
    #: ``PendingCandidates.kind`` of the candidates this operator makes.
    kind = ""

    def _read(self, context) -> dict:
        """Read the active armature's pose (or, when this operator's candidates wait on it, the
        pose before them); returns the request with ``rotations`` ``(22, 4)`` and weights."""
        obj = active_armature(context)
        rigmap = armature_rig_map(obj)
        local, root = read_pose(obj, rigmap)
        poses_to_request(local[None], root[None])  # NaN check, names the joint
        self._replacing = None
        p = _pending
        if p is not None and p.object_name == obj.name and p.kind == self.kind and pending_problem(p) is None:
            self._replacing = p
            local = p.original_local
        self._obj_name, self._rigmap = obj.name, rigmap
        self._local, self._root = local, root
        self._fingerprint = pose_fingerprint(obj, rigmap)
        self._key = bool(context.scene.tool_settings.use_keyframe_insert_auto)
        return {"rotations": _canonical_quats(local), "weights_dir": _weights_dir(context)}

    def _pinned(self, context, mode: str) -> list[str]:
        obj = bpy.data.objects[self._obj_name]
        mask = pinned_joints(obj, self._rigmap, mode)
        return [JOINT_NAMES[i] for i in np.nonzero(mask)[0]]

    def _candidates(self, result: dict) -> np.ndarray:
        """``(N, 22, 3, 3)`` candidate rotations with the armature's own pelvis rotation.

        Raises:
            OperatorError: the result is not ``(N, 22, 4)`` finite quaternions.
        """
        q = np.asarray(result.get("rotations", []), dtype=np.float64)
        if q.ndim != 3 or q.shape[1:] != (NUM_JOINTS, 4) or len(q) < 1:
            raise OperatorError(f"The backend answered rotations of shape {q.shape}; nothing was changed")
        if not np.isfinite(q).all() or (np.linalg.norm(q, axis=-1) < 1e-6).any():
            raise OperatorError("The backend answered poses that are not numbers; nothing was changed")
        local = np_quat_to_matrix(q / np.linalg.norm(q, axis=-1, keepdims=True))
        for c in local:
            c[0] = self._pelvis(c[0])
        return local

    def _pelvis(self, candidate: np.ndarray) -> np.ndarray:
        """The pelvis rotation written for a candidate's: the armature's own (Edit, Variations
        and Mix keep the root; so does Generate when it gives the rest orientation)."""
        return self._local[0]

    def _joints_of(self, result: dict, count: int) -> list[list[str]]:
        """Per candidate, the mapped joints to write (overridden by Edit / Variations)."""
        return [list(self._rigmap.bones)] * count

    def _notes(self, result: dict, count: int) -> list[str]:
        return [""] * count

    def _apply_candidates(self, context, result: dict, label: str) -> str:
        """Write the first candidate, keep the others waiting; returns the status-bar line."""
        global _pending
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None or obj.type != "ARMATURE":
            raise OperatorError(f"The armature '{self._obj_name}' was removed while the job ran; nothing changed")
        rigmap = self._rigmap
        if pose_fingerprint(obj, rigmap) != self._fingerprint:
            raise OperatorError(f"The pose of '{obj.name}' changed while the job ran; nothing changed",
                                hint="Run it again")
        local = self._candidates(result)
        n = len(local)
        joints = self._joints_of(result, n)
        replacing = self._replacing
        if replacing is not None and _pending is not replacing:
            raise OperatorError("The waiting candidates were accepted or discarded while the job ran; "
                                "nothing changed", hint="Run it again")
        now = take_snapshot(obj, rigmap)
        anim = obj.animation_data
        had_action = bool(anim is not None and anim.action is not None)
        if replacing is not None:  # work from the pose before the candidates it replaces
            snapshot, had_action = replacing.snapshot, replacing.had_action
        else:
            snapshot = now
        message = str(result.get("message") or "")
        p = PendingCandidates(self.kind, obj.name, rigmap, local, self._root, joints, self._key, snapshot,
                              self._local, had_action, notes=self._notes(result, n), message=message,
                              label=label)
        _pending = None  # a new job accepts what the last one showed
        try:
            _show(obj, p, 0)
        except Exception:
            restore_snapshot(obj, rigmap, now)
            raise
        what = f"{n} candidates" if n > 1 else "1 pose"
        msg = f"{label} for '{obj.name}': {what}"
        if replacing is not None:
            msg += " in place of the last ones"
        if n > 1:
            _pending = p
            msg += f"; candidate 1 / {n}: Previous / Next to compare, then Accept or Discard"
        if p.key:
            msg += f"; keyed on frame {context.scene.frame_current}"
        if message:
            msg += f". {message}"
        return msg + _ik_note(rigmap)


class POSEFORGE_OT_generate_poses(_CandidateJob, bpy.types.Operator):
    """Make poses from the prompt on the active armature (QPoser codes predicted from the text); the armature keeps its root position and orientation"""

    bl_idname = "poseforge.generate_poses"
    bl_label = UNDO_GENERATE
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "generate"
    job_label = "Generate poses"
    kind = "generate"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_generate
        prompt = settings.prompt.strip()
        if not prompt:
            raise OperatorError("The prompt is empty", hint="Type what the pose should do, or choose a preset")
        request = self._read(context)
        request.pop("rotations")
        request.update({"prompt": prompt, "samples": int(settings.candidates), "seed": int(settings.seed)})
        self._prompt = prompt
        return request

    def _pelvis(self, candidate: np.ndarray) -> np.ndarray:
        return pelvis_for_candidate(self._local[0], candidate)

    def _notes(self, result, count):
        match = list(result.get("match") or [])
        return [f"text match {float(match[i]):.2f}" if i < len(match) else "" for i in range(count)]

    def apply(self, context, result: dict) -> str:
        return self._apply_candidates(context, result, f"Generated from '{self._prompt}'")


class POSEFORGE_OT_edit_pose(_CandidateJob, bpy.types.Operator):
    """Change the current pose of the active armature as the instruction says; only the body parts it names change, pinned bones stay"""

    bl_idname = "poseforge.edit_pose"
    bl_label = UNDO_EDIT
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "edit"
    job_label = "Edit pose"
    kind = "edit"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_edit
        prompt = settings.instruction.strip()
        if not prompt:
            raise OperatorError("The instruction is empty",
                                hint="Type how the pose should change, e.g. 'raise the left arm'")
        request = self._read(context)
        request.update({"prompt": prompt, "samples": int(settings.candidates), "seed": int(settings.seed),
                        "pinned": self._pinned(context, settings.pinned), "parts": None})
        self._prompt = prompt
        return request

    def _joints_of(self, result, count):
        changed = [j for j in (result.get("changed") or JOINT_NAMES[1:]) if j in JOINT_INDEX]
        return [[j for j in changed if j in self._rigmap.bones]] * count

    def _notes(self, result, count):
        parts = ", ".join(str(x).replace("_", " ") for x in result.get("parts") or [])
        return [f"changed: {parts}" if parts else ""] * count

    def apply(self, context, result: dict) -> str:
        return self._apply_candidates(context, result, f"Edited with '{self._prompt}'")


class POSEFORGE_OT_pose_variations(_CandidateJob, bpy.types.Operator):
    """Make variations of the current pose of the active armature: a share of its bones (the strength) is re-posed, pinned bones stay"""

    bl_idname = "poseforge.pose_variations"
    bl_label = UNDO_VARIATIONS
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "variations"
    job_label = "Pose variations"
    kind = "variations"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_edit
        request = self._read(context)
        request.update({"strength": float(settings.strength), "samples": int(settings.candidates),
                        "seed": int(settings.seed), "pinned": self._pinned(context, settings.pinned)})
        return request

    def _joints_of(self, result, count):
        changed = result.get("changed")
        if not isinstance(changed, list) or len(changed) != count:
            return [list(self._rigmap.bones)] * count
        return [[j for j in JOINT_NAMES if j in (c or []) and j in self._rigmap.bones] for c in changed]

    def _notes(self, result, count):
        changed = result.get("changed")
        if not isinstance(changed, list) or len(changed) != count:
            return [""] * count
        return [f"{len(c)} bone(s) changed" for c in changed]

    def apply(self, context, result: dict) -> str:
        return self._apply_candidates(context, result, "Variations")


class POSEFORGE_OT_mix_poses(_CandidateJob, bpy.types.Operator):
    """Take the ticked body parts (arms, legs, torso, head) from a second pose (another armature or the stored pose) and the rest from the active armature"""

    bl_idname = "poseforge.mix_poses"
    bl_label = UNDO_MIX
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "mix"
    job_label = "Mix poses"
    kind = "mix"

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_edit
        parts = settings.mix_parts()
        if not parts:
            raise OperatorError("No body part is ticked for Mix",
                                hint="Tick the parts to take from the second pose (arms, legs, torso, head)")
        request = self._read(context)
        if settings.mix_source == "STORED":
            info = stored_pose_info(settings.stored_pose)
            if info is None:
                raise OperatorError("No pose is stored" if not settings.stored_pose
                                    else "The stored pose cannot be read",
                                    hint="Pose an armature and press Store Pose first")
            rotations_b = info["rotations"]
            self._second = f"the pose stored from '{info.get('armature', '?')}'"
        else:
            other = settings.mix_armature
            if other is None or other.type != "ARMATURE":
                raise OperatorError("No second armature is chosen for Mix",
                                    hint="Choose an armature in the Mix field, or use a stored pose")
            if other.name == self._obj_name:
                raise OperatorError(f"The second armature '{other.name}' is the active one",
                                    hint="Choose another armature, or use a stored pose")
            local_b, root_b = read_pose(other, armature_rig_map(other))
            rotations_b = _canonical_quats(local_b)
            self._second = f"'{other.name}'"
        self._parts = parts
        request.update({"rotations_b": rotations_b, "parts": parts})
        return request

    def apply(self, context, result: dict) -> str:
        return self._apply_candidates(context, result, f"Mixed {', '.join(self._parts)} from {self._second}")


class POSEFORGE_OT_store_pose(bpy.types.Operator):
    """Store the current pose of the active armature for Mix (in the scene, saved with the .blend)"""

    bl_idname = "poseforge.store_pose"
    bl_label = "Store Pose"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context) -> bool:
        return not job_running()

    def execute(self, context):
        try:
            obj = active_armature(context)
            local, root = read_pose(obj, armature_rig_map(obj))
            rotations = _canonical_quats(local)
        except (OperatorError, RigError) as exc:
            text = getattr(exc, "message", None) or str(exc)
            hint = getattr(exc, "hint", None)
            text = f"{text}. {hint}" if hint else text
            context.window_manager.poseforge_job.last_error = text
            self.report({"ERROR"}, text)
            return {"CANCELLED"}
        data = {"format": STORED_POSE_FORMAT, "armature": obj.name, "frame": context.scene.frame_current,
                "joints": list(JOINT_NAMES), "rotations": rotations}
        context.scene.poseforge_edit.stored_pose = json.dumps(data)
        context.window_manager.poseforge_job.last_error = ""
        self.report({"INFO"}, f"Stored the pose of '{obj.name}' at frame {context.scene.frame_current} for Mix")
        return {"FINISHED"}


class POSEFORGE_OT_clear_stored_pose(bpy.types.Operator):
    """Forget the stored pose"""

    bl_idname = "poseforge.clear_stored_pose"
    bl_label = "Clear Stored Pose"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.poseforge_edit.stored_pose = ""
        return {"FINISHED"}


# --- Previous / Next, Accept, Discard ----------------------------------------------------------------

def _refuse_stale(op, context, problem: str, what: str) -> set[str]:
    clear_pending()
    text = f"{problem}: {what}; nothing changed"
    context.window_manager.poseforge_job.last_error = text
    op.report({"ERROR"}, text)
    return {"CANCELLED"}


class _PendingOperator:
    #: Which candidates the operator acts on (``None``: any).
    kind: str | None = None

    @classmethod
    def poll(cls, context) -> bool:
        if job_running():
            cls.poll_message_set("A PoseForge job is running (Esc cancels it)")
            return False
        if _pending is None or (cls.kind is not None and _pending.kind != cls.kind):
            cls.poll_message_set("No candidates are waiting")
            return False
        return True


class _CycleCandidates(_PendingOperator):
    step: IntProperty(name="Step", default=1, description="+1 shows the next candidate, -1 the previous one")

    @classmethod
    def description(cls, context, properties) -> str:
        which = "previous" if properties.step < 0 else "next"
        return f"Show the {which} candidate on the armature (the job stays one undo step)"

    def execute(self, context):
        p = _pending
        problem = pending_problem(p)
        if problem:
            return _refuse_stale(self, context, problem, "the other candidates were dropped")
        obj = bpy.data.objects[p.object_name]
        i = (p.index + self.step) % p.count
        try:
            _show(obj, p, i)
        except RigError as exc:
            _restore(obj, p)
            clear_pending()
            self.report({"ERROR"}, f"{exc}; the pose before the candidates was put back")
            return {"CANCELLED"}
        context.window_manager.poseforge_job.last_error = ""
        note = f" ({p.notes[i]})" if p.notes and p.notes[i] else ""
        self.report({"INFO"}, f"Candidate {i + 1} / {p.count} on '{obj.name}'{note}")
        return {"FINISHED"}


class _DiscardCandidates(_PendingOperator):
    def execute(self, context):
        p = _pending
        problem = pending_problem(p)
        if problem:
            return _refuse_stale(self, context, problem,
                                 "Discard would overwrite that, so the candidates were dropped (Undo goes back)")
        obj = bpy.data.objects[p.object_name]
        _restore(obj, p)
        clear_pending()
        self.report({"INFO"}, f"Discarded the candidates: '{obj.name}' has its pose back")
        return {"FINISHED"}


class POSEFORGE_OT_candidates_accept(_PendingOperator, bpy.types.Operator):
    """Keep the candidate shown now and forget the others"""

    bl_idname = "poseforge.candidates_accept"
    bl_label = "Accept Candidate"
    bl_options = set()  # no data changes: nothing to undo

    def execute(self, context):
        p = _pending
        clear_pending()
        self.report({"INFO"}, f"Kept candidate {p.index + 1} / {p.count} on '{p.object_name}'")
        return {"FINISHED"}


_CYCLE_DOC = "Show another candidate on the armature (the job stays one undo step)"
_DISCARD_DOC = "Put the pose and keys back exactly as they were before the candidates"


class POSEFORGE_OT_generate_cycle(_CycleCandidates, bpy.types.Operator):
    __doc__ = _CYCLE_DOC
    bl_idname = "poseforge.generate_cycle"
    bl_label = "Show Another Candidate"
    # UNDO_GROUPED without UNDO: the push replaces the job's own step
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_GENERATE
    kind = "generate"


class POSEFORGE_OT_generate_discard(_DiscardCandidates, bpy.types.Operator):
    __doc__ = _DISCARD_DOC
    bl_idname = "poseforge.generate_discard"
    bl_label = "Discard Candidates"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_GENERATE
    kind = "generate"


class POSEFORGE_OT_edit_cycle(_CycleCandidates, bpy.types.Operator):
    __doc__ = _CYCLE_DOC
    bl_idname = "poseforge.edit_cycle"
    bl_label = "Show Another Candidate"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_EDIT
    kind = "edit"


class POSEFORGE_OT_edit_discard(_DiscardCandidates, bpy.types.Operator):
    __doc__ = _DISCARD_DOC
    bl_idname = "poseforge.edit_discard"
    bl_label = "Discard Candidates"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_EDIT
    kind = "edit"


class POSEFORGE_OT_variations_cycle(_CycleCandidates, bpy.types.Operator):
    __doc__ = _CYCLE_DOC
    bl_idname = "poseforge.variations_cycle"
    bl_label = "Show Another Candidate"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_VARIATIONS
    kind = "variations"


class POSEFORGE_OT_variations_discard(_DiscardCandidates, bpy.types.Operator):
    __doc__ = _DISCARD_DOC
    bl_idname = "poseforge.variations_discard"
    bl_label = "Discard Candidates"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_VARIATIONS
    kind = "variations"


#: Candidate kind -> (Previous / Next operator, Discard operator) idnames, for the panels.
CANDIDATE_OPERATORS = {
    "generate": ("poseforge.generate_cycle", "poseforge.generate_discard"),
    "edit": ("poseforge.edit_cycle", "poseforge.edit_discard"),
    "variations": ("poseforge.variations_cycle", "poseforge.variations_discard"),
}

CLASSES = (POSEFORGE_OT_generate_poses, POSEFORGE_OT_edit_pose, POSEFORGE_OT_pose_variations,
           POSEFORGE_OT_mix_poses, POSEFORGE_OT_store_pose, POSEFORGE_OT_clear_stored_pose,
           POSEFORGE_OT_candidates_accept, POSEFORGE_OT_generate_cycle, POSEFORGE_OT_generate_discard,
           POSEFORGE_OT_edit_cycle, POSEFORGE_OT_edit_discard, POSEFORGE_OT_variations_cycle,
           POSEFORGE_OT_variations_discard)


def unregister() -> None:
    """Forget waiting candidates (the add-on is disabled)."""
    clear_pending()
