"""The canonical body: 22 joints in SMPL order, metres, Y up, +Z forward, +X to the body's left.

A pose is a root translation ``(3,)`` (world position of the pelvis joint, metres) plus 22 local
rotations relative to the rest pose, which is a T-pose.  Local rotation ``R_j`` maps vectors of
joint ``j``'s frame to its parent's frame; since the rest pose has identity rotations everywhere,
the global rotation of a joint is the product of the local rotations along its chain.

The rest offsets below have SMPL-like proportions (about 1.7 m tall), symmetrised, with the legs
straight down and the arms straight out to the sides.  Bone lengths for a particular actor can be
passed to :func:`forward_kinematics` as ``offsets``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: Blender-side code uses this module without it
    import torch

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

#: Joint whose direction from a joint defines that joint's bone (``-1`` for leaves).
PRIMARY_CHILD: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1, -1, 15, 16, 17, -1,
                                  18, 19, 20, 21, -1, -1)

#: Left/right mirror permutation of the joints (used for mirroring poses and data augmentation).
MIRROR: tuple[int, ...] = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18,
                           21, 20)

#: Groups of joints an animator thinks in (used for completion masks and benchmarks).
BODY_PARTS: dict[str, tuple[int, ...]] = {
    "torso": (0, 3, 6, 9, 12, 15),
    "left_leg": (1, 4, 7, 10),
    "right_leg": (2, 5, 8, 11),
    "left_arm": (13, 16, 18, 20),
    "right_arm": (14, 17, 19, 21),
}

# Offsets of each joint from its parent in the T-pose rest, metres (Y up, +Z forward, +X left).
_HALF = {
    "pelvis": (0.0, 0.93, 0.0),          # root: rest position of the pelvis above the ground
    "left_hip": (0.068, -0.091, -0.005),
    "spine1": (0.0, 0.12, -0.026),
    "left_knee": (0.0, -0.385, 0.0),
    "spine2": (0.0, 0.134, 0.025),
    "left_ankle": (0.0, -0.40, -0.03),
    "spine3": (0.0, 0.053, 0.003),
    "left_foot": (0.0, -0.055, 0.12),
    "neck": (0.0, 0.21, -0.045),
    "left_collar": (0.075, 0.12, -0.03),
    "head": (0.0, 0.07, 0.055),
    "left_shoulder": (0.095, 0.03, -0.015),
    "left_elbow": (0.26, 0.0, 0.0),
    "left_wrist": (0.25, 0.0, 0.0),
}


def _rest_offsets() -> np.ndarray:
    out = np.zeros((NUM_JOINTS, 3), dtype=np.float64)
    for i, name in enumerate(JOINT_NAMES):
        if name in _HALF:
            out[i] = _HALF[name]
        else:  # right side: mirror of the left joint (X negated)
            left = _HALF[name.replace("right_", "left_")]
            out[i] = (-left[0], left[1], left[2])
    out.setflags(write=False)
    return out


#: ``(22, 3)`` float64: offset of each joint from its parent in the rest T-pose (row 0: the
#: pelvis rest position), metres, Y up.
REST_OFFSETS: np.ndarray = _rest_offsets()


def rest_joint_positions(offsets: np.ndarray | None = None) -> np.ndarray:
    """World joint positions of the rest T-pose.

    Args:
        offsets: ``(22, 3)`` parent-relative offsets (default :data:`REST_OFFSETS`), metres.
    Returns:
        ``(22, 3)`` positions in metres, Y up, pelvis at ``offsets[0]``.
    """
    off = REST_OFFSETS if offsets is None else np.asarray(offsets, dtype=np.float64)
    pos = [off[0]]
    for j in range(1, NUM_JOINTS):
        pos.append(pos[PARENTS[j]] + off[j])
    return np.stack(pos)


def bone_directions(offsets: np.ndarray | None = None) -> np.ndarray:
    """Unit direction of each joint's bone in the rest T-pose (Y up).

    The bone of joint ``j`` runs from ``j`` to :data:`PRIMARY_CHILD` ``[j]``; a leaf joint
    (head, feet, wrists) takes its parent's direction.

    Returns:
        ``(22, 3)`` unit vectors.
    """
    pos = rest_joint_positions(offsets)
    dirs = np.zeros((NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        c = PRIMARY_CHILD[j]
        d = pos[c] - pos[j] if c >= 0 else pos[j] - pos[PARENTS[j]]
        dirs[j] = d / np.linalg.norm(d)
    return dirs


def forward_kinematics(local_rotmats: "torch.Tensor", root_trans: "torch.Tensor | None" = None,
                       offsets: "torch.Tensor | np.ndarray | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Batched forward kinematics of the canonical body.

    Args:
        local_rotmats: ``(..., 22, 3, 3)`` local rotation matrices relative to the rest T-pose.
        root_trans: ``(..., 3)`` world position of the pelvis in metres; ``None`` puts the
            pelvis at the origin.
        offsets: ``(22, 3)`` or ``(..., 22, 3)`` parent-relative rest offsets (default
            :data:`REST_OFFSETS`); row 0 is ignored (the pelvis goes to ``root_trans``).
    Returns:
        ``(positions, global_rotmats)``: ``(..., 22, 3)`` metres and ``(..., 22, 3, 3)``,
        Y up, in the dtype and device of ``local_rotmats``.
    Raises:
        ValueError: if the trailing shape is not ``(22, 3, 3)``.
    """
    if local_rotmats.shape[-3:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"expected (..., {NUM_JOINTS}, 3, 3) rotations, got {tuple(local_rotmats.shape)}")
    import torch

    batch = local_rotmats.shape[:-3]
    off = torch.as_tensor(np.array(REST_OFFSETS if offsets is None else offsets)).to(local_rotmats)
    off = off.expand(*batch, NUM_JOINTS, 3)
    if root_trans is None:
        root_trans = local_rotmats.new_zeros(*batch, 3)
    glob = [local_rotmats[..., 0, :, :]]
    pos = [root_trans.to(local_rotmats)]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        glob.append(glob[p] @ local_rotmats[..., j, :, :])
        pos.append(pos[p] + (glob[p] @ off[..., j, :, None])[..., 0])
    return torch.stack(pos, dim=-2), torch.stack(glob, dim=-3)


def forward_kinematics_np(local_rotmats: np.ndarray, root_trans: np.ndarray | None = None,
                          offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`forward_kinematics` (for Blender-side code without torch).

    Same shapes, units and frames: ``(..., 22, 3, 3)`` in, ``(..., 22, 3)`` metres and
    ``(..., 22, 3, 3)`` out, Y up.
    """
    local_rotmats = np.asarray(local_rotmats, dtype=np.float64)
    if local_rotmats.shape[-3:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"expected (..., {NUM_JOINTS}, 3, 3) rotations, got {local_rotmats.shape}")
    batch = local_rotmats.shape[:-3]
    off = np.broadcast_to(REST_OFFSETS if offsets is None else offsets, (*batch, NUM_JOINTS, 3))
    root = np.zeros((*batch, 3)) if root_trans is None else np.asarray(root_trans, dtype=np.float64)
    glob = [local_rotmats[..., 0, :, :]]
    pos = [root]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        glob.append(glob[p] @ local_rotmats[..., j, :, :])
        pos.append(pos[p] + (glob[p] @ off[..., j, :, None])[..., 0])
    return np.stack(pos, axis=-2), np.stack(glob, axis=-3)


def global_to_local(global_rotmats):
    """Local rotations from global ones: ``L_j = G_parent(j)^T G_j``.

    Args:
        global_rotmats: ``(..., 22, 3, 3)`` torch tensor or NumPy array.
    Returns:
        ``(..., 22, 3, 3)`` local rotations, same type.
    """
    parents = list(PARENTS)
    parents[0] = 0
    par = global_rotmats[..., parents, :, :]
    local = par.swapaxes(-1, -2) @ global_rotmats
    local[..., 0, :, :] = global_rotmats[..., 0, :, :]
    return local
