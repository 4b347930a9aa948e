"""Fill Keyframe Gaps: GFPose-style in-betweening (arXiv 2212.08641) of the active armature's action.

What the fill reads (:func:`plan_fill`):

* the frame range: the scene range (the preview range when it is in use) or a custom range
  (``Scene.poseforge_inbetween``); only the frames from the first to the last keyed frame inside
  it are looked at;
* which canonical joints are *known* on each frame: a joint is known where its mapped pose bone
  has a rotation key (any rotation channel), and on every frame when that bone has no rotation
  key at all (it is not animated: it holds its pose and gets no keys); the root is known where
  the pelvis bone has a location key.  When the pelvis has no location key at all the root is kept as it is
  (``keep_root``).  Joints the rig lacks count as known on fully keyed frames only.  A key on a
  subframe counts on the nearest whole frame;
* every frame of that span through the rig bridge (canonical rotations + root, what the rig
  shows now).

The ``inbetween`` job fills the unknown values; the operator then keys, on every frame strictly
between keys that the job filled, the mapped bones that were not keyed there (on a frame where
only the arms are keyed, the other bones), plus the pelvis location where the root was filled.
Keys already there keep their values, interpolation and handles; frames outside the span and
bones outside the rig map are never touched.

Several hypotheses: the job returns H answers; the first one is written and the others wait in
memory (:class:`PendingFill`, never saved in the .blend) until the animator accepts one.  Filling
again over the same keys while they wait (another seed or count) plans on the keys before that
fill and replaces its keys; a fill elsewhere accepts the hypothesis shown.

One undo step.  Blender pushes an undo step after an operator with ``'UNDO'`` finishes, named
after its ``bl_label`` ("Fill Keyframe Gaps").  An operator with ``'UNDO_GROUPED'`` (and *not*
``'UNDO'``: Blender checks ``'UNDO'`` first) pushes through ``ED_undo_grouped_push``: when the
active undo step has the same name as the operator's ``bl_undo_group``, that step is dropped and
replaced by the new one.  Previous / Next and Discard are grouped under "Fill Keyframe Gaps", so
after any number of them the history holds one "Fill Keyframe Gaps" step with the keys shown now,
and one Ctrl+Z goes back to the keys before the fill.  Accept changes no data and pushes nothing.
Discard restores the F-Curves of the mapped bones exactly as they were before the fill.  Before
each of them the keys are compared with what the fill wrote (a fingerprint of every key of the
mapped bones and the action's name): if the animator edited them, undid the fill or switched
actions, the hypotheses are dropped with an error and nothing is written.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy.props import IntProperty

from ..backend.skeleton import JOINT_INDEX, NUM_JOINTS
from ..rig import actions
from ..rig.bridge import RigError, read_action, write_pose
from ._job import JobError, JobOperator, OperatorError, job_running
from ._rig import active_armature, armature_rig_map, mapped_bones, poses_from_result, poses_to_request

#: Undo step name of the fill; the hypothesis operators group their pushes under it.
UNDO_NAME = "Fill Keyframe Gaps"

_ROTATION_PROPS = ("rotation_quaternion", "rotation_euler", "rotation_axis_angle")
_POSE_PROPS = _ROTATION_PROPS + ("location",)
_KP_ARRAYS = {  # keyframe-point attribute -> (numpy dtype, values per point)
    "co": (np.float32, 2), "handle_left": (np.float32, 2), "handle_right": (np.float32, 2),
    "interpolation": (np.int32, 1), "handle_left_type": (np.int32, 1), "handle_right_type": (np.int32, 1),
    "easing": (np.int32, 1), "type": (np.int32, 1), "back": (np.float32, 1), "amplitude": (np.float32, 1),
    "period": (np.float32, 1), "select_control_point": (bool, 1), "select_left_handle": (bool, 1),
    "select_right_handle": (bool, 1),
}
#: Attributes restored on a key that was there before the fill (handles only when not automatic).
_KEY_ATTRS = ("co", "interpolation", "easing", "type", "back", "amplitude", "period",
              "handle_left_type", "handle_right_type")
_AUTO_HANDLES = {"AUTO", "AUTO_CLAMPED", "VECTOR"}


# --- which frames and joints are keyed ----------------------------------------------------------

@dataclass
class FillPlan:
    """What the fill knows and fills over one span of frames.

    Attributes:
        frames: scene frames from the first to the last keyed frame of the range (``T`` of them).
        known: ``(T, 22)`` bool, joint keyed on that frame (joints the rig lacks: fully keyed frames).
        known_root: ``(T,)`` bool, pelvis location keyed there (``known[:, 0]`` with ``keep_root``).
        keep_root: the pelvis has no location key at all: the root is neither filled nor keyed.
        fill: ``(T,)`` bool, frames with something to fill (not every mapped joint and root keyed).
        range_label: the range as the animator chose it, for messages ("frames 1-250").
    """
    frames: list[int]
    known: np.ndarray
    known_root: np.ndarray
    keep_root: bool
    fill: np.ndarray
    range_label: str


def fill_range(context) -> tuple[int, int, str]:
    """``(first, last, label)`` of the frames to look at under the In-between options.

    Raises:
        OperatorError: a custom range whose end is before its start.
    """
    scene = context.scene
    settings = scene.poseforge_inbetween
    if settings.range_mode == "CUSTOM":
        lo, hi = settings.frame_start, settings.frame_end
        if hi < lo:
            raise OperatorError(f"The custom range ends (frame {hi}) before it starts (frame {lo})",
                                hint="Set the End frame after the Start frame")
        return lo, hi, f"frames {lo}-{hi}"
    if scene.use_preview_range:
        lo, hi = scene.frame_preview_start, scene.frame_preview_end
        return lo, hi, f"preview range {lo}-{hi}"
    return scene.frame_start, scene.frame_end, f"frames {scene.frame_start}-{scene.frame_end}"


def keyed_frames_by_path(obj) -> dict[str, set[int]]:
    """F-Curve data path -> whole frames keyed on it (any array index) in ``obj``'s action."""
    out: dict[str, set[int]] = {}
    for fc in actions.fcurves(obj):
        co = np.zeros(2 * len(fc.keyframe_points), dtype=np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out.setdefault(fc.data_path, set()).update(int(round(float(f))) for f in co[0::2])
    return out


def _snapshot_frames(snap: "KeySnapshot") -> dict[str, set[int]]:
    """Data path -> keyed whole frames of the mapped bones' F-Curves in a snapshot."""
    out: dict[str, set[int]] = {}
    for (path, _), data in snap.curves.items():
        out.setdefault(path, set()).update(int(round(float(f))) for f in data["co"][0::2])
    return out


def _key_frames(by_path, bone: str, props) -> set[int]:
    frames: set[int] = set()
    for prop in props:
        frames |= by_path.get(actions.bone_data_path(bone, prop), set())
    return frames


def plan_fill(obj, rigmap, lo: int, hi: int, range_label: str, keyed: dict[str, set[int]] | None = None) -> FillPlan:
    """Find the keyed frames and joints of ``obj``'s action inside ``lo..hi`` (scene frames).

    ``keyed`` (data path -> keyed frames, :func:`keyed_frames_by_path`) replaces the action's
    current keys, e.g. the keys before a fill whose hypotheses are still waiting.

    Raises:
        OperatorError: fewer than two keyed frames on mapped bones in the range (the message
            says when the keys there are only on bones outside the rig map), or nothing to fill
            (every frame between the keys is fully keyed).
    """
    bones = mapped_bones(rigmap)
    by_path = keyed_frames_by_path(obj) if keyed is None else keyed
    rot = {j: _key_frames(by_path, b, _ROTATION_PROPS) for j, b in bones.items()}
    loc_all = _key_frames(by_path, bones["pelvis"], ("location",))
    keep_root = not loc_all
    keyed = sorted({f for fs in rot.values() for f in fs} | loc_all)
    inside = [f for f in keyed if lo <= f <= hi]
    if len(inside) < 2:
        mapped = set(bones.values())
        others = sorted({pb.name for pb in obj.pose.bones if pb.name not in mapped
                         and any(lo <= f <= hi for f in _key_frames(by_path, pb.name, _POSE_PROPS))})
        if others and not inside:
            shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
            raise OperatorError(f"'{obj.name}' has keys in {range_label} only on bones outside the rig map "
                                f"({shown}): nothing to fill between",
                                hint="Key the body bones, or map those bones in the Rig panel")
        where = f"one keyed frame (frame {inside[0]})" if inside else "no keyed frame"
        raise OperatorError(f"'{obj.name}' has {where} on its body bones in {range_label}: filling needs "
                            "at least two keyed frames", hint="Key poses on two frames or more, or widen the range")
    first, last = inside[0], inside[-1]
    frames = list(range(first, last + 1))
    T = len(frames)
    known = np.zeros((T, NUM_JOINTS), dtype=bool)
    for joint, fs in rot.items():
        for f in fs:
            if first <= f <= last:
                known[f - first, JOINT_INDEX[joint]] = True
    for joint, fs in rot.items():
        if not fs:  # a bone never keyed is not animated: it holds its pose, nothing to fill
            known[:, JOINT_INDEX[joint]] = True
    mapped_idx = [JOINT_INDEX[j] for j in bones]
    full = known[:, mapped_idx].all(axis=1)
    for j in range(NUM_JOINTS):
        if j not in mapped_idx:
            known[:, j] = full
    if keep_root:
        known_root = known[:, 0].copy()
    else:
        known_root = np.array([f in loc_all for f in frames], dtype=bool)
    fill = ~(full & (known_root | keep_root))
    if not fill.any():
        raise OperatorError(f"Nothing to fill: every frame from {first} to {last} is keyed on every body bone",
                            hint="Delete the keys you want filled, or choose another range")
    return FillPlan(frames, known, known_root, keep_root, fill, range_label)


# --- snapshot / restore / fingerprint of the mapped bones' F-Curves --------------------------------

def _mapped_curves(obj, rigmap) -> list:
    names = set(mapped_bones(rigmap).values())
    out = []
    for fc in actions.fcurves(obj):
        path = fc.data_path
        if path.startswith('pose.bones["'):
            bone = path[len('pose.bones["'):].split('"]', 1)[0].replace('\\"', '"').replace("\\\\", "\\")
            if bone in names:
                out.append(fc)
    return out


def _read_points(fc) -> dict[str, np.ndarray]:
    kp = fc.keyframe_points
    n = len(kp)
    data = {}
    for name, (dtype, width) in _KP_ARRAYS.items():
        arr = np.zeros(n * width, dtype=dtype)
        kp.foreach_get(name, arr)
        data[name] = arr
    return data


def _write_points(fc, data: dict[str, np.ndarray]) -> None:
    kp = fc.keyframe_points
    kp.clear()
    kp.add(len(data["co"]) // 2)
    for name, arr in data.items():
        kp.foreach_set(name, arr)


def _enum_name(point, attr: str, value: int) -> str:
    """Identifier of the enum item whose value ``foreach_get`` gave."""
    for item in point.bl_rna.properties[attr].enum_items:
        if item.value == int(value):
            return item.identifier
    raise ValueError(f"no {attr} item with value {value}")


@dataclass
class KeySnapshot:
    """The mapped bones' F-Curves, pose values and IK mutes before a fill (restorable exactly)."""
    curves: dict[tuple[str, int], dict[str, np.ndarray]]
    groups: set[str]
    pose: dict[str, dict[str, tuple]]
    ik_mute: dict[tuple[str, str], bool]


def take_snapshot(obj, rigmap) -> KeySnapshot:
    """Record what a fill may change on ``obj`` (see :func:`restore_snapshot`)."""
    owner = actions.fcurve_owner(obj)
    curves = {(fc.data_path, fc.array_index): _read_points(fc) for fc in _mapped_curves(obj, rigmap)}
    groups = {g.name for g in owner.groups} if owner is not None else set()
    pose = {}
    for bone in mapped_bones(rigmap).values():
        pb = obj.pose.bones[bone]
        pose[bone] = {p: tuple(getattr(pb, p)) for p in _POSE_PROPS}
    ik = {}
    for bone, cname in rigmap.ik_constraints:
        con = obj.pose.bones[bone].constraints.get(cname)
        if con is not None:
            ik[(bone, cname)] = bool(con.mute)
    return KeySnapshot(curves, groups, pose, ik)


def _remove_new_curves(obj, rigmap, snap: KeySnapshot, only=None) -> None:
    owner = actions.fcurve_owner(obj)
    if owner is None:
        return
    for fc in _mapped_curves(obj, rigmap):
        key = (fc.data_path, fc.array_index)
        if only is not None and not only(fc):
            continue
        if key not in snap.curves:
            owner.fcurves.remove(fc)
        else:
            _write_points(fc, snap.curves[key])
    for grp in list(owner.groups):
        if grp.name not in snap.groups and len(grp.channels) == 0:
            owner.groups.remove(grp)


def restore_snapshot(obj, rigmap, snap: KeySnapshot) -> None:
    """Put the mapped bones' F-Curves (every key: frame, value, handles, interpolation, type),
    F-Curve groups, pose values and IK constraint mutes back as :func:`take_snapshot` saw them;
    curves the fill created are removed.  Re-evaluates the current frame."""
    _remove_new_curves(obj, rigmap, snap)
    for bone, props in snap.pose.items():
        pb = obj.pose.bones.get(bone)
        if pb is not None:
            for p, v in props.items():
                setattr(pb, p, v)
    for (bone, cname), mute in snap.ik_mute.items():
        pb = obj.pose.bones.get(bone)
        con = pb.constraints.get(cname) if pb is not None else None
        if con is not None:
            con.mute = mute
    scene = bpy.context.scene
    scene.frame_set(scene.frame_current, subframe=scene.frame_subframe)


def _keep_original_keys(obj, rigmap, snap: KeySnapshot, frames) -> None:
    """Give every key on ``frames`` (the frames written) that was there before the fill its own
    value, interpolation, easing, type and handle types back (handles too unless they are
    automatic); keys added stay."""
    frames = {round(float(f), 4) for f in frames}
    for fc in _mapped_curves(obj, rigmap):
        orig = snap.curves.get((fc.data_path, fc.array_index))
        if orig is None or not len(orig["co"]):
            continue
        points = fc.keyframe_points
        co = np.zeros(2 * len(points), dtype=np.float32)
        points.foreach_get("co", co)
        at = {round(float(f), 4): i for i, f in enumerate(co[0::2])}
        for i in range(len(orig["co"]) // 2):
            f = round(float(orig["co"][2 * i]), 4)
            j = at.get(f) if round(f) in frames else None
            if j is None:
                continue
            kp = points[j]
            for attr in _KEY_ATTRS:
                dtype, width = _KP_ARRAYS[attr]
                value = orig[attr][width * i: width * (i + 1)]
                if dtype is np.int32:
                    setattr(kp, attr, _enum_name(kp, attr, value[0]))
                else:
                    setattr(kp, attr, tuple(float(v) for v in value) if width > 1 else float(value[0]))
            for side in ("left", "right"):
                if getattr(kp, f"handle_{side}_type") not in _AUTO_HANDLES:
                    setattr(kp, f"handle_{side}", tuple(float(v) for v in orig[f"handle_{side}"][2 * i: 2 * i + 2]))


def key_fingerprint(obj, rigmap) -> str:
    """A digest of the object's Action name and every key (frame, value) on the mapped bones."""
    h = hashlib.sha1()
    anim = obj.animation_data
    h.update(((anim.action.name if anim and anim.action else "") + "\0").encode())
    for fc in sorted(_mapped_curves(obj, rigmap), key=lambda c: (c.data_path, c.array_index)):
        h.update(f"{fc.data_path}[{fc.array_index}]".encode())
        co = np.zeros(2 * len(fc.keyframe_points), dtype=np.float32)
        fc.keyframe_points.foreach_get("co", co)
        h.update(co.tobytes())
    return h.hexdigest()


# --- the pending hypotheses -------------------------------------------------------------------------

@dataclass
class PendingFill:
    """A fill whose hypotheses the animator can still cycle through (memory only)."""
    object_name: str
    rigmap: object
    plan: FillPlan
    write_joints: np.ndarray        # (T, 22) bool: joints keyed per frame
    write_root: np.ndarray          # (T,) bool: pelvis location keyed per frame
    local: np.ndarray               # (H, T, 22, 3, 3) canonical local rotations
    root: np.ndarray                # (H, T, 3) canonical root, metres
    snapshot: KeySnapshot
    index: int = 0
    fingerprint: str = ""
    gaps: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.local.shape[0])


#: The fill waiting for Accept / Discard, or ``None``.
_pending: PendingFill | None = None


def pending_fill() -> PendingFill | None:
    """The fill whose hypotheses wait to be accepted, or ``None``."""
    return _pending


def clear_pending() -> None:
    """Forget the waiting hypotheses (the keys shown stay as they are)."""
    global _pending
    _pending = None


def pending_problem(p: PendingFill) -> str | None:
    """Why the waiting hypotheses can no longer be shown (``None`` when they can)."""
    obj = bpy.data.objects.get(p.object_name)
    if obj is None or obj.type != "ARMATURE":
        return f"The armature '{p.object_name}' is gone"
    try:
        if key_fingerprint(obj, p.rigmap) != p.fingerprint:
            return f"The keys of '{p.object_name}' changed since the fill (edited, undone or another action)"
    except (KeyError, ReferenceError):
        return f"The bones of '{p.object_name}' changed since the fill"
    return None


def _write_hypothesis(context, obj, p: PendingFill, h: int) -> int:
    """Key hypothesis ``h`` where ``p.write_joints`` / ``p.write_root`` say; returns the frames keyed."""
    scene = context.scene
    current = (scene.frame_current, scene.frame_subframe)
    plan, rigmap = p.plan, p.rigmap
    pelvis = rigmap.bones["pelvis"]
    written = []
    try:
        for t, frame in enumerate(plan.frames):
            joints = [j for j in rigmap.bones if p.write_joints[t, JOINT_INDEX[j]]]
            if p.write_root[t] and "pelvis" not in joints:
                joints.append("pelvis")  # its rotation key there is put back by _keep_original_keys
            if joints:
                write_pose(obj, rigmap, p.local[h, t], p.root[h, t], frame=frame, keyframe=True, joints=joints)
                written.append(frame)
    finally:
        if (scene.frame_current, scene.frame_subframe) != current:
            scene.frame_set(current[0], subframe=current[1])
    _keep_original_keys(obj, rigmap, p.snapshot, written)
    if plan.keep_root:  # the root is not filled: no location keys on the pelvis
        loc = actions.bone_data_path(pelvis, "location")
        _remove_new_curves(obj, rigmap, p.snapshot, only=lambda fc: fc.data_path == loc)
        obj.pose.bones[pelvis].location = p.snapshot.pose[pelvis]["location"]
    scene.frame_set(current[0], subframe=current[1])
    p.index = h
    p.fingerprint = key_fingerprint(obj, rigmap)
    return len(written)


def _what_to_write(plan: FillPlan, result: dict, gaps) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 22)`` joints and ``(T,)`` root entries to key: what the job says it filled
    (``filled`` / ``filled_root``), else the fill frames inside its gaps; never a keyed value.

    Raises:
        OperatorError: ``filled`` / ``filled_root`` of the wrong shape.
    """
    T = len(plan.frames)
    filled, filled_root = result.get("filled"), result.get("filled_root")
    if filled is None:
        inside = np.zeros(T, dtype=bool)
        for a, b in gaps:
            inside[max(a, 0):min(b, T - 1) + 1] = True
        frames = plan.fill & inside
        filled = frames[:, None] & np.ones((T, NUM_JOINTS), dtype=bool)
        filled_root = frames
    filled = np.asarray(filled, dtype=bool)
    filled_root = np.asarray(filled.any(-1) if filled_root is None else filled_root, dtype=bool)
    if filled.shape != (T, NUM_JOINTS) or filled_root.shape != (T,):
        raise OperatorError(f"The backend answered filled entries {filled.shape} / {filled_root.shape} for "
                            f"{T} frames; nothing was changed")
    write_root = filled_root & ~plan.known_root & (not plan.keep_root)
    return filled & ~plan.known, write_root


def _ik_note(rigmap) -> str:
    if not rigmap.ik_constraints:
        return ""
    bones = ", ".join(sorted({b for b, _ in rigmap.ik_constraints}))
    return f"; IK constraints on {bones} were muted so the keys show"


# --- operators ---------------------------------------------------------------------------------------

class POSEFORGE_OT_fill_keyframe_gaps(JobOperator, bpy.types.Operator):
    """Fill the frames between keys of the active armature with natural motion (GFPose in-betweening); keys stay as they are"""

    bl_idname = "poseforge.fill_keyframe_gaps"
    bl_label = UNDO_NAME
    bl_options = {"REGISTER", "UNDO"}

    job_kind = "inbetween"
    job_label = "Fill keyframe gaps"
    user_errors = (OperatorError, JobError, RigError)

    def prepare(self, context) -> dict:
        settings = context.scene.poseforge_inbetween
        obj = active_armature(context)
        rigmap = armature_rig_map(obj)
        lo, hi, label = fill_range(context)
        # Fill again over the same keys while hypotheses wait (another seed or count): plan on the
        # keys before that fill, whose keys the new one replaces
        self._replacing, plan = None, None
        p = _pending
        if p is not None and p.object_name == obj.name and pending_problem(p) is None:
            try:
                plan = plan_fill(obj, rigmap, lo, hi, label, keyed=_snapshot_frames(p.snapshot))
            except OperatorError:
                plan = None
            if plan is not None and plan.frames == p.plan.frames:
                self._replacing = p
            else:
                plan = None
        if plan is None:
            plan = plan_fill(obj, rigmap, lo, hi, label)
        local, root = read_action(obj, rigmap, plan.frames)
        request = poses_to_request(local, root)
        from ..preferences import backend_settings

        request.update({
            "known": plan.known.tolist(), "known_root": plan.known_root.tolist(), "keep_root": plan.keep_root,
            "fill": plan.fill.tolist(), "hypotheses": int(settings.hypotheses) - 1, "seed": int(settings.seed),
            "foot_contact": bool(settings.foot_contact), "frame_start": plan.frames[0],
            "weights_dir": backend_settings(context)["weights_dir"],
        })
        self._obj_name, self._rigmap, self._plan = obj.name, rigmap, plan
        self._fingerprint = key_fingerprint(obj, rigmap)
        return request

    def apply(self, context, result: dict) -> str:
        global _pending
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None or obj.type != "ARMATURE":
            raise OperatorError(f"The armature '{self._obj_name}' was removed while the job ran; nothing changed")
        rigmap, plan = self._rigmap, self._plan
        if key_fingerprint(obj, rigmap) != self._fingerprint:
            raise OperatorError(f"The keys of '{obj.name}' changed while the job ran; nothing changed",
                                hint="Fill again")
        T = len(plan.frames)
        rots = np.asarray(result.get("rotations", []), dtype=np.float64)
        roots = np.asarray(result.get("root", []), dtype=np.float64)
        if rots.ndim != 4 or roots.ndim != 3 or len(rots) < 1 or len(rots) != len(roots):
            raise OperatorError(f"The backend answered rotations {rots.shape} / roots {roots.shape} for "
                                f"{T} frames; nothing was changed")
        poses = [poses_from_result({"rotations": r, "root": x}, T) for r, x in zip(rots, roots)]
        local = np.stack([p[0] for p in poses])
        root = np.stack([p[1] for p in poses])
        gaps = [(int(a), int(b)) for a, b in result.get("gaps", [])] or [(0, T - 1)]
        write_joints, write_root = _what_to_write(plan, result, gaps)
        replacing = self._replacing
        if replacing is not None and _pending is not replacing:
            raise OperatorError("The waiting hypotheses were accepted or discarded while the job ran; "
                                "nothing changed", hint="Fill again")
        now = take_snapshot(obj, rigmap)
        if replacing is not None:  # the keys before the last fill: the new fill replaces its keys
            restore_snapshot(obj, replacing.rigmap, replacing.snapshot)
            snapshot = take_snapshot(obj, rigmap)
        else:
            snapshot = now
        _pending = None  # a new fill over other keys accepts what the last one showed
        p = PendingFill(obj.name, rigmap, plan, write_joints, write_root, local, root, snapshot, gaps=gaps)
        try:
            frames = _write_hypothesis(context, obj, p, 0)
        except Exception:
            restore_snapshot(obj, rigmap, now)
            raise
        span = f"frames {plan.frames[0]}-{plan.frames[-1]}"
        msg = f"Filled {frames} frame(s) in {len(gaps)} gap(s) of '{obj.name}' ({span})"
        if replacing is not None:
            msg += " in place of the last fill"
        if p.count > 1:
            _pending = p
            msg += f"; hypothesis 1 / {p.count}: Previous / Next to compare, then Accept or Discard"
        return msg + _ik_note(rigmap)


def _pending_poll(cls, context) -> bool:
    if job_running():
        cls.poll_message_set("A PoseForge job is running (Esc cancels it)")
        return False
    if _pending is None:
        cls.poll_message_set("No filled hypotheses are waiting (Fill Keyframe Gaps first)")
        return False
    return True


def _refuse_stale(op, context, problem: str, what: str) -> set[str]:
    clear_pending()
    text = f"{problem}: {what}; nothing changed"
    context.window_manager.poseforge_job.last_error = text
    op.report({"ERROR"}, text)
    return {"CANCELLED"}


class POSEFORGE_OT_inbetween_cycle(bpy.types.Operator):
    """Show another hypothesis of the last fill on the same frames (the fill stays one undo step)"""

    bl_idname = "poseforge.inbetween_cycle"
    bl_label = "Show Another Hypothesis"
    # UNDO_GROUPED without UNDO: the push replaces the fill's own "Fill Keyframe Gaps" step
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_NAME

    step: IntProperty(name="Step", default=1, description="+1 shows the next hypothesis, -1 the previous one")

    @classmethod
    def poll(cls, context) -> bool:
        return _pending_poll(cls, context)

    @classmethod
    def description(cls, context, properties) -> str:
        which = "previous" if properties.step < 0 else "next"
        return f"Show the {which} hypothesis of the last fill on the same frames (the fill stays one undo step)"

    def execute(self, context):
        p = _pending
        problem = pending_problem(p)
        if problem:
            return _refuse_stale(self, context, problem, "the other hypotheses were dropped")
        obj = bpy.data.objects[p.object_name]
        h = (p.index + self.step) % p.count
        try:
            _write_hypothesis(context, obj, p, h)
        except RigError as exc:
            restore_snapshot(obj, p.rigmap, p.snapshot)
            clear_pending()
            self.report({"ERROR"}, f"{exc}; the keys before the fill were put back")
            return {"CANCELLED"}
        context.window_manager.poseforge_job.last_error = ""
        self.report({"INFO"}, f"Hypothesis {h + 1} / {p.count} of '{obj.name}'")
        return {"FINISHED"}


class POSEFORGE_OT_inbetween_accept(bpy.types.Operator):
    """Keep the hypothesis shown now and forget the others"""

    bl_idname = "poseforge.inbetween_accept"
    bl_label = "Accept Hypothesis"
    bl_options = set()  # no data changes: nothing to undo

    @classmethod
    def poll(cls, context) -> bool:
        return _pending_poll(cls, context)

    def execute(self, context):
        p = _pending
        clear_pending()
        self.report({"INFO"}, f"Kept hypothesis {p.index + 1} / {p.count} of '{p.object_name}'")
        return {"FINISHED"}


class POSEFORGE_OT_inbetween_discard(bpy.types.Operator):
    """Remove the filled keys: the keys are put back exactly as they were before the fill"""

    bl_idname = "poseforge.inbetween_discard"
    bl_label = "Discard Fill"
    bl_options = {"UNDO_GROUPED"}
    bl_undo_group = UNDO_NAME

    @classmethod
    def poll(cls, context) -> bool:
        return _pending_poll(cls, context)

    def execute(self, context):
        p = _pending
        problem = pending_problem(p)
        if problem:
            return _refuse_stale(self, context, problem,
                                 "Discard would overwrite that, so the hypotheses were dropped (Undo goes back)")
        obj = bpy.data.objects[p.object_name]
        restore_snapshot(obj, p.rigmap, p.snapshot)
        clear_pending()
        self.report({"INFO"}, f"Discarded the fill of '{obj.name}': the keys are as before")
        return {"FINISHED"}


CLASSES = (POSEFORGE_OT_fill_keyframe_gaps, POSEFORGE_OT_inbetween_cycle, POSEFORGE_OT_inbetween_accept,
           POSEFORGE_OT_inbetween_discard)


def unregister() -> None:
    """Forget waiting hypotheses (the add-on is disabled)."""
    clear_pending()
