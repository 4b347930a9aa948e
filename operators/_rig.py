"""What the PoseForge operators share about the armature: which one, its rig map, pinned joints,
keyed frames, and pose conversion to the plain data the backend jobs take.

Poses cross to the backend as canonical local rotations (quaternions w, x, y, z, Y up) and root
positions in metres, converted here with NumPy only (no torch in Blender).
"""
from __future__ import annotations

import numpy as np

from ..backend.retarget import np_matrix_to_quat, np_quat_to_matrix
from ..backend.skeleton import JOINT_NAMES, NUM_JOINTS
from ._job import OperatorError


def active_armature(context):
    """The active object if it is an armature (not in Edit Mode).

    Raises:
        OperatorError: nothing active, not an armature, or in Edit Mode.
    """
    obj = context.active_object
    if obj is None:
        raise OperatorError("No armature selected", hint="Select the character's armature first")
    if obj.type != "ARMATURE":
        raise OperatorError(f"'{obj.name}' is not an armature ({obj.type.lower()})",
                            hint="Select the character's armature first")
    if obj.mode == "EDIT":
        raise OperatorError(f"'{obj.name}' is in Edit Mode", hint="Switch to Pose Mode or Object Mode")
    return obj


def armature_rig_map(obj):
    """The rig map of ``obj`` with the preset chosen on it and the joints fixed by hand.

    Raises:
        RigError: the armature is not humanoid (the message names what cannot be matched).
    """
    from ..rig.bridge import rig_map

    settings = obj.poseforge_rig
    preset = None if settings.preset == "AUTO" else settings.preset
    return rig_map(obj, preset=preset, overrides=settings.overrides() or None)


def mapped_bones(rigmap) -> dict[str, str]:
    """Canonical joint -> bone name of the joints a rig map covers."""
    return {j: b for j, b in rigmap.bones.items() if b}


def bone_selected(pose_bone) -> bool:
    """Pose-bone selection (``PoseBone.select`` from Blender 5.0, ``Bone.select`` before)."""
    if "select" in pose_bone.bl_rna.properties:
        return bool(pose_bone.select)
    return bool(pose_bone.bone.select)


def rotation_locked(pose_bone) -> bool:
    """A pose bone counts as locked when its X, Y and Z rotation locks are all set."""
    return all(pose_bone.lock_rotation)


def pinned_joints(obj, rigmap, mode: str) -> np.ndarray:
    """``(22,)`` bools: joints whose bone is selected (``SELECTED``), fully rotation-locked
    (``LOCKED``), or none (``NONE``); joints without a bone are never pinned."""
    pinned = np.zeros(NUM_JOINTS, dtype=bool)
    if mode == "NONE":
        return pinned
    test = bone_selected if mode == "SELECTED" else rotation_locked
    for joint, bone in mapped_bones(rigmap).items():
        pb = obj.pose.bones.get(bone)
        if pb is not None and test(pb):
            pinned[JOINT_NAMES.index(joint)] = True
    return pinned


def keyed_frames_in_range(obj, scene, rigmap) -> list[int]:
    """Frames in the scene range that carry a key on a mapped bone, sorted.

    Raises:
        OperatorError: the armature has no keys on mapped bones inside the range.
    """
    from ..rig.actions import keyed_frames

    frames: set[float] = set()
    for bone in mapped_bones(rigmap).values():
        frames.update(keyed_frames(obj, bone))
    lo, hi = scene.frame_start, scene.frame_end
    # whole frames as ints; a key on a subframe keeps its exact time (rounding it would key a
    # new frame and leave the real key alone)
    inside = sorted({int(round(f)) if abs(f - round(f)) < 1e-4 else float(f)
                     for f in frames if lo - 1e-4 <= f <= hi + 1e-4})
    if not inside:
        raise OperatorError(f"'{obj.name}' has no keys on its body bones in frames {lo}-{hi}",
                            hint="Key the pose first or change the scene frame range")
    return inside


def poses_to_request(local: np.ndarray, root: np.ndarray) -> dict:
    """Canonical local rotation matrices ``(T, 22, 3, 3)`` / roots ``(T, 3)`` -> request fields
    ``rotations`` ``(T, 22, 4)`` (w, x, y, z) and ``root`` (lists, JSON-ready).

    Raises:
        OperatorError: a rotation or root is NaN or infinite (the joint is named).
    """
    local = np.asarray(local, dtype=np.float64).reshape(-1, NUM_JOINTS, 3, 3)
    root = np.asarray(root, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(local).all(axis=(-1, -2))
    if bad.any():
        t, j = map(int, np.argwhere(bad)[0])
        raise OperatorError(f"The rotation of '{JOINT_NAMES[j]}' is not a number (NaN) at pose {t}",
                            hint="Fix or clear that bone's rotation first")
    if not np.isfinite(root).all():
        raise OperatorError("The root position is not a number (NaN)", hint="Fix the root bone's location")
    return {"rotations": np_matrix_to_quat(local).tolist(), "root": root.tolist()}


def poses_from_result(result: dict, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Result fields ``rotations`` ``(T, 22, 4)`` / ``root`` ``(T, 3)`` -> rotation matrices
    ``(T, 22, 3, 3)`` and roots ``(T, 3)``.

    Raises:
        OperatorError: the result does not have ``frames`` poses.
    """
    q = np.asarray(result.get("rotations", []), dtype=np.float64)
    root = np.asarray(result.get("root", []), dtype=np.float64)
    if q.shape != (frames, NUM_JOINTS, 4) or root.shape != (frames, 3):
        raise OperatorError(f"The backend answered {q.shape} rotations / {root.shape} roots for "
                            f"{frames} poses; nothing was changed")
    if not (np.isfinite(q).all() and np.isfinite(root).all()) or (np.linalg.norm(q, axis=-1) < 1e-6).any():
        raise OperatorError("The backend answered poses that are not numbers; nothing was changed")
    return np_quat_to_matrix(q), root
