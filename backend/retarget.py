"""Retargeting between any humanoid skeleton and the canonical body, through a reference T-pose.

NumPy only (no torch, no bpy): the BVH reader and the Blender rig bridge both use it.

Method (DESIGN.md, "The rig bridge"). Every source skeleton first gets a *reference T-pose*: for
each canonical joint mapped to a source joint, the world rotation ``A_j`` that the source joint
would have if its bone lay along the canonical T-pose bone direction.  It is computed from a
*neutral source pose* ``S`` (the rest pose of a rig in T- or A-pose, or a standing frame for
skeletons whose rest pose is degenerate, such as the Bandai-Namco BVH):

1. the body frame ``B`` of ``S`` (Y: world up, X: right hip -> left hip laid level, Z = X x Y
   forward) removes the facing;
2. each bone (joint -> first mapped descendant along the canonical chain) is swung by the
   shortest-arc rotation ``Q_j`` from its direction in ``S`` onto the canonical direction, so
   the twist about the bone is the one ``S`` has (arms hanging at the sides become a T-pose with
   palms down, as in SMPL); a leaf (head, wrists, feet) or a zero-length bone takes its parent's
   swing;
3. ``A_j = Q_j B^T G_j(S)``; the pelvis takes ``B^T G(S)`` without a swing;
4. twist from a child: the hinge of each knee and elbow is made to agree with the canonical one
   (knees flex about +X, shank going back; elbows flex with the forearm going forward), by a
   twist about the limb's canonical bone direction applied to the whole limb (hip, knee, ankle,
   foot; shoulder, elbow, wrist).  The source hinge is the normal of the upper / lower limb
   plane when the limb is bent more than 10 degrees in ``S``, else a measured flexion axis
   (``hinge_axes``, e.g. from :func:`measure_hinge_axis` on mocap), else the twist of ``S`` is
   kept (a straight-armed T-pose rig: its rest twist is the convention).  Without this, two
   datasets whose neutral poses hold the arms differently disagree on the twist of the arms.

A source pose with world rotations ``G_j`` then maps to canonical global rotations
``W_j = G_j A_j^T`` (a world-space rotation relative to the reference), and back with
``G_j = W_j A_j``.  All rotations here are expressed in canonical world axes (Y up); callers
convert their own axes first with :func:`axis_conversion`.

Canonical joints the source lacks (Bandai has two spine joints for the canonical three) are
filled by this rule: a missing joint between a mapped ancestor ``a`` and a mapped descendant
``d`` on the canonical chain gets the global rotation ``slerp(W_a, W_d, k / n)``, ``k`` its step
from ``a`` and ``n`` the steps from ``a`` to ``d``, which spreads the source's bend evenly over
the canonical joints; a missing joint with no mapped descendant keeps its parent's rotation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import JOINT_INDEX, NUM_JOINTS, PARENTS, PRIMARY_CHILD, rest_joint_positions

_EPS = 1e-9


class RetargetError(ValueError):
    """A skeleton cannot be mapped onto the canonical body (message names what is missing)."""


# --- small NumPy rotation helpers --------------------------------------------------------------

def np_rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation ``(3, 3)`` taking direction ``u`` to direction ``v`` (both ``(3,)``)."""
    u = u / max(np.linalg.norm(u), _EPS)
    v = v / max(np.linalg.norm(v), _EPS)
    axis = np.cross(u, v)
    s, c = np.linalg.norm(axis), float(np.dot(u, v))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        alt = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
        axis = np.cross(u, alt)
        return np_axis_angle_to_matrix(axis / np.linalg.norm(axis) * np.pi)
    return np_axis_angle_to_matrix(axis / s * np.arctan2(s, c))


def np_axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """Rodrigues: ``(..., 3)`` rotation vectors (radians) -> ``(..., 3, 3)``."""
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, _EPS)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    a = angle[..., None]
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def np_matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations -> ``(..., 3)`` rotation vectors, angle in ``[0, pi]``."""
    return np_quat_to_axis_angle(np_matrix_to_quat(m))


def np_matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations -> ``(..., 4)`` unit quaternions ``(w, x, y, z)`` with ``w >= 0``."""
    m = np.asarray(m, dtype=np.float64)
    tr = np.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
                   1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                   1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                   1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    r = np.sqrt(np.maximum(tr, 0.0))
    r = np.maximum(r, _EPS)
    c0 = np.stack([r[..., 0] ** 2, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1) / (2 * r[..., 0:1])
    c1 = np.stack([m[..., 2, 1] - m[..., 1, 2], r[..., 1] ** 2, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1) / (2 * r[..., 1:2])
    c2 = np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], r[..., 2] ** 2, m[..., 1, 2] + m[..., 2, 1]], -1) / (2 * r[..., 2:3])
    c3 = np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 2, 0] + m[..., 0, 2], m[..., 2, 1] + m[..., 1, 2], r[..., 3] ** 2], -1) / (2 * r[..., 3:4])
    cand = np.stack([c0, c1, c2, c3], -2)
    best = np.argmax(tr, axis=-1)
    q = np.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def np_quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` -> ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), _EPS)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(*q.shape[:-1], 3, 3)


def np_quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions -> ``(..., 3)`` rotation vectors, angle in ``[0, pi]``."""
    q = np.where(q[..., :1] < 0, -q, q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    return q[..., 1:] * np.where(s < 1e-12, 2.0, angle / np.maximum(s, 1e-12))


def np_slerp_matrix(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Geodesic interpolation of rotation matrices: ``a @ exp(t * log(a^T b))``."""
    rel = np.swapaxes(a, -1, -2) @ b
    return a @ np_axis_angle_to_matrix(np_matrix_to_axis_angle(rel) * np.asarray(t)[..., None])


def axis_conversion(up: str = "Y") -> np.ndarray:
    """Rotation ``C`` (3, 3) taking a source world frame to canonical axes (Y up).

    ``up="Y"``: identity (BVH, glTF). ``up="Z"``: Blender's frame (Z up, characters facing -Y)
    to canonical (Y up, facing +Z): ``(x, y, z) -> (x, z, -y)``.
    """
    if up.upper() == "Y":
        return np.eye(3)
    if up.upper() == "Z":
        return np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    raise ValueError(f"up axis must be 'Y' or 'Z', got {up!r}")


# --- the reference T-pose ------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """Reference T-pose of one source skeleton, in canonical world axes.

    Attributes:
        source_index: ``(22,)`` int, source joint index of each canonical joint, ``-1`` if missing.
        rotations: ``(22, 3, 3)`` world rotation ``A_j`` of the mapped source joint in the
            reference T-pose (identity for missing joints).
        scale: metres of the canonical body per source unit of length (root translation and
            pelvis height are scaled by it, so feet stay on the floor).
        offsets: ``(22, 3)`` parent-relative joint offsets of THIS skeleton laid in the reference
            T-pose, canonical metres (Y up): :func:`~.skeleton.forward_kinematics` with them puts
            the joints where this skeleton's own bones put them (scaled), which keeps pinned
            bones in place on rigs with other proportions.  A missing joint sits where its
            mapped child is (offset zero for the child), so, as on the source, the rotation of
            a missing joint moves nothing.  Exception: a missing joint with SEVERAL mapped
            branches below it (spine3 missing under a mapped neck and collars) can hold only one
            branch exactly; the others are approximate (off by the missing joint's own bend).
    """
    source_index: np.ndarray
    rotations: np.ndarray
    scale: float
    offsets: np.ndarray | None = None


def _mapped_descendant(j: int, mapped: np.ndarray) -> tuple[int, int]:
    """First mapped joint below ``j`` along the primary-child chain, and the number of steps."""
    c, steps = PRIMARY_CHILD[j], 1
    while c >= 0 and not mapped[c]:
        c, steps = PRIMARY_CHILD[c], steps + 1
    return c, steps


def body_frame(positions: np.ndarray, source_index: np.ndarray) -> np.ndarray:
    """Body frame ``B`` (3, 3) of a standing pose: columns are the body's left, up and forward axes.

    Up is the world up (canonical +Y: the neutral pose stands upright); left is the right hip ->
    left hip vector (plus right -> left shoulder when mapped) laid horizontal; forward = left x up.

    Args:
        positions: ``(J, 3)`` source joint positions in canonical axes.
        source_index: ``(22,)`` mapping (see :class:`Reference`).
    Raises:
        RetargetError: if the hips are not mapped, or the hips line is vertical.
    """
    def p(name: str) -> np.ndarray:
        idx = source_index[JOINT_INDEX[name]]
        if idx < 0:
            raise RetargetError(f"the canonical joint '{name}' is not mapped")
        return positions[idx]

    lateral = p("left_hip") - p("right_hip")
    lateral = lateral / max(np.linalg.norm(lateral), _EPS)
    if source_index[JOINT_INDEX["left_shoulder"]] >= 0 and source_index[JOINT_INDEX["right_shoulder"]] >= 0:
        sh = p("left_shoulder") - p("right_shoulder")
        lateral = lateral + sh / max(np.linalg.norm(sh), _EPS)
    up = np.array([0.0, 1.0, 0.0])
    lateral = lateral - up * lateral[1]
    if np.linalg.norm(lateral) < 1e-6:
        raise RetargetError("the hips line is vertical or zero: cannot find the body's facing")
    x = lateral / np.linalg.norm(lateral)
    z = np.cross(x, up)
    return np.stack([x, up, z], axis=1)


#: Canonical hinge normals of the limbs, keyed by the upper joint: ``bone(upper) x bone(middle)``
#: for a flexed knee (shank backward, -Z) or elbow (forearm forward, +Z), rest T-pose, Y up.
HINGE_NORMALS: dict[str, tuple[float, float, float]] = {
    "left_hip": (1.0, 0.0, 0.0), "right_hip": (1.0, 0.0, 0.0),
    "left_shoulder": (0.0, -1.0, 0.0), "right_shoulder": (0.0, 1.0, 0.0),
}
_MIN_BEND = np.deg2rad(10.0)


def measure_hinge_axis(local_rotations: np.ndarray, min_angle: float = np.deg2rad(20.0)) -> np.ndarray | None:
    """Mean flexion axis of a hinge joint (knee, elbow) from its local rotations over a motion.

    Args:
        local_rotations: ``(T, 3, 3)`` local rotations of the middle joint (source frames).
        min_angle: frames bent less than this (radians) are ignored.
    Returns:
        ``(3,)`` unit axis in the parent (upper limb) frame, or ``None`` if the joint never bends.
    """
    aa = np_matrix_to_axis_angle(np.asarray(local_rotations, dtype=np.float64))
    ang = np.linalg.norm(aa, axis=-1)
    sel = ang > min_angle
    if sel.sum() < 5:
        return None
    axes = aa[sel] / ang[sel, None]
    ref = axes[np.argmax(ang[sel])]
    axes = np.where((axes @ ref)[:, None] < 0, -axes, axes)
    mean = axes.mean(0)
    return mean / np.linalg.norm(mean)


def _twist_about(axis: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Rotation about unit ``axis`` taking ``src`` to ``dst`` once both are projected off it."""
    a = axis / np.linalg.norm(axis)
    s = src - a * (src @ a)
    d = dst - a * (dst @ a)
    if np.linalg.norm(s) < 1e-6 or np.linalg.norm(d) < 1e-6:
        return None
    s, d = s / np.linalg.norm(s), d / np.linalg.norm(d)
    angle = np.arctan2(np.cross(s, d) @ a, s @ d)
    return np_axis_angle_to_matrix(a * angle)


def reference_tpose(world_rots: np.ndarray, world_pos: np.ndarray, source_index,
                    hinge_axes: dict[str, np.ndarray] | None = None) -> Reference:
    """Reference T-pose of a source skeleton from one neutral pose ``S`` of it (see module doc).

    Args:
        world_rots: ``(J, 3, 3)`` world rotations of the source joints in ``S``, canonical axes.
        world_pos: ``(J, 3)`` world positions of the source joints in ``S``, canonical axes,
            source units.
        source_index: ``(22,)`` source joint index per canonical joint, ``-1`` where missing.
        hinge_axes: optional flexion axis of a knee / elbow, keyed by the canonical UPPER joint
            (``"left_hip"``, ``"left_shoulder"``, ...), in that upper joint's local frame (where
            the middle joint's local rotation turns); used when the limb is straight in ``S``.
    Returns:
        :class:`Reference`.
    Raises:
        RetargetError: if the pelvis, hips, knees or ankles are missing (named in the message).
    """
    idx = np.asarray(source_index, dtype=np.int64)
    required = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
    missing = [n for n in required if idx[JOINT_INDEX[n]] < 0]
    if missing:
        raise RetargetError("cannot retarget: no bone for " + ", ".join(missing))
    mapped = idx >= 0
    world_rots = np.asarray(world_rots, dtype=np.float64)
    world_pos = np.asarray(world_pos, dtype=np.float64)
    rest = rest_joint_positions()
    B = body_frame(world_pos, idx)
    swing = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    A = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for j in range(NUM_JOINTS):  # parents come first in SMPL order
        if not mapped[j]:
            if j > 0:
                swing[j] = swing[PARENTS[j]]
            continue
        if j == 0:
            A[0] = B.T @ world_rots[idx[0]]
            continue
        d_idx, _ = _mapped_descendant(j, mapped)
        swing[j] = swing[PARENTS[j]]
        if d_idx >= 0:
            d = B.T @ (world_pos[idx[d_idx]] - world_pos[idx[j]])
            if np.linalg.norm(d) > 1e-6:
                swing[j] = np_rotation_between(d, rest[d_idx] - rest[j])
        A[j] = swing[j] @ B.T @ world_rots[idx[j]]
    _align_hinges(A, world_rots, world_pos, idx, B, swing, rest, hinge_axes or {})
    legs = []
    for side in ("left", "right"):
        h, k, a = (idx[JOINT_INDEX[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        legs.append(np.linalg.norm(world_pos[k] - world_pos[h]) + np.linalg.norm(world_pos[a] - world_pos[k]))
    src_leg = float(np.mean(legs))
    can_leg = float(np.linalg.norm(rest[4] - rest[1]) + np.linalg.norm(rest[7] - rest[4]))
    if src_leg < 1e-9:
        raise RetargetError("the legs have zero length in the neutral pose")
    scale = can_leg / src_leg
    return Reference(source_index=idx, rotations=A, scale=scale,
                     offsets=_reference_offsets(A, world_rots, world_pos, idx, scale, rest))


def _reference_offsets(A, world_rots, world_pos, idx, scale, rest) -> np.ndarray:
    """Joint offsets of the source skeleton in its reference T-pose (see :class:`Reference`)."""
    mapped = idx >= 0
    src = np.where(mapped, idx, 0)
    return _offsets_from(A, world_rots[src], world_pos[src], mapped, scale)


def _offsets_from(A, rots, pos, mapped, scale) -> np.ndarray:
    """Offsets ``(22, 3)`` (canonical metres) of the mapped joints from their mapped ancestors,
    measured in the ancestor's canonical frame: ``A_a G_a^T (p_j - p_a) * scale``.  ``rots`` /
    ``pos``: ``(22, 3, 3)`` / ``(22, 3)`` source world rotations and positions per canonical
    joint (canonical axes, source units)."""
    from .skeleton import REST_OFFSETS
    off = np.array(REST_OFFSETS, dtype=np.float64)
    placed: set[int] = set()
    for j in range(1, NUM_JOINTS):
        if not mapped[j]:
            continue
        a, chain = PARENTS[j], [j]
        while not mapped[a]:
            chain.append(a)
            a = PARENTS[a]
        v = A[a] @ rots[a].T @ (pos[j] - pos[a]) * scale
        # missing joints in between (chain = j, ..., first missing): the source bone from a to j
        # is rigid, so the whole vector goes on the first missing joint and the rest sit on it;
        # the canonical rotations of the missing joints then move nothing, as on the source
        if chain[-1] in placed:  # a branch point already placed by a sibling chain: approximate
            off[j] = v - off[chain[-1]] - sum((off[k] for k in chain[1:-1]), np.zeros(3))
            continue
        for k in chain:
            off[k] = 0.0
        off[chain[-1]] = v
        if len(chain) > 1:
            placed.add(chain[-1])
    return off


def pose_offsets(ref: Reference, world_rots: np.ndarray, world_pos: np.ndarray) -> np.ndarray:
    """Joint offsets of a source skeleton in its CURRENT pose, canonical metres.

    Rigs can pose bones by location and scale too; canonical forward kinematics with these
    offsets and the canonical rotations of the same pose puts every mapped joint where the rig
    has it, and keeps doing so while only rotations change (what Snap does).

    Args:
        ref: the skeleton's :class:`Reference`.
        world_rots: ``(J, 3, 3)`` / world_pos ``(J, 3)``: source world rotations and positions
            (canonical axes, source units), indexed like ``ref.source_index``.
    Returns:
        ``(22, 3)`` offsets for :func:`~.skeleton.forward_kinematics`.
    """
    mapped = ref.source_index >= 0
    src = np.where(mapped, ref.source_index, 0)
    return _offsets_from(ref.rotations, np.asarray(world_rots, dtype=np.float64)[src],
                         np.asarray(world_pos, dtype=np.float64)[src], mapped, ref.scale)


def _align_hinges(A, world_rots, world_pos, idx, B, swing, rest, hinge_axes) -> None:
    """Step 4 of the module doc: twist each limb so its knee / elbow hinge is the canonical one."""
    from .skeleton import JOINT_INDEX as J
    for upper, normal in HINGE_NORMALS.items():
        u = J[upper]
        m = PRIMARY_CHILD[u]
        e = PRIMARY_CHILD[m]
        if min(idx[u], idx[m], idx[e]) < 0:
            continue
        d1 = world_pos[idx[m]] - world_pos[idx[u]]
        d2 = world_pos[idx[e]] - world_pos[idx[m]]
        cos = d1 @ d2 / max(np.linalg.norm(d1) * np.linalg.norm(d2), _EPS)
        if np.arccos(np.clip(cos, -1, 1)) > _MIN_BEND:
            n_s = np.cross(d1, d2)
        elif upper in hinge_axes:
            n_s = world_rots[idx[u]] @ np.asarray(hinge_axes[upper], dtype=np.float64)
        else:
            continue
        n_ref = swing[u] @ B.T @ n_s           # the source hinge in the reference T-pose
        bone = rest[m] - rest[u]
        twist = _twist_about(bone, n_ref, np.asarray(normal))
        if twist is None:
            continue
        k = u
        while k >= 0:                           # the whole limb turns about its own axis
            A[k] = twist @ A[k]
            k = PRIMARY_CHILD[k]


def _fill_missing(W: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    for j in range(1, NUM_JOINTS):
        if mapped[j]:
            continue
        a, k = PARENTS[j], 1
        while not mapped[a] and a > 0:
            a, k = PARENTS[a], k + 1
        d, n = _mapped_descendant(j, mapped)
        if d < 0:
            W[..., j, :, :] = W[..., PARENTS[j], :, :]
        else:
            W[..., j, :, :] = np_slerp_matrix(W[..., a, :, :], W[..., d, :, :], k / (k + n))
    return W


def source_to_canonical(ref: Reference, world_rots: np.ndarray, root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map source poses onto the canonical body.

    Args:
        ref: the skeleton's :class:`Reference`.
        world_rots: ``(..., J, 3, 3)`` world rotations of the source joints, canonical axes.
        root_pos: ``(..., 3)`` world position of the source joint mapped to the pelvis,
            canonical axes, source units.
    Returns:
        ``(local_rotmats (..., 22, 3, 3), root_trans (..., 3) metres)``.
    """
    mapped = ref.source_index >= 0
    src = np.where(mapped, ref.source_index, 0)
    W = np.asarray(world_rots, dtype=np.float64)[..., src, :, :] @ np.swapaxes(ref.rotations, -1, -2)
    W = _fill_missing(W, mapped)
    from .skeleton import global_to_local
    return global_to_local(W), np.asarray(root_pos, dtype=np.float64) * ref.scale


def canonical_to_source(ref: Reference, local_rotmats: np.ndarray, root_trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map canonical poses back to world rotations of the mapped source joints.

    Args:
        ref: the skeleton's :class:`Reference`.
        local_rotmats: ``(..., 22, 3, 3)`` canonical local rotations.
        root_trans: ``(..., 3)`` canonical pelvis position, metres.
    Returns:
        ``(world_rots (..., 22, 3, 3), root_pos (..., 3))``: target world rotation of the source
        joint mapped to each canonical joint (rows of missing joints are meaningless) and the
        world position of the source pelvis joint in source units, both in canonical axes.
    """
    from .skeleton import forward_kinematics_np
    _, W = forward_kinematics_np(local_rotmats)
    return W @ ref.rotations, np.asarray(root_trans, dtype=np.float64) / ref.scale
