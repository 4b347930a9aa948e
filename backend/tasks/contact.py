"""Foot contacts and foot-sliding clean-up on the canonical body.

NumPy only (no torch, no bpy): usable in the job server and inside Blender.

Contacts follow the LaFAN1 reference code (Harvey et al. 2020, "Robust Motion In-betweening",
``extract_feet_contacts`` of the Ubisoft LaFAN1 repository): a foot is in contact on a frame when
the squared per-frame velocity of *both* its ankle and its foot (toe) joint is under a threshold.
We also ask the lower of the two joints to be near the floor (the motion's lowest foot height), so
a foot held still in the air is not planted.

Sliding is removed by locking each contact run with analytic two-bone IK on hip - knee - ankle
(the knee stays in the plane of hip, target and original knee), keeping the global orientation of
the ankle and foot joints, with the correction faded in and out over a few frames at the run ends.
Motion data as everywhere in PoseForge: ``rotations (T, 22, 4)`` local quaternions ``(w, x, y, z)``
relative to the canonical T-pose, ``root (T, 3)`` pelvis position in metres, Y up, 30 fps.
"""
from __future__ import annotations

import numpy as np

from ..retarget import np_axis_angle_to_matrix, np_matrix_to_quat, np_quat_to_matrix
from ..skeleton import JOINT_INDEX, NUM_JOINTS, PARENTS, REST_OFFSETS, forward_kinematics_np

#: Default contact speed threshold of both the ankle and the foot (toe) joint, metres per frame
#: at 30 fps (1.5 cm/frame = 0.45 m/s).  On the Bandai-2 test walks it gives 30-61 % contact
#: frames per foot (mean 46 %), the two feet alternating.
VEL_THRESHOLD = 0.015
#: Default height of the lower of ankle / foot joint above the motion's lowest foot height, metres.
HEIGHT_THRESHOLD = 0.05
#: Default number of frames over which the correction fades in before and out after a contact run.
BLEND_FRAMES = 4

#: ``(hip, knee, ankle, foot)`` joint indices of the left and the right leg.
LEGS: tuple[tuple[int, int, int, int], ...] = tuple(
    (JOINT_INDEX[f"{s}_hip"], JOINT_INDEX[f"{s}_knee"], JOINT_INDEX[f"{s}_ankle"], JOINT_INDEX[f"{s}_foot"])
    for s in ("left", "right"))

_EPS = 1e-9


class ContactError(ValueError):
    """Motion or contact arrays of the wrong shape, or values that are not finite."""


def _check(rotations, root) -> tuple[np.ndarray, np.ndarray]:
    rotations = np.asarray(rotations)
    root = np.asarray(root)
    if rotations.ndim != 3 or rotations.shape[1:] != (NUM_JOINTS, 4):
        raise ContactError(f"rotations must be (T, {NUM_JOINTS}, 4) quaternions, got {rotations.shape}")
    if root.shape != (rotations.shape[0], 3):
        raise ContactError(f"root must be ({rotations.shape[0]}, 3), got {root.shape}")
    if not (np.isfinite(rotations).all() and np.isfinite(root).all()):
        raise ContactError("rotations or root contain NaN or infinite values")
    return rotations, root


def _contacts_from_positions(pos: np.ndarray, vel_threshold: float, height_threshold: float,
                             floor: float | None = None) -> np.ndarray:
    T = pos.shape[0]
    out = np.zeros((T, 2), dtype=bool)
    if T < 2:
        return out
    feet = [[ankle, foot] for _, _, ankle, foot in LEGS]
    lowest = pos[:, feet, 1].min(-1)  # (T, 2) height of the lower joint of each foot
    if floor is None:
        floor = float(lowest.min())
    for side, joints in enumerate(feet):
        v2 = np.sum(np.diff(pos[:, joints], axis=0) ** 2, axis=-1)  # (T-1, 2) squared speed
        v2 = np.concatenate([v2, v2[-1:]], axis=0)  # last frame repeats the one before
        out[:, side] = np.all(v2 < vel_threshold ** 2, axis=-1) & (lowest[:, side] < floor + height_threshold)
    return out


def foot_contacts(rotations, root, *, vel_threshold: float = VEL_THRESHOLD,
                  height_threshold: float = HEIGHT_THRESHOLD, floor: float | None = None) -> np.ndarray:
    """Frames where each foot is planted.

    A foot is in contact on frame ``t`` when both its ankle and its foot (toe) joint move less
    than ``vel_threshold`` between frames ``t`` and ``t + 1`` (the last frame repeats the one
    before), as in LaFAN1's ``extract_feet_contacts``, and the lower of the two joints is within
    ``height_threshold`` of the floor.

    Args:
        rotations: ``(T, 22, 4)`` local quaternions ``(w, x, y, z)`` (canonical body).
        root: ``(T, 3)`` pelvis positions, metres, Y up.
        vel_threshold: speed threshold, metres per frame (the default suits 30 fps).
        height_threshold: metres above the floor.
        floor: floor height in metres; default the motion's lowest ankle / foot joint height.
    Returns:
        ``(T, 2)`` bool, columns left foot, right foot.
    Raises:
        ContactError: wrong shapes or non-finite values.
    """
    rotations, root = _check(rotations, root)
    pos, _ = forward_kinematics_np(np_quat_to_matrix(rotations), root)
    return _contacts_from_positions(pos, vel_threshold, height_threshold, floor)


def contact_runs(contact: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` inclusive frame ranges of the True runs of a ``(T,)`` bool array."""
    c = np.concatenate([[False], np.asarray(contact, dtype=bool), [False]]).astype(np.int8)
    d = np.diff(c)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ankle_offsets(ankle_pos: np.ndarray, run: tuple[int, int], keep: np.ndarray,
                   blend: int) -> tuple[np.ndarray, np.ndarray]:
    """Position offset of the ankle that locks one contact run, faded at its ends.

    The target inside the run is the ankle position on the run's kept frames (linearly
    interpolated between them, held before the first and after the last), or the mean ankle
    position of the run when none is kept.  Outside the run the offset at the run's end fades to
    zero over ``blend`` frames, or sooner if a kept frame comes first.

    Returns:
        ``(frames, offsets (n, 3))``.
    """
    T = ankle_pos.shape[0]
    s, e = run
    frames = np.arange(s, e + 1)
    kept = frames[keep[s:e + 1]]
    if len(kept):
        target = np.stack([np.interp(frames, kept, ankle_pos[kept, k]) for k in range(3)], -1)
    else:
        target = np.broadcast_to(ankle_pos[s:e + 1].mean(0), (len(frames), 3))
    off = [target - ankle_pos[s:e + 1]]
    out_frames = [frames]
    # fade in before the run: zero at the blend start or at the last kept frame before the run
    kept_before = np.flatnonzero(keep[:s])
    z = max(s - blend - 1, kept_before[-1] if len(kept_before) else -1, -1)
    if s - z > 1:
        fr = np.arange(z + 1, s)
        w = _smooth((fr - z) / (s - z))
        off.insert(0, w[:, None] * off[0][0])
        out_frames.insert(0, fr)
    kept_after = np.flatnonzero(keep[e + 1:]) + e + 1
    z = min(e + blend + 1, kept_after[0] if len(kept_after) else T, T)
    if z - e > 1:
        fr = np.arange(e + 1, z)
        w = _smooth((z - fr) / (z - e))
        off.append(w[:, None] * off[-1][-1])
        out_frames.append(fr)
    return np.concatenate(out_frames), np.concatenate(off)


def _rotations_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations ``(n, 3, 3)`` taking directions ``u`` to ``v`` (both ``(n, 3)``)."""
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), _EPS)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)
    axis = np.cross(u, v)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    c = np.sum(u * v, axis=-1, keepdims=True)
    # antiparallel: half turn about any axis perpendicular to u
    alt = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    perp = np.cross(u, alt)
    perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), _EPS)
    aa = np.where(s > 1e-9, axis / np.maximum(s, _EPS) * np.arctan2(s, c),
                  np.where(c > 0, 0.0, perp * np.pi))
    return np_axis_angle_to_matrix(aa)


def two_bone_ik(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray,
                pole: np.ndarray | None = None) -> np.ndarray:
    """Knee positions that bring the ankle to ``target`` with unchanged bone lengths.

    Analytic two-bone IK: the new knee lies in the plane through the hip, the target and the
    original knee (the swing plane of the original leg); ``pole`` (a direction) is used where the
    original leg is straight along the hip-target line.  Targets out of reach are approached
    along the hip-target line (the leg straightens, minus a hair).

    Args:
        hip, knee, ankle, target: ``(n, 3)`` world positions, metres.
        pole: ``(n, 3)`` fallback bend directions (default: the original knee's offset).
    Returns:
        ``(n, 3)`` new knee positions.
    """
    l1 = np.linalg.norm(knee - hip, axis=-1)
    l2 = np.linalg.norm(ankle - knee, axis=-1)
    d_vec = target - hip
    d = np.linalg.norm(d_vec, axis=-1)
    u = d_vec / np.maximum(d, _EPS)[:, None]
    d = np.clip(d, np.abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6)
    p = knee - hip
    p_perp = p - np.sum(p * u, -1, keepdims=True) * u
    n = np.linalg.norm(p_perp, axis=-1, keepdims=True)
    if pole is not None:
        q = pole - np.sum(pole * u, -1, keepdims=True) * u
        p_perp = np.where(n > 1e-4, p_perp, q)
        n = np.linalg.norm(p_perp, axis=-1, keepdims=True)
    p_perp = p_perp / np.maximum(n, _EPS)
    a = (l1 ** 2 - l2 ** 2 + d ** 2) / (2 * d)
    h = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0.0))
    return hip + a[:, None] * u + h[:, None] * p_perp


def fix_foot_sliding(rotations, root, contacts=None, keep=None, blend: int = BLEND_FRAMES, *,
                     vel_threshold: float = VEL_THRESHOLD, height_threshold: float = HEIGHT_THRESHOLD
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Lock each foot in place while it is in contact (removes foot sliding).

    For every contact run of a foot the ankle is moved to a fixed target (its position on the
    run's kept frames, linearly between several; else its mean position over the run), by
    analytic two-bone IK on hip - knee - ankle that keeps the knee a hinge: the knee's flexion
    about its hinge axis (+X of the hip's frame, the canonical body's knee axis) is set so the
    hip-to-ankle distance matches the target's (law of cosines), then the hip swings by the
    shortest arc to point the leg at the target.  A knee turned off its hinge reads as broken to
    the DPoser prior, so the IK never does that.  The global orientations of the ankle and foot joints stay as they were, so
    the sole keeps its angle to the floor.  Around a run the ankle's offset fades in and out over
    ``blend`` frames (smoothstep), stopping at the nearest kept frame.  Hips, knees and ankles
    of the legs change; every other joint, the root and the kept frames are returned
    bit-identical, as are frames no run touches.

    Args:
        rotations: ``(T, 22, 4)`` local quaternions ``(w, x, y, z)`` (canonical body).
        root: ``(T, 3)`` pelvis positions, metres, Y up.
        contacts: ``(T, 2)`` bool (left, right); default :func:`foot_contacts` of the input with
            ``vel_threshold`` / ``height_threshold``.
        keep: ``(T,)`` bool frames never changed (the animator's keys); default none.
        blend: frames of fade-in / fade-out around each run (``>= 0``).
        vel_threshold, height_threshold: for the default contacts (see :func:`foot_contacts`).
    Returns:
        ``(rotations, root)``: new arrays of the input shapes and dtypes.
    Raises:
        ContactError: wrong shapes, non-finite values, or a negative ``blend``.
    """
    rotations, root = _check(rotations, root)
    T = rotations.shape[0]
    if contacts is None:
        contacts = foot_contacts(rotations, root, vel_threshold=vel_threshold,
                                 height_threshold=height_threshold)
    contacts = np.asarray(contacts, dtype=bool)
    if contacts.shape != (T, 2):
        raise ContactError(f"contacts must be ({T}, 2) bool, got {contacts.shape}")
    keep = np.zeros(T, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != (T,):
        raise ContactError(f"keep must be ({T},) bool, got {keep.shape}")
    if int(blend) != blend or blend < 0:
        raise ContactError(f"blend must be a whole number of frames >= 0, got {blend}")
    blend = int(blend)
    out_rot = rotations.copy()
    if T == 0 or not contacts.any():
        return out_rot, root.copy()

    local = np_quat_to_matrix(rotations.astype(np.float64))
    pos, glob = forward_kinematics_np(local, root)
    for side, (hip, knee, ankle, foot) in enumerate(LEGS):
        offset = np.zeros((T, 3))
        for run in contact_runs(contacts[:, side]):
            frames, off = _ankle_offsets(pos[:, ankle], run, keep, blend)
            offset[frames] += off
        offset[keep] = 0.0
        frames = np.flatnonzero(np.linalg.norm(offset, axis=-1) > 1e-7)
        if not len(frames):
            continue
        H, A = pos[frames, hip], pos[frames, ankle]
        target = A + offset[frames]
        # 1. knee: change only its flexion, about its hinge (+X of the hip's frame on the canonical
        #    body), so the hip-to-ankle distance becomes the hip-to-target distance
        L_knee = local[frames, knee]
        k = np.broadcast_to(REST_OFFSETS[knee], (len(frames), 3))              # knee in the hip frame
        sh = (L_knee @ REST_OFFSETS[ankle][:, None])[..., 0]                    # shank in the hip frame
        kp, sp = k[:, 1:], sh[:, 1:]                                            # parts across the hinge
        theta0 = np.arctan2(kp[:, 0] * sp[:, 1] - kp[:, 1] * sp[:, 0], np.sum(kp * sp, -1))
        nk, ns = np.linalg.norm(kp, axis=-1), np.linalg.norm(sp, axis=-1)
        d2 = np.sum((target - H) ** 2, -1)
        c = (d2 - np.sum(k ** 2, -1) - np.sum(sh ** 2, -1) - 2 * k[:, 0] * sh[:, 0]) / np.maximum(2 * nk * ns, _EPS)
        theta = np.where(theta0 >= 0, 1.0, -1.0) * np.arccos(np.clip(c, -1.0, 1.0))
        delta = theta - theta0
        R_hinge = np_axis_angle_to_matrix(np.stack([delta, np.zeros_like(delta), np.zeros_like(delta)], -1))
        L_knee_new = R_hinge @ L_knee
        # 2. hip: the shortest swing that points the hip-to-ankle line at the target
        G_hip = glob[frames, hip]
        A_rel = (G_hip @ (k + (L_knee_new @ REST_OFFSETS[ankle][:, None])[..., 0])[..., None])[..., 0]
        R1 = _rotations_between(A_rel, target - H)
        G_hip = R1 @ G_hip
        G_knee = G_hip @ L_knee_new
        G_par = glob[frames, PARENTS[hip]]
        new = {hip: np.swapaxes(G_par, -1, -2) @ G_hip,
               knee: L_knee_new,
               ankle: np.swapaxes(G_knee, -1, -2) @ glob[frames, ankle]}
        for j, m in new.items():
            q = np_matrix_to_quat(m)
            old = rotations[frames, j].astype(np.float64)
            q = np.where(np.sum(q * old, -1, keepdims=True) < 0, -q, q)  # keep the input's sign
            out_rot[frames, j] = q.astype(rotations.dtype)
    return out_rot, root.copy()


def foot_sliding(rotations, root, contacts=None, **kwargs) -> tuple[float, float]:
    """Mean horizontal speed of the feet on their contact frames (a foot-skating measure).

    Args:
        rotations, root: the motion (see :func:`foot_contacts`).
        contacts: ``(T, 2)`` bool; default :func:`foot_contacts` of the motion itself (``kwargs``
            pass the thresholds).
    Returns:
        ``(left, right)`` mean horizontal (XZ) speed of the ankle and foot joints between two
        consecutive contact frames, centimetres per frame; ``nan`` for a foot with no such pair.
    """
    rotations, root = _check(rotations, root)
    if contacts is None:
        contacts = foot_contacts(rotations, root, **kwargs)
    pos, _ = forward_kinematics_np(np_quat_to_matrix(rotations), root)
    out = []
    for side, (_, _, ankle, foot) in enumerate(LEGS):
        v = np.linalg.norm(np.diff(pos[:, [ankle, foot]][..., [0, 2]], axis=0), axis=-1).mean(-1)
        c = np.asarray(contacts, dtype=bool)[:, side]
        c = c[:-1] & c[1:]
        out.append(float(v[c].mean() * 100) if c.any() else float("nan"))
    return out[0], out[1]


__all__ = ["ContactError", "foot_contacts", "fix_foot_sliding", "foot_sliding", "contact_runs",
           "two_bone_ik", "VEL_THRESHOLD", "HEIGHT_THRESHOLD", "BLEND_FRAMES", "LEGS"]
