"""``poseforge bench inbetween``: the LaFAN1 in-betweening benchmark on the canonical body.

Protocol of Harvey et al. 2020, "Robust motion in-betweening" (SIGGRAPH 2020, sec. 5, and the
``lafan1`` benchmark code of the Ubisoft La Forge animation dataset), applied to canonical motion
(DESIGN.md "Benchmarks"):

* **Windows.**  Per clip, windows of 65 frames starting every 40 frames while ``start + 65 < T``.
  Each window is centred (the mean pelvis XZ over all its frames moved to the origin) and turned
  about the vertical axis so that the pelvis faces +Z on frame 9, the last context frame
  (the pelvis' local +Z axis projected on the XZ plane).  Evaluated windows come from the clips of
  the chosen split (``test``: Bandai-2 takes divisible by 5; ``all``: every clip).
* **Statistics.**  Global joint positions (forward kinematics of the canonical body, metres, Y up)
  of TRAINING windows of 50 frames every 20, centred and turned in the same way; mean and
  (population) standard deviation per joint coordinate over all windows and frames.  They are
  cached as ``lafan_stats.npz`` in the cache folder, keyed by the cache's data hash.
* **Tasks.**  For a transition length ``n`` in 5, 15, 30, 45 the first ``10 + n + 1`` frames of each
  window are used: 10 context frames (0..9), ``n`` transition frames, the target keyframe
  ``10 + n``.  Metrics are computed on the ``n`` transition frames only.
* **Metrics.**
  - L2Q: mean over windows and transition frames of the L2 norm of the difference of all 22 joints'
    global quaternions (88 numbers per frame).
  - L2P: the same on global joint positions z-normalised with the training statistics
    (66 numbers per frame).
  - NPSS (Gopalakrishnan et al. 2019, normalised power spectrum similarity) on the global
    quaternions flattened to 88 dimensions, as the ``fast_npss`` of the LaFAN1 code: real part of
    the FFT over time, squared, normalised per dimension by its total power, cumulative sum over
    frequency, L1 distance (earth mover's distance) per dimension, averaged with the ground
    truth's total power per dimension as weights.
  Global quaternions are made **sign-continuous** in time separately for the ground truth and for
  each prediction, starting from the last context frame (frame 9, identical in both and put in
  the hemisphere ``w >= 0``): each following frame takes the sign giving a non-negative dot
  product with the previous frame.  So ``q`` and ``-q`` (the same rotation) never count as an
  error, and both sequences start from the same sign.  The LaFAN1 code gets the same effect by
  removing local quaternion discontinuities when it reads the BVH files.
* **Methods.**  ``zero_velocity`` (frame 9 held, root included); ``interpolation`` (root LERP and
  local quaternion SLERP between frame 9 and the target keyframe); ours through
  :func:`..tasks.inbetween.fill_motion` with frames 0..9 and the target keyed (every joint and the
  root): ``gfpose`` (the deterministic answer), ``gfpose_best_of_H`` (per window the stochastic
  hypothesis with the lowest L2P; its L2Q, L2P, and the NPSS of the chosen set) and
  ``gfpose_mean_of_H`` (each metric computed per hypothesis over all windows, then averaged over
  the ``H`` hypotheses).
* **Latency.**  Median wall time of one 30-frame gap (one window, batch 1) after a warm-up run:
  deterministic, and with ``H`` hypotheses.

Prints the three tables as the LaFAN1 ``benchmarks.py`` does and writes JSON::

    {"lengths": [5, 15, 30, 45], "windows": N,
     "methods": {name: {"L2Q": [...], "L2P": [...], "NPSS": [...]}}, "latency_ms": {...}, ...}
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..skeleton import NUM_JOINTS, PARENTS, REST_OFFSETS
from .common import DataError, data_hash, git_commit, portable_path, resolve_cache

LENGTHS: tuple[int, ...] = (5, 15, 30, 45)
N_PAST = 10                 # context frames (0..9); frame 9 is the last one
WINDOW, OFFSET = 65, 40     # evaluation windows
STATS_WINDOW, STATS_OFFSET = 50, 20  # training windows for the normalisation statistics
STATS_FILE = "lafan_stats.npz"
BASELINES: tuple[str, ...] = ("zero_velocity", "interpolation")

#: Published LaFAN1 numbers (Harvey et al. 2020, table 2 and the dataset README; Qin et al. 2022,
#: table 1), transition lengths 5 / 15 / 30 / 45 (``None``: not published for that length).
PUBLISHED_LAFAN1: dict[str, dict[str, list]] = {
    "zero_velocity": {"L2Q": [0.56, 1.10, 1.51, 1.81], "L2P": [1.52, 3.69, 6.60, 9.07],
                      "NPSS": [0.0053, 0.0522, 0.2318, 0.4207]},
    "interpolation": {"L2Q": [0.22, 0.62, 0.98, 1.25], "L2P": [0.37, 1.25, 2.32, 3.45],
                      "NPSS": [0.0023, 0.0391, 0.2013, 0.4493]},
    "harvey2020_erd_qv": {"L2P": [0.23, 0.65, 1.28, None]},
    "qin2022_two_stage": {"L2P": [0.10, 0.39, 0.89, None]},
}


class BenchError(RuntimeError):
    """The benchmark cannot run (bad arguments, no windows, missing weights); the message says
    what to do."""


# --------------------------------------------------------------------------------------------
# quaternions and forward kinematics (NumPy, float64; quaternions w, x, y, z)
# --------------------------------------------------------------------------------------------

def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(..., 4)`` quaternions."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate ``(..., 3)`` vectors by ``(..., 4)`` unit quaternions."""
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + q[..., :1] * t + np.cross(u, t)


def _normalise(q: np.ndarray) -> np.ndarray:
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def global_quats_positions(rotations: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of the canonical body with quaternions.

    Args:
        rotations: ``(..., 22, 4)`` local quaternions (w, x, y, z) relative to the rest T-pose;
            normalised here.
        root: ``(..., 3)`` pelvis position, metres, Y up.
    Returns:
        ``(global quaternions (..., 22, 4), global joint positions (..., 22, 3))``, float64,
        with the rest offsets :data:`..skeleton.REST_OFFSETS`.
    """
    rot = _normalise(np.asarray(rotations, dtype=np.float64))
    root = np.asarray(root, dtype=np.float64)
    gq, gp = [rot[..., 0, :]], [root]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        gp.append(gp[p] + _qrot(gq[p], np.broadcast_to(REST_OFFSETS[j], gp[p].shape)))
        gq.append(_qmul(gq[p], rot[..., j, :]))
    return np.stack(gq, axis=-2), np.stack(gp, axis=-2)


def sign_continuous(quats: np.ndarray, axis: int = -3) -> np.ndarray:
    """Quaternions made sign-continuous along the time axis.

    The first frame is put in the hemisphere ``w >= 0``; every later frame takes the sign that
    gives a non-negative dot product with the frame before.  ``q`` and ``-q`` are the same
    rotation, so this changes no rotation, only the representative.

    Args:
        quats: ``(..., T, J, 4)`` (time on ``axis``).
    Returns:
        a new array of the same shape.
    """
    q = np.moveaxis(np.array(quats, dtype=np.float64, copy=True), axis, 0)
    q[0] = np.where(q[0][..., :1] < 0, -q[0], q[0])
    for t in range(1, q.shape[0]):
        dot = np.sum(q[t - 1] * q[t], axis=-1, keepdims=True)
        q[t] = np.where(dot < 0, -q[t], q[t])
    return np.moveaxis(q, 0, axis)


def quat_slerp_np(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc.

    Args:
        a, b: ``(..., 4)`` quaternions (normalised here).
        t: weights broadcasting against ``a[..., :1]`` (0 gives ``a``, 1 gives ``b`` up to sign).
    Returns:
        ``(..., 4)`` unit quaternions.
    """
    a, b = _normalise(np.asarray(a, np.float64)), _normalise(np.asarray(b, np.float64))
    t = np.asarray(t, dtype=np.float64)
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    near = sin < 1e-6
    safe = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    return _normalise(wa * a + wb * b)


# --------------------------------------------------------------------------------------------
# windows and statistics
# --------------------------------------------------------------------------------------------

def window_starts(num_frames: int, window: int = WINDOW, offset: int = OFFSET) -> list[int]:
    """First frames of the sliding windows of a clip: ``0, offset, 2 offset, ...`` while
    ``start + window < num_frames`` (the LaFAN1 rule: a clip of exactly ``window`` frames gives none)."""
    starts, i = [], 0
    while i + window < num_frames:
        starts.append(i)
        i += offset
    return starts


def centre_and_face(rotations: np.ndarray, root: np.ndarray, face_frame: int = N_PAST - 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Centre windows on their mean pelvis XZ and turn them about Y so the pelvis faces +Z on
    ``face_frame``.

    The facing direction is the pelvis' local +Z axis (the body's forward) on ``face_frame``,
    projected on the ground plane (XZ).  The whole window turns rigidly about the vertical axis
    through the origin after centring, so global positions change only by that rigid motion and
    the mean pelvis XZ stays at the origin.  A window whose forward axis is vertical on that frame
    (no ground projection) is centred but not turned.

    Args:
        rotations: ``(N, W, 22, 4)`` local quaternions (w, x, y, z).
        root: ``(N, W, 3)`` pelvis positions, metres, Y up.
        face_frame: frame whose facing is aligned (9: the last of 10 context frames).
    Returns:
        ``(rotations, root)`` new float64 arrays of the same shapes (only the pelvis rotation and
        the root change).
    """
    rot = np.array(rotations, dtype=np.float64, copy=True)
    pos = np.array(root, dtype=np.float64, copy=True)
    pos[..., 0] -= pos[..., 0].mean(axis=-1, keepdims=True)
    pos[..., 2] -= pos[..., 2].mean(axis=-1, keepdims=True)
    pelvis = _normalise(rot[:, face_frame, 0])                      # (N, 4)
    fwd = _qrot(pelvis, np.broadcast_to([0.0, 0.0, 1.0], pelvis[..., 1:].shape))
    yaw = np.where(np.hypot(fwd[:, 0], fwd[:, 2]) > 1e-9, np.arctan2(fwd[:, 0], fwd[:, 2]), 0.0)
    turn = np.zeros((len(rot), 4))                                   # rotation about Y by -yaw
    turn[:, 0], turn[:, 2] = np.cos(-yaw / 2), np.sin(-yaw / 2)
    rot[:, :, 0] = _qmul(turn[:, None], rot[:, :, 0])
    pos = _qrot(np.broadcast_to(turn[:, None], (*pos.shape[:-1], 4)), pos)
    return rot, pos


def extract_windows(clips: Iterable, window: int = WINDOW, offset: int = OFFSET,
                    face_frame: int = N_PAST - 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sliding windows of clips, centred and turned (:func:`centre_and_face`).

    Args:
        clips: objects with ``rotations (T, 22, 4)``, ``root (T, 3)`` and ``source``
            (:class:`..data.mocap.CanonicalMotion`).
    Returns:
        ``(rotations (N, window, 22, 4), root (N, window, 3), clip name per window)``, float64.
    """
    rots, roots, names = [], [], []
    for clip in clips:
        for s in window_starts(len(clip.rotations), window, offset):
            rots.append(clip.rotations[s:s + window])
            roots.append(clip.root[s:s + window])
            names.append(getattr(clip, "source", ""))
    if not rots:
        return np.zeros((0, window, NUM_JOINTS, 4)), np.zeros((0, window, 3)), []
    rot, root = centre_and_face(np.stack(rots), np.stack(roots), face_frame)
    return rot, root, names


@dataclass(frozen=True)
class PositionStats:
    """Normalisation statistics of global joint positions.

    Attributes:
        mean, std: ``(66,)`` per joint coordinate (joint-major: x, y, z of joint 0, then joint 1...),
            metres.
        windows: training windows they come from.
    """
    mean: np.ndarray
    std: np.ndarray
    windows: int


def compute_stats(clips: Iterable, window: int = STATS_WINDOW, offset: int = STATS_OFFSET) -> PositionStats:
    """Mean and standard deviation (population) of global joint positions per joint coordinate
    over the centred, turned windows of ``clips`` (LaFAN1: training windows of 50 frames every 20).

    Raises:
        BenchError: no clip is longer than ``window`` frames.
    """
    total = np.zeros(NUM_JOINTS * 3)
    total_sq = np.zeros(NUM_JOINTS * 3)
    count, windows = 0, 0
    for clip in clips:
        rot, root, _ = extract_windows([clip], window, offset)
        if len(rot) == 0:
            continue
        _, pos = global_quats_positions(rot, root)
        flat = pos.reshape(-1, NUM_JOINTS * 3)
        total += flat.sum(0)
        total_sq += np.square(flat).sum(0)
        count += len(flat)
        windows += len(rot)
    if count == 0:
        raise BenchError(f"no training clip is longer than {window} frames: "
                         "the normalisation statistics need training windows")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a coordinate that never moves: leave it unscaled
    return PositionStats(mean=mean, std=std, windows=windows)


def training_stats(cache: Path, log=print) -> PositionStats:
    """:func:`compute_stats` of the cache's train split, read from ``<cache>/lafan_stats.npz``
    when it was made from the same data hash and window settings; otherwise computed and saved
    there (if the folder is writable)."""
    from ..data.dataset import load_clips

    cache = Path(cache)
    key = f"{data_hash(cache)}|{STATS_WINDOW}|{STATS_OFFSET}|facing+Z@{N_PAST - 1}"
    path = cache / STATS_FILE
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return PositionStats(mean=z["mean"], std=z["std"], windows=int(z["windows"]))
        except (OSError, KeyError, ValueError):
            pass  # unreadable or old: recompute
    t0 = time.time()
    stats = compute_stats(load_clips(cache, "train"))
    log(f"normalisation statistics from {stats.windows} training windows ({time.time() - t0:.1f} s)")
    try:
        np.savez(path, key=np.array(key), mean=stats.mean, std=stats.std, windows=stats.windows)
    except OSError as exc:
        log(f"  (not cached: {exc})")
    return stats


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

def npss_terms(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence parts of NPSS, so that sets of sequences can be combined exactly.

    NPSS of a set = ``sum(numerator) / sum(denominator)`` over its sequences, which equals the
    power-weighted average of :func:`npss` over the whole set.

    Args:
        gt, pred: ``(..., B, T, D)`` sequences (time on axis -2).
    Returns:
        ``(numerator (..., B), denominator (..., B))``: the sum over dimensions of EMD times the
        ground truth's total power, and the sum of that total power.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    gt_pow = np.square(np.real(np.fft.fft(gt, axis=-2)))
    pred_pow = np.square(np.real(np.fft.fft(pred, axis=-2)))
    gt_tot = gt_pow.sum(-2, keepdims=True)
    pred_tot = pred_pow.sum(-2, keepdims=True)
    gt_cdf = np.cumsum(np.divide(gt_pow, gt_tot, out=np.zeros_like(gt_pow), where=gt_tot > 0), axis=-2)
    pred_cdf = np.cumsum(np.divide(pred_pow, pred_tot, out=np.zeros_like(pred_pow), where=pred_tot > 0), axis=-2)
    emd = np.abs(pred_cdf - gt_cdf).sum(-2)                       # (..., B, D)
    weight = np.broadcast_to(gt_tot[..., 0, :], emd.shape)
    return (emd * weight).sum(-1), weight.sum(-1)


def npss(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised power spectrum similarity (Gopalakrishnan et al. 2019) as the LaFAN1
    ``fast_npss``: real FFT coefficients over time squared, normalised per dimension, cumulative
    sum, L1 earth mover's distance per dimension, averaged with the ground truth's total power
    per dimension as weights.  0 for identical sequences.

    Args:
        gt, pred: ``(B, T, D)``.
    Returns:
        the power-weighted mean EMD (0 if the ground truth has no power at all).
    """
    num, den = npss_terms(gt, pred)
    return float(num.sum() / den.sum()) if den.sum() > 0 else 0.0


def transition_errors(gt_rot: np.ndarray, gt_root: np.ndarray, pred_rot: np.ndarray,
                      pred_root: np.ndarray, stats: PositionStats, n_past: int = N_PAST) -> dict:
    """Per-window errors of predicted transitions.

    Args:
        gt_rot: ``(B, L, 22, 4)`` ground-truth local quaternions of the first ``L = n_past + n + 1``
            frames of the windows (context, transition, target keyframe).
        gt_root: ``(B, L, 3)`` pelvis positions, metres.
        pred_rot: ``(..., B, L, 22, 4)`` predictions over the same frames (leading dims, e.g.
            hypotheses, allowed); only frames ``n_past .. n_past + n - 1`` are read.
        pred_root: ``(..., B, L, 3)``.
        stats: position normalisation statistics (:func:`training_stats`).
        n_past: context frames.
    Returns:
        dict of ``(..., B)`` arrays: ``"L2Q"`` and ``"L2P"`` (mean over the ``n`` transition
        frames of the per-frame L2 norm), ``"npss_num"`` and ``"npss_den"`` (:func:`npss_terms`
        on the flattened global quaternions).  Global quaternions of the ground truth and of the
        prediction are each made sign-continuous from frame ``n_past - 1`` (the ground truth's,
        used for both) onwards before comparing.
    Raises:
        BenchError: shapes do not match or leave no transition frame.
    """
    gt_rot, gt_root = np.asarray(gt_rot), np.asarray(gt_root)
    pred_rot, pred_root = np.asarray(pred_rot), np.asarray(pred_root)
    b, length = gt_rot.shape[:2]
    n = length - n_past - 1
    if n < 1 or gt_rot.shape[2:] != (NUM_JOINTS, 4) or gt_root.shape != (b, length, 3):
        raise BenchError(f"bad ground truth shapes {gt_rot.shape} / {gt_root.shape} for {n_past} context frames")
    if pred_rot.shape[-4:] != gt_rot.shape or pred_root.shape[-3:] != gt_root.shape:
        raise BenchError(f"prediction shapes {pred_rot.shape} / {pred_root.shape} do not match "
                         f"the ground truth {gt_rot.shape} / {gt_root.shape}")
    lead = pred_rot.shape[:-4]
    span = slice(n_past - 1, n_past + n)                           # anchor frame + transition
    gt_q, gt_p = global_quats_positions(gt_rot[:, span], gt_root[:, span])
    pr_q, pr_p = global_quats_positions(pred_rot[..., n_past:n_past + n, :, :],
                                        pred_root[..., n_past:n_past + n, :])
    pr_q = np.concatenate([np.broadcast_to(gt_q[:, :1], (*lead, b, 1, NUM_JOINTS, 4)), pr_q], axis=-3)
    gt_q = sign_continuous(gt_q, axis=-3)[:, 1:]
    pr_q = sign_continuous(pr_q, axis=-3)[..., 1:, :, :]
    gt_p = gt_p[:, 1:]
    l2q = np.sqrt(np.square(pr_q - gt_q).sum((-1, -2))).mean(-1)
    gt_z = (gt_p.reshape(b, n, -1) - stats.mean) / stats.std
    pr_z = (pr_p.reshape(*lead, b, n, -1) - stats.mean) / stats.std
    l2p = np.sqrt(np.square(pr_z - gt_z).sum(-1)).mean(-1)
    num, den = npss_terms(np.broadcast_to(gt_q.reshape(b, n, -1), (*lead, b, n, NUM_JOINTS * 4)),
                          pr_q.reshape(*lead, b, n, -1))
    return {"L2Q": l2q, "L2P": l2p, "npss_num": num, "npss_den": den}


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------

def zero_velocity(rotations: np.ndarray, root: np.ndarray, n_past: int = N_PAST
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Zero-velocity baseline: the last context frame held over the transition (root too).

    Args:
        rotations: ``(B, L, 22, 4)`` windows (context, transition, target); root ``(B, L, 3)``.
    Returns:
        ``(rotations, root)`` of the same shapes, transition frames replaced.
    """
    rot, pos = np.array(rotations, copy=True), np.array(root, copy=True)
    rot[:, n_past:-1] = rot[:, n_past - 1:n_past]
    pos[:, n_past:-1] = pos[:, n_past - 1:n_past]
    return rot, pos


def interpolation(rotations: np.ndarray, root: np.ndarray, n_past: int = N_PAST
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation baseline: root LERP and local quaternion SLERP (shorter arc) between the
    last context frame and the target keyframe (the last frame), weights ``k / (n + 1)``.

    Args / returns: as :func:`zero_velocity`.
    """
    rot, pos = np.array(rotations, dtype=np.float64, copy=True), np.array(root, dtype=np.float64, copy=True)
    n = rot.shape[1] - n_past - 1
    w = (np.arange(1, n + 1) / (n + 1))[None, :, None]
    a, b = pos[:, n_past - 1:n_past], pos[:, -1:]
    pos[:, n_past:-1] = a + w * (b - a)
    rot[:, n_past:-1] = quat_slerp_np(rot[:, n_past - 1:n_past], rot[:, -1:], w[..., None])
    return rot, pos


_BASELINE_FNS: dict[str, Callable] = {"zero_velocity": zero_velocity, "interpolation": interpolation}


# --------------------------------------------------------------------------------------------
# our model
# --------------------------------------------------------------------------------------------

def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def gap_request(rotations: np.ndarray, root: np.ndarray, n_past: int = N_PAST):
    """Inputs of ``fill_motion`` for windows whose transition is unknown.

    Frames ``0 .. n_past - 1`` and the last one are keyed (every joint and the root); transition
    frames carry the last context frame held, so no ground truth reaches the model.

    Returns:
        ``(rotations (B, L, 22, 4) float32, root (B, L, 3) float32, known (B, L, 22) bool,
        known_root (B, L) bool)``.
    """
    rot, pos = zero_velocity(rotations, root, n_past)
    b, length = rot.shape[:2]
    known_root = np.zeros((b, length), dtype=bool)
    known_root[:, :n_past] = True
    known_root[:, -1] = True
    known = np.repeat(known_root[..., None], NUM_JOINTS, axis=-1)
    return rot.astype(np.float32), pos.astype(np.float32), known, known_root


def fill_windows(fill: Callable, model, rotations: np.ndarray, root: np.ndarray, hypotheses: int,
                 seed: int, n_past: int = N_PAST) -> tuple[np.ndarray, np.ndarray]:
    """Fill the transitions of a batch of windows with our model.

    Args:
        fill: :func:`..tasks.inbetween.fill_motion` (or a stand-in with its contract).
        rotations, root: ``(B, L, 22, 4)``, ``(B, L, 3)`` ground-truth windows (the transition
            is hidden from the model by :func:`gap_request`).
    Returns:
        ``(rotations (1 + H, B, L, 22, 4), root (1 + H, B, L, 3))``; index 0 is deterministic.
    Raises:
        BenchError: the output does not have the contract's shape.
    """
    rot, pos, known, known_root = gap_request(rotations, root, n_past)
    out = fill(model, rot, pos, known, known_root, hypotheses=hypotheses, seed=seed)
    pr, pp = _numpy(out["rotations"]), _numpy(out["root"])
    want = (1 + hypotheses, *rot.shape)
    if pr.shape != want or pp.shape != (1 + hypotheses, *pos.shape):
        raise BenchError(f"fill_motion returned {pr.shape} / {pp.shape}, expected {want} / "
                         f"{(1 + hypotheses, *pos.shape)}")
    return pr, pp


def load_model(weights_dir: Path | None, device: str):
    """The GFPose in-betweening model (:func:`..tasks.inbetween.load_gfpose`) and its fill
    function; :class:`BenchError` if the module or the weights are missing."""
    try:
        from ..tasks.inbetween import fill_motion, load_gfpose
    except ImportError as exc:
        raise BenchError(f"the in-betweening model code is not available: {exc}") from exc
    from ..weights import WeightsError
    try:
        model = load_gfpose(weights_dir, device)
    except WeightsError as exc:
        raise BenchError(f"{exc} (pass --weights-dir with trained GFPose weights)") from exc
    return model, fill_motion


def _model_card(weights_dir: Path | None) -> dict | None:
    from ..weights import WeightsError, load_card
    try:
        card = load_card("gfpose", weights_dir)
    except WeightsError:
        return None
    return {k: card.get(k) for k in ("data_hash", "steps", "command", "seed") if k in card}


def measure_latency(fill: Callable, model, rotations: np.ndarray, root: np.ndarray, hypotheses: int,
                    runs: int, device: str, gap: int = 30) -> dict:
    """Median wall time (ms) of filling one ``gap``-frame transition (one window, no batch dim,
    10 context frames and the target keyed), deterministic and with ``hypotheses`` hypotheses,
    each after one warm-up run."""
    import torch

    length = N_PAST + gap + 1
    rot, pos, known, known_root = gap_request(rotations[None, :length], root[None, :length])
    rot, pos, known, known_root = rot[0], pos[0], known[0], known_root[0]
    out = {}
    cases = [(f"fill_{gap}_ms", 0)]
    if hypotheses > 0:
        cases.append((f"fill_{gap}_{hypotheses}_hypotheses_ms", hypotheses))
    for key, h in cases:
        times = []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            fill(model, rot, pos, known, known_root, hypotheses=h, seed=i)
            if device == "cuda":
                torch.cuda.synchronize()
            if i > 0:
                times.append((time.perf_counter() - t0) * 1000.0)
        out[key] = round(float(np.median(times)), 2)
    out.update({"runs": runs, "torch_threads": torch.get_num_threads(), "device": device})
    return out


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------

class _Scores:
    """Per-length accumulation of per-window errors of one method."""

    def __init__(self):
        self.parts: dict[int, list[dict]] = {}

    def add(self, n: int, errs: dict) -> None:
        self.parts.setdefault(n, []).append(errs)

    def row(self, lengths: Sequence[int]) -> dict[str, list[float]]:
        row = {"L2Q": [], "L2P": [], "NPSS": []}
        for n in lengths:
            cat = {k: np.concatenate([p[k] for p in self.parts[n]], axis=-1) for k in self.parts[n][0]}
            l2q, l2p = cat["L2Q"].mean(-1), cat["L2P"].mean(-1)
            den = cat["npss_den"].sum(-1)
            nps = np.where(den > 0, cat["npss_num"].sum(-1) / np.where(den > 0, den, 1.0), 0.0)
            # leading dims (hypotheses) are averaged after the per-set metrics
            row["L2Q"].append(round(float(np.mean(l2q)), 4))
            row["L2P"].append(round(float(np.mean(l2p)), 4))
            row["NPSS"].append(round(float(np.mean(nps)), 5))
        return row


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; :class:`BenchError` for an
    unknown or unusable device."""
    from ..tasks.jobs import JobError
    from ..tasks.jobs import resolve_device as _resolve
    try:
        return _resolve(device or "auto")
    except JobError as exc:
        raise BenchError(str(exc)) from exc


def select_windows(count: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` windows evenly spread over ``count`` (all when ``None``)."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def run_bench(cache: Path, split: str = "test", *, hypotheses: int = 8, seed: int = 0,
              model=None, fill: Callable | None = None, weights_dir: Path | None = None,
              device: str = "cpu", baselines_only: bool = False, max_windows: int | None = None,
              latency_runs: int = 10, batch: int = 256, lengths: Sequence[int] = LENGTHS,
              log=print) -> dict:
    """Run the benchmark (see the module docstring); returns the JSON-ready result.

    Args:
        cache: canonical cache folder (``poseforge data build``).
        split: ``"test"`` (Bandai-2 takes divisible by 5) or ``"all"``: the evaluated clips.
            Statistics always come from the train split.
        hypotheses: stochastic hypotheses per window for the best-of / mean-of rows (0: none).
        seed: seeds the stochastic hypotheses (batch ``k`` uses ``seed + k``).
        model, fill: our model and its fill function (default: :func:`load_model`, whose model
            card's data hash and steps go to ``"weights"``).
        weights_dir, device: where to load the model from and run it.
        baselines_only: only zero-velocity and interpolation (no model, no latency).
        max_windows: evaluate at most this many windows, evenly spread (``--quick``).
        latency_runs: timed runs per latency figure (0: skip the latency).
        batch: windows per ``fill_motion`` call.
        lengths: transition lengths.
    Raises:
        BenchError, DataError: bad arguments, no windows, missing weights or data.
    """
    from ..data.dataset import DatasetError, load_clips

    if split not in ("test", "all"):
        raise BenchError(f"--split must be 'test' or 'all', got {split!r}")
    if hypotheses < 0:
        raise BenchError(f"--hypotheses must be 0 or more, got {hypotheses}")
    if max(lengths) + N_PAST + 1 > WINDOW:
        raise BenchError(f"transition lengths up to {WINDOW - N_PAST - 1} fit a {WINDOW}-frame window")
    t_start = time.time()
    cache = Path(cache)
    ours = not baselines_only
    card = None
    if ours and model is None:  # first, so missing weights fail before the data is read
        model, fill = load_model(weights_dir, device)
        card = _model_card(weights_dir)
    elif ours and fill is None:
        from ..tasks.inbetween import fill_motion as fill
    try:
        clips = load_clips(cache, split)
        stats = training_stats(cache, log=log)
    except DatasetError as exc:
        raise DataError(str(exc)) from exc
    win_rot, win_root, names = extract_windows(clips)
    total = len(win_rot)
    if total == 0:
        raise BenchError(f"the {split!r} split of {cache} has no clip longer than {WINDOW} frames")
    keep = select_windows(total, max_windows)
    win_rot, win_root = win_rot[keep], win_root[keep]
    n_win = len(win_rot)
    log(f"{n_win} windows of {WINDOW} frames from {len({names[i] for i in keep})} {split} clips "
        f"({total} in all)")

    scores: dict[str, _Scores] = {name: _Scores() for name in BASELINES}
    if ours:
        scores["gfpose"] = _Scores()
        if hypotheses > 0:
            scores[f"gfpose_best_of_{hypotheses}"] = _Scores()
            scores[f"gfpose_mean_of_{hypotheses}"] = _Scores()

    seconds: dict[str, float] = {}
    for n in lengths:
        length = N_PAST + n + 1
        for b0 in range(0, n_win, batch):
            gt_rot, gt_root = win_rot[b0:b0 + batch, :length], win_root[b0:b0 + batch, :length]
            for name in BASELINES:
                t0 = time.time()
                pr, pp = _BASELINE_FNS[name](gt_rot, gt_root)
                scores[name].add(n, transition_errors(gt_rot, gt_root, pr, pp, stats))
                seconds[name] = seconds.get(name, 0.0) + time.time() - t0
            if ours:
                t0 = time.time()
                pr, pp = fill_windows(fill, model, gt_rot, gt_root, hypotheses, seed + b0)
                errs = transition_errors(gt_rot, gt_root, pr, pp, stats)
                scores["gfpose"].add(n, {k: v[0] for k, v in errs.items()})
                if hypotheses > 0:
                    sto = {k: v[1:] for k, v in errs.items()}
                    best = np.argmin(sto["L2P"], axis=0)
                    cols = np.arange(best.shape[0])
                    scores[f"gfpose_best_of_{hypotheses}"].add(n, {k: v[best, cols] for k, v in sto.items()})
                    scores[f"gfpose_mean_of_{hypotheses}"].add(n, sto)
                seconds["gfpose"] = seconds.get("gfpose", 0.0) + time.time() - t0
        log(f"  transition {n:2d}: done ({time.time() - t_start:.1f} s)")

    latency: dict = {}
    if ours and latency_runs > 0:
        latency = measure_latency(fill, model, win_rot[0], win_root[0], hypotheses, latency_runs, device)
        log(f"latency: {latency}")

    methods = {name: s.row(lengths) for name, s in scores.items()}
    return {
        "lengths": list(lengths),
        "windows": int(n_win),
        "methods": methods,
        "latency_ms": latency,
        "split": split,
        "windows_available": int(total),
        "hypotheses": int(hypotheses) if ours else 0,
        "seed": int(seed),
        "protocol": {"window": WINDOW, "offset": OFFSET, "context_frames": N_PAST,
                     "facing": f"pelvis +Z on frame {N_PAST - 1}", "stats_window": STATS_WINDOW,
                     "stats_offset": STATS_OFFSET, "stats_split": "train",
                     "stats_windows": int(stats.windows),
                     "quaternions": "global, sign-continuous from the last context frame"},
        "ratios_to_interpolation": {
            name: {m: [round(a / b, 3) if b else None for a, b in zip(row[m], methods["interpolation"][m])]
                   for m in row} for name, row in methods.items()},
        "published_lafan1": PUBLISHED_LAFAN1,
        "weights": card,
        "method_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "data": portable_path(cache),
        "data_hash": data_hash(cache),
        "commit": git_commit(),
        "seconds": round(time.time() - t_start, 1),
    }


# --------------------------------------------------------------------------------------------
# tables and the command
# --------------------------------------------------------------------------------------------

_METRIC_TITLES = {"L2Q": "Global quaternion loss (L2Q)", "L2P": "Global position loss (L2P)",
                  "NPSS": "NPSS on global quaternions"}


def _cell(v, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if metric == "NPSS" else f"{v:.2f}" if metric == "L2Q" else f"{v:.3f}"


def text_table(result: dict) -> str:
    """The three tables of the LaFAN1 ``benchmarks.py`` (rows = methods, columns = lengths)."""
    lengths = result["lengths"]
    lines = []
    for metric, title in _METRIC_TITLES.items():
        lines.append(f"=== {title} ===")
        lines.append(f"{'Lengths':<26}|" + "|".join(f"{n:>8d} " for n in lengths))
        for name, row in result["methods"].items():
            lines.append(f"{name:<26}|" + "|".join(f"{_cell(v, metric):>8} " for v in row[metric]))
        lines.append("")
    return "\n".join(lines)


def markdown_table(result: dict, published: bool = True) -> str:
    """One markdown table: rows = methods (and the published LaFAN1 rows), columns = L2Q, L2P,
    NPSS at each transition length."""
    lengths = result["lengths"]
    head = "| method | " + " | ".join(f"{m} {n}" for m in _METRIC_TITLES for n in lengths) + " |"
    lines = [head, "|---" * (1 + 3 * len(lengths)) + "|"]

    def add(label: str, row: dict):
        cells = []
        for m in _METRIC_TITLES:
            vals = list(row.get(m, [None] * len(lengths)))
            vals += [None] * (len(lengths) - len(vals))
            cells += [_cell(v, m) for v in vals]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for name, row in result["methods"].items():
        add(name, row)
    if published:
        for name, row in result.get("published_lafan1", {}).items():
            add(f"LaFAN1 {name} (published)", row)
    return "\n".join(lines)


def _check_data(data) -> Path:
    paths = data if isinstance(data, (list, tuple)) else [data]
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir() and not (p / "index.json").is_file() and next(p.rglob("*.bvh"), None) is not None:
            raise DataError(f"{p} is a folder of BVH clips: build a canonical cache from it first with "
                            f"`poseforge data build --bvh-dir {p.name} --out CACHE` and pass --data CACHE")
    return resolve_cache(data)


def cli_main(args) -> int:
    """Entry point of ``poseforge bench inbetween --data CACHE --split test|all --out FILE.json``.

    ``--quick`` evaluates 32 windows with 2 hypotheses and 2 latency runs (checks the pipeline,
    not the numbers).  Returns 0, or 2 with a message on stderr when the benchmark cannot run.
    """
    import torch

    from ..weights import WeightsError
    torch.set_num_threads(2)
    quick = bool(getattr(args, "quick", False))
    try:
        cache = _check_data(args.data)
        device = resolve_device(getattr(args, "device", "auto"))
        hypotheses = min(int(args.hypotheses), 2) if quick else int(args.hypotheses)
        result = run_bench(cache, args.split, hypotheses=hypotheses, seed=int(args.seed),
                           weights_dir=getattr(args, "weights_dir", None), device=device,
                           max_windows=32 if quick else None, latency_runs=2 if quick else 10)
    except (BenchError, DataError, WeightsError) as exc:
        print(f"poseforge bench inbetween: {exc}", file=sys.stderr)
        return 2
    result["quick"] = quick
    print(text_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
