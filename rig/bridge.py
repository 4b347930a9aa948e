"""The rig bridge: an armature's pose <-> a canonical pose (DESIGN.md, "The rig bridge").

Poses cross the bridge as world-space rotations relative to each side's reference T-pose
(backend/retarget.py): for a mapped bone with world rotation ``G`` (Blender world, object scale
removed) the canonical joint gets ``W = (C G) A^T`` with ``C`` = :func:`retarget.axis_conversion`
("Z") and ``A`` the bone's reference rotation measured on the armature's REST pose; writing inverts
that (``G = C^T W A``).  So rigs in an A-pose, with any bone roll, object rotation, translation or
(uniform) scale map onto the same canonical pose.

Writing recomputes the pose-space matrix of every bone on the way from the root to a written
bone with Blender's own rule (:meth:`bpy.types.Bone.convert_local_to_pose`: inherit rotation /
scale options included), keeping the current pose of unmapped bones in between, so the written
bones land on their target world rotation even when helper bones sit between them.  Only the
rotation channel of mapped bones changes, plus the location of the pelvis bone (its head goes to
the root position) and of mapped bones that hang from elsewhere in the hierarchy (an IK foot
parented to the rig root, whose head is put where the leg ends).  Bones outside the map are never
touched.  IK constraints on mapped bones would override the written rotations: by default they
are muted (listed in :attr:`RigMap.ik_constraints`).

Blender-side only: bpy, mathutils, NumPy and the NumPy parts of the backend.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from ..backend import retarget
from ..backend.matching import REQUIRED_JOINTS, find_preset, match_skeleton
from ..backend.presets import PresetError, load_preset
from ..backend.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS
from . import actions

#: Blender world (Z up, facing -Y) -> canonical axes (Y up, facing +Z).
C_BLENDER = retarget.axis_conversion("Z")

_IK_TYPES = {"IK", "SPLINE_IK"}


class RigError(ValueError):
    """The armature cannot be used as asked (message names the object, bones or joints)."""


# --- small conversions --------------------------------------------------------------------------

def _np3(m) -> np.ndarray:
    return np.array([[m[i][j] for j in range(3)] for i in range(3)], dtype=np.float64)


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """Nearest rotation to a 3x3 matrix (removes scale and shear)."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _mat3(a: np.ndarray) -> Matrix:
    return Matrix([[float(a[i, j]) for j in range(3)] for i in range(3)])


def _object_rotation(obj) -> np.ndarray:
    return _orthonormal(_np3(obj.matrix_world.to_3x3()))


def _topological(bones) -> list:
    order, stack = [], [b for b in bones if b.parent is None]
    while stack:
        b = stack.pop()
        order.append(b)
        stack.extend(reversed(list(b.children)))
    return order


# --- the bone map -------------------------------------------------------------------------------

@dataclass
class RigMap:
    """Canonical joints <-> bones of one armature, with the armature's reference T-pose.

    Build it with :meth:`from_armature`.  Attributes:
        armature: object name the map was made for.
        bones: canonical joint name -> bone name (mapped joints only).
        source: ``"preset:<id>"`` or ``"auto"`` (matched by names + hierarchy), ``"+overrides"``
            appended when the animator fixed joints by hand.
        confidence: 1.0 for presets, else the matcher's confidence (0..1).
        reference: :class:`retarget.Reference` measured on the REST pose (canonical axes).
        unmatched: canonical joints without a bone (filled by the retargeting rule).
        ik_constraints: ``(bone, constraint)`` names of IK constraints on mapped bones.
    """
    armature: str
    bones: dict[str, str]
    source: str
    confidence: float
    reference: retarget.Reference
    unmatched: list[str] = field(default_factory=list)
    ik_constraints: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_armature(cls, obj, preset: str | Path | Mapping | None = None,
                      overrides: Mapping[str, str | None] | None = None) -> "RigMap":
        """Map an armature object onto the canonical body.

        Args:
            obj: the armature object (``obj.type == "ARMATURE"``).
            preset: a shipped preset id (``"mixamo"``), a path to a preset JSON file, or a preset
                dict; ``None`` tries the shipped presets whose bones are all present, then the
                automatic matcher (backend/matching.py); ``"auto"`` goes straight to the matcher.
            overrides: canonical joint -> bone name fixed by hand (``None`` unmaps the joint);
                applied after the preset / automatic match.
        Returns:
            The :class:`RigMap`, with the reference T-pose measured on the armature's rest pose
            (world rest matrices ``obj.matrix_world @ bone.matrix_local``, object scale removed
            from rotations, positions in world units).
        Raises:
            RigError: not an armature; a preset naming bones the armature lacks; an override
                naming an unknown joint or bone; one bone for two joints; required joints
                (pelvis, hips, knees, ankles) unmapped, e.g. for a non-humanoid armature.
        """
        if obj is None or getattr(obj, "type", None) != "ARMATURE":
            what = "nothing" if obj is None else f"'{obj.name}' ({obj.type.lower()})"
            raise RigError(f"PoseForge needs an armature object, got {what}")
        arm_bones = obj.data.bones
        names = [b.name for b in arm_bones]
        parents = [b.parent.name if b.parent else None for b in arm_bones]
        confidence, unmatched_auto = 1.0, []
        if preset is None:
            preset = find_preset(names)
        elif preset == "auto":
            preset = None
        if preset is not None:
            try:
                data = dict(preset) if isinstance(preset, Mapping) else load_preset(preset)
            except PresetError as exc:
                raise RigError(str(exc)) from exc
            pid = data.get("id", data.get("name", "custom"))
            lacking = sorted(b for b in data.get("bones", {}).values() if b not in arm_bones)
            if lacking:
                raise RigError(f"armature '{obj.name}' lacks bones of preset '{pid}': "
                               + ", ".join(lacking))
            mapping = {j: b for j, b in data["bones"].items() if j in JOINT_INDEX}
            source = f"preset:{pid}"
        else:
            res = match_skeleton(names, parents)
            mapping, confidence, unmatched_auto = dict(res.mapping), res.confidence, res.unmatched
            source = "auto"
        if overrides:
            for joint, bone in overrides.items():
                if joint not in JOINT_INDEX:
                    raise RigError(f"'{joint}' is not a canonical joint (joints: {', '.join(JOINT_NAMES)})")
                if bone is None or bone == "":
                    mapping.pop(joint, None)
                elif bone not in arm_bones:
                    raise RigError(f"armature '{obj.name}' has no bone '{bone}' (for {joint})")
                else:
                    mapping[joint] = bone
            source += "+overrides"
        seen: dict[str, str] = {}
        for joint, bone in mapping.items():
            if bone in seen:
                raise RigError(f"bone '{bone}' is mapped to both {seen[bone]} and {joint}")
            seen[bone] = joint
        missing = [j for j in REQUIRED_JOINTS if j not in mapping]
        if missing:
            raise RigError(f"armature '{obj.name}' does not look like a humanoid body: no bone for "
                           + ", ".join(missing) + " (fix these joints by hand or pick a preset)")
        reference = _reference_from_rest(obj, mapping)
        ik = [(b, c.name) for b in mapping.values() for c in obj.pose.bones[b].constraints
              if c.type in _IK_TYPES and not c.mute]
        unmatched = [j for j in JOINT_NAMES if j not in mapping]
        return cls(obj.name, {j: mapping[j] for j in JOINT_NAMES if j in mapping}, source,
                   float(confidence), reference, unmatched, ik)

    def as_preset(self, name: str | None = None) -> dict:
        """The map as a preset dict (presets/rigs format), e.g. to save an animator's fixes."""
        return {"name": name or f"{self.armature} (custom)", "kind": "armature", "up": "Z",
                "reference": "rest", "bones": dict(self.bones)}

    def to_json(self) -> str:
        """Joint -> bone map and source as JSON (the reference is re-measured on load)."""
        return json.dumps({"armature": self.armature, "bones": self.bones, "source": self.source})


def _reference_from_rest(obj, mapping: Mapping[str, str]) -> retarget.Reference:
    """Reference T-pose of the mapped bones measured on the armature's rest pose."""
    R_obj = _object_rotation(obj)
    Mw = obj.matrix_world
    rots = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    pos = np.zeros((NUM_JOINTS, 3))
    idx = np.full(NUM_JOINTS, -1, dtype=np.int64)
    for joint, bone_name in mapping.items():
        j = JOINT_INDEX[joint]
        bone = obj.data.bones[bone_name]
        rots[j] = C_BLENDER @ R_obj @ _orthonormal(_np3(bone.matrix_local.to_3x3()))
        pos[j] = C_BLENDER @ np.array(Mw @ bone.head_local)
        idx[j] = j
    try:
        return retarget.reference_tpose(rots, pos, idx)
    except retarget.RetargetError as exc:
        raise RigError(f"armature '{obj.name}': {exc}") from exc


def rig_map(obj, preset=None, overrides=None) -> RigMap:
    """Shorthand for :meth:`RigMap.from_armature`."""
    return RigMap.from_armature(obj, preset, overrides)


# --- reading ------------------------------------------------------------------------------------

def _check_armature(obj, rigmap: RigMap) -> None:
    if obj is None or getattr(obj, "type", None) != "ARMATURE":
        raise RigError("PoseForge needs an armature object")
    lacking = [b for b in rigmap.bones.values() if b not in obj.pose.bones]
    if lacking:
        raise RigError(f"armature '{obj.name}' no longer has bones " + ", ".join(lacking))


def _world_pose(obj, rigmap: RigMap) -> tuple[np.ndarray, np.ndarray]:
    R_obj = _object_rotation(obj)
    Mw = obj.matrix_world
    rots = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for joint, bone in rigmap.bones.items():
        pm = obj.pose.bones[bone].matrix
        rots[JOINT_INDEX[joint]] = C_BLENDER @ R_obj @ _orthonormal(_np3(pm.to_3x3()))
    root = C_BLENDER @ np.array(Mw @ obj.pose.bones[rigmap.bones["pelvis"]].head)
    return rots, root


def read_pose(obj, rigmap: RigMap) -> tuple[np.ndarray, np.ndarray]:
    """The armature's current evaluated pose as a canonical pose.

    Updates the view layer first, so constraints, drivers and IK are included (what the viewport
    shows).

    Args:
        obj: the armature object.
        rigmap: its :class:`RigMap`.
    Returns:
        ``(local_rotmats (22, 3, 3), root_trans (3,))``: canonical local rotations relative to
        the canonical T-pose and the pelvis world position in canonical metres, Y up (joints the
        rig lacks are filled by the retargeting rule of backend/retarget.py).
    Raises:
        RigError: not an armature, or mapped bones missing.
    """
    _check_armature(obj, rigmap)
    bpy.context.view_layer.update()
    rots, root = _world_pose(obj, rigmap)
    local, trans = retarget.source_to_canonical(rigmap.reference, rots, root)
    return local, trans


def _joint_heads(obj, rigmap: RigMap) -> np.ndarray:
    """``(22, 3)`` world bone-head positions of the mapped joints in canonical axes (rows of
    missing joints are zero)."""
    Mw = obj.matrix_world
    pos = np.zeros((NUM_JOINTS, 3))
    for joint, bone in rigmap.bones.items():
        pos[JOINT_INDEX[joint]] = C_BLENDER @ np.array(Mw @ obj.pose.bones[bone].head)
    return pos


def read_offsets(obj, rigmap: RigMap) -> np.ndarray:
    """Joint offsets of the armature's CURRENT pose in canonical metres (retarget.pose_offsets).

    Canonical forward kinematics with them and :func:`read_pose`'s rotations puts each mapped
    joint where the rig's bone head is, bone locations and scales of the pose included, so a
    backend job can keep pinned bones in place on this rig.

    Returns:
        ``(22, 3)`` offsets, Y up.
    Raises:
        RigError: not an armature, or mapped bones missing.
    """
    _check_armature(obj, rigmap)
    bpy.context.view_layer.update()
    rots, _ = _world_pose(obj, rigmap)
    return retarget.pose_offsets(rigmap.reference, rots, _joint_heads(obj, rigmap))


def _set_frame(scene, frame: float) -> None:
    whole = int(np.floor(frame))
    scene.frame_set(whole, subframe=float(frame - whole))


def read_action(obj, rigmap: RigMap, frames: Iterable[float], with_offsets: bool = False):
    """Canonical poses of the armature at scene frames (evaluated with ``frame_set``).

    Args:
        obj: the armature object; rigmap: its :class:`RigMap`.
        frames: scene frames (ints or floats).
        with_offsets: also return the rig's joint offsets at each frame (:func:`read_offsets`).
    Returns:
        ``(local_rotmats (T, 22, 3, 3), root_trans (T, 3))``, canonical, metres, Y up, plus
        ``offsets (T, 22, 3)`` when ``with_offsets``.  The scene's current frame is restored
        afterwards.
    Raises:
        RigError: no frames, not an armature, mapped bones missing.
    """
    frames = list(frames)
    if not frames:
        raise RigError("the frame range is empty: nothing to read")
    _check_armature(obj, rigmap)
    scene = bpy.context.scene
    orig = (scene.frame_current, scene.frame_subframe)
    rots, roots, offsets = [], [], []
    try:
        for f in frames:
            _set_frame(scene, f)
            r, p = _world_pose(obj, rigmap)
            rots.append(r)
            roots.append(p)
            if with_offsets:
                offsets.append(retarget.pose_offsets(rigmap.reference, r, _joint_heads(obj, rigmap)))
    finally:
        scene.frame_set(orig[0], subframe=orig[1])
    local, trans = retarget.source_to_canonical(rigmap.reference, np.stack(rots), np.stack(roots))
    return (local, trans, np.stack(offsets)) if with_offsets else (local, trans)


# --- writing ------------------------------------------------------------------------------------

def _rotation_props(pb) -> tuple[str, ...]:
    mode = pb.rotation_mode
    if mode == "QUATERNION":
        return ("rotation_quaternion",)
    if mode == "AXIS_ANGLE":
        return ("rotation_axis_angle",)
    return ("rotation_euler",)


def _set_rotation(pb, rot: Matrix) -> None:
    """Set a pose bone's rotation channel from a 3x3 rotation, in its rotation mode, continuous
    with the current value (quaternion sign, Euler branch)."""
    mode = pb.rotation_mode
    q = rot.to_quaternion()
    if mode == "QUATERNION":
        cur = Quaternion(pb.rotation_quaternion)
        if cur.dot(q) < 0:
            q.negate()
        pb.rotation_quaternion = q
    elif mode == "AXIS_ANGLE":
        axis, angle = q.to_axis_angle()
        pb.rotation_axis_angle = (angle, axis[0], axis[1], axis[2])
    else:
        pb.rotation_euler = rot.to_euler(mode, pb.rotation_euler)


def _basis_matrix(pb) -> Matrix:
    return pb.matrix_basis.copy()


def _is_below(bone, ancestor) -> bool:
    p = bone.parent
    while p is not None:
        if p == ancestor:
            return True
        p = p.parent
    return False


def write_pose(obj, rigmap: RigMap, local_rotmats, root_trans, *, frame: float | None = None,
               keyframe: bool = False, joints: Sequence[str] | None = None,
               mute_ik: bool = True) -> list[str]:
    """Pose the armature with a canonical pose (pose-bone rotations, pelvis location, keys).

    Mapped bones get the world rotations ``G = C^-1 W A`` (retarget.canonical_to_source), solved
    down the real parent chain including unmapped bones in between (their current pose is
    kept); the pelvis bone's location puts its head at the root position (canonical metres /
    reference.scale, through the object transform).  Rotations are written in each bone's
    rotation mode, Euler angles continuous with the current ones.

    Args:
        obj: the armature object; rigmap: its :class:`RigMap`.
        local_rotmats: ``(22, 3, 3)`` canonical local rotations (Y up, relative to the T-pose).
        root_trans: ``(3,)`` canonical pelvis position, metres, Y up.
        frame: scene frame to write at (the scene goes there first); ``None`` = current frame.
        keyframe: insert keys on the written channels at ``frame`` (rig/actions.py).
        joints: canonical joints to write (default: every mapped joint); the pelvis location is
            written only when "pelvis" is among them.
        mute_ik: mute IK constraints on mapped bones (:attr:`RigMap.ik_constraints`), which would
            otherwise override the written rotations.
    Returns:
        Names of the bones written.
    Raises:
        RigError: wrong shapes, NaN / inf values, unknown joint names, not an armature; raised
            before anything is changed.
    """
    local = np.asarray(local_rotmats, dtype=np.float64)
    trans = np.asarray(root_trans, dtype=np.float64)
    if local.shape != (NUM_JOINTS, 3, 3):
        raise RigError(f"expected local rotations of shape ({NUM_JOINTS}, 3, 3), got {local.shape}")
    if trans.shape != (3,):
        raise RigError(f"expected a root translation of shape (3,), got {trans.shape}")
    if not (np.isfinite(local).all() and np.isfinite(trans).all()):
        bad = sorted({JOINT_NAMES[j] for j in np.nonzero(~np.isfinite(local).all(axis=(1, 2)))[0]})
        what = ", ".join(bad) if bad else "root translation"
        raise RigError(f"the pose contains NaN or infinite values ({what}): nothing was written")
    _check_armature(obj, rigmap)
    wanted = list(rigmap.bones) if joints is None else list(joints)
    unknown = [j for j in wanted if j not in JOINT_INDEX]
    if unknown:
        raise RigError("unknown canonical joints: " + ", ".join(unknown))
    wanted = [j for j in JOINT_NAMES if j in wanted and j in rigmap.bones]

    scene = bpy.context.scene
    if frame is not None and (scene.frame_current + scene.frame_subframe) != frame:
        _set_frame(scene, frame)
    write_frame = scene.frame_current + scene.frame_subframe if frame is None else frame

    if mute_ik:
        for bone, cname in rigmap.ik_constraints:
            con = obj.pose.bones[bone].constraints.get(cname)
            if con is not None:
                con.mute = True

    G, root_src = retarget.canonical_to_source(rigmap.reference, local, trans)
    R_obj = _object_rotation(obj)
    Mw_inv = obj.matrix_world.inverted()
    target_rot = {}  # bone name -> armature-space rotation
    for j in wanted:
        R_world = C_BLENDER.T @ G[JOINT_INDEX[j]]
        target_rot[rigmap.bones[j]] = _mat3(R_obj.T @ R_world)
    pelvis_head = Mw_inv @ Vector(C_BLENDER.T @ root_src)

    bones = obj.data.bones
    joint_of = {b: j for j, b in rigmap.bones.items()}
    # a mapped bone whose parent chain skips its canonical parent's bone (IK feet on the root)
    # gets its head placed where its canonical parent's bone carries it
    detached: dict[str, str] = {}
    for j in wanted:
        if j == "pelvis":
            continue
        p = PARENTS[JOINT_INDEX[j]]
        while p >= 0 and JOINT_NAMES[p] not in rigmap.bones:
            p = PARENTS[p]
        if p >= 0:
            pb_name = rigmap.bones[JOINT_NAMES[p]]
            if not _is_below(bones[rigmap.bones[j]], bones[pb_name]):
                detached[rigmap.bones[j]] = pb_name

    pose_cache: dict[str, Matrix] = {}
    written: list[str] = []

    def pose_matrix(bone) -> Matrix:
        if bone.name in pose_cache:
            return pose_cache[bone.name]
        pb = obj.pose.bones[bone.name]
        parent = bone.parent
        if parent is not None:
            par_pose, par_rest = pose_matrix(parent), parent.matrix_local
        else:
            par_pose, par_rest = Matrix.Identity(4), Matrix.Identity(4)
        if bone.name in target_rot:
            current = bone.convert_local_to_pose(_basis_matrix(pb), bone.matrix_local,
                                                 parent_matrix=par_pose, parent_matrix_local=par_rest)
            loc, _, scale = current.decompose()
            if joint_of.get(bone.name) == "pelvis":
                loc = pelvis_head
            elif bone.name in detached:
                other = bones[detached[bone.name]]
                loc = pose_matrix(other) @ other.matrix_local.inverted() @ bone.head_local
            desired = Matrix.LocRotScale(loc, target_rot[bone.name], scale)
            basis = bone.convert_local_to_pose(desired, bone.matrix_local, parent_matrix=par_pose,
                                               parent_matrix_local=par_rest, invert=True)
            _set_rotation(pb, basis.to_3x3().normalized())
            if joint_of.get(bone.name) == "pelvis" or bone.name in detached:
                pb.location = basis.to_translation()
            written.append(bone.name)
        mat = bone.convert_local_to_pose(_basis_matrix(pb), bone.matrix_local,
                                         parent_matrix=par_pose, parent_matrix_local=par_rest)
        pose_cache[bone.name] = mat
        return mat

    for bone in _topological(bones):
        if bone.name in target_rot:
            pose_matrix(bone)

    if keyframe:
        for name in written:
            pb = obj.pose.bones[name]
            props = _rotation_props(pb)
            if joint_of.get(name) == "pelvis" or name in detached:
                props = props + ("location",)
            actions.key_pose_bone(obj, name, props, write_frame)
    bpy.context.view_layer.update()
    return written
