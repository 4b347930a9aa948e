"""Snap to plausible pose and Fix implausible keys (pure arrays, no job plumbing).

Snap (DPoser, arXiv 2312.05541, sec. 3.3, applied to pose editing): each pose is optimised with
:func:`poseforge.backend.tasks.fit.fit_poses` under

* the prior term (DPoser: noise to ``t``, one-step denoise, weighted difference) with the
  truncated timestep schedule, ``t`` annealed from ``t_max`` to ``t_min`` (0.30 -> 0.05, the
  paper's values for completion);
* data terms that keep every pinned bone where the animator put it in WORLD space: its
  forward-kinematics position and its global rotation, both with a high weight;
* a keep-close term pulling the unpinned joints toward their input rotations.

``strength`` in ``[0, 1]`` trades the prior against the keep-close term. The root (pelvis
orientation and translation) never moves: the animator places the character, Snap fixes the
body.

Before the optimisation, a *pole search* (:func:`swivel_search`) turns each arm and leg about
its root -> end axis (the swivel an IK pole controls; the hand or foot stays where it is) to the
angle the prior scores best, if that beats the current angle; the pose is then optimised from
both starts and keeps the better result.  A pose the prior scores worse after snapping is
returned unchanged.  A flipped pole (knee or elbow
bent the wrong way) is the commonest gross error of a hurried animator and sits behind a high
barrier for a local optimiser; the search costs a few batched prior evaluations. Poses are canonical (22 joints, local rotations relative to the T-pose rest, metres, Y up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle, rotation_between
from ..skeleton import JOINT_INDEX, NUM_JOINTS, PARENTS
from .fit import Cancelled, FitError, fast_forward_kinematics, fit_poses

__all__ = ["SnapResult", "SnapError", "Cancelled", "snap_poses", "score_keys", "fix_keys", "swivel_search"]

#: Limbs whose swivel the pole search tries: (root joint, middle joint, end joint).
LIMBS = tuple(tuple(JOINT_INDEX[n] for n in limb) for limb in (
    ("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"),
    ("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist")))
#: Swivel angles tried per limb, and the score improvement a new angle must bring.
SWIVEL_STEPS = 12
SWIVEL_MARGIN = 0.05

#: weight of pinned joint positions (per m^2) and global rotations (per squared Frobenius norm)
PIN_POS_WEIGHT = 1.0e5
PIN_ROT_WEIGHT = 1.0e3
#: prior weight at strength 1 and keep-close weight at strength 0 (axis-angle, per rad^2)
PRIOR_SCALE = 1.0
KEEP_SCALE = 0.2


class SnapError(FitError):
    """Bad input to snap / score / fix (shapes, NaN, empty range, strength out of [0, 1])."""


@dataclass
class SnapResult:
    """Result of :func:`snap_poses` (torch tensors, float32).

    Attributes:
        local: ``(T, 22, 3, 3)`` snapped local rotations.
        root: ``(T, 3)`` root translation (unchanged), metres.
        moved_mm: ``(T, 22)`` how far each joint moved in world space, millimetres.
        energy_before, energy_after: ``(T,)`` implausibility scores (``prior.score_poses``).
    """
    local: torch.Tensor
    root: torch.Tensor
    moved_mm: torch.Tensor
    energy_before: torch.Tensor
    energy_after: torch.Tensor


def _poses(local, root=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    local = torch.as_tensor(np.asarray(local) if not isinstance(local, torch.Tensor) else local,
                            dtype=torch.float32)
    if local.ndim != 4 or tuple(local.shape[1:]) != (NUM_JOINTS, 3, 3):
        raise SnapError(f"poses must be (T, {NUM_JOINTS}, 3, 3) local rotations, got {tuple(local.shape)}")
    if len(local) == 0:
        raise SnapError("no poses given (empty frame range)")
    if not torch.isfinite(local).all():
        bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(local))[:, 0]})
        raise SnapError(f"poses contain NaN or infinite rotations at frames {bad[:10]}")
    if root is None:
        return local, None
    root = torch.as_tensor(np.asarray(root) if not isinstance(root, torch.Tensor) else root,
                           dtype=torch.float32, device=local.device)
    if tuple(root.shape) != (len(local), 3):
        raise SnapError(f"root must be ({len(local)}, 3) metres, got {tuple(root.shape)}")
    if not torch.isfinite(root).all():
        raise SnapError("root translation contains NaN or infinite values")
    return local, root


def score_keys(local, prior, chunk: int = 1024) -> torch.Tensor:
    """Implausibility of each pose under the prior (higher = less plausible, deterministic).

    Args:
        local: ``(T, 22, 3, 3)`` local rotations (NumPy or torch); the root rotation is ignored.
        prior: a :class:`~poseforge.backend.models.prior.PosePrior`.
    Returns:
        ``(T,)`` float32 scores (DPoser: mean denoising error, about 1 on real mocap).
    """
    local, _ = _poses(local)
    aa = matrix_to_axis_angle(local[:, 1:])
    with torch.no_grad(), _Threads(len(local)):
        return torch.cat([prior.score_poses(c) for c in torch.split(aa, chunk)]).float()


class _Threads:
    """Use one intra-op thread for small batches: a single pose is a chain of tiny operations
    for which extra threads only add synchronisation (3x slower on a busy 2-core machine)."""

    def __init__(self, batch: int):
        self.use = batch <= 16
        self.saved = torch.get_num_threads()

    def __enter__(self):
        if self.use:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.use:
            torch.set_num_threads(self.saved)


class _Schedule:
    """Temporarily set a DPoser-like prior's truncated schedule (t_max, t_min)."""

    def __init__(self, prior, t_max: float, t_min: float):
        self.prior, self.values = prior, {"t_max": t_max, "t_min": t_min, "schedule": "truncated"}
        self.saved = {}

    def __enter__(self):
        for k, v in self.values.items():
            if hasattr(self.prior, k):
                self.saved[k] = getattr(self.prior, k)
                setattr(self.prior, k, v)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.prior, k, v)


def _quick_scores(local: torch.Tensor, prior) -> torch.Tensor:
    """:func:`score_keys` with fewer noise draws (2 times x 2 draws) where the prior allows it:
    enough to rank candidate poses, four times cheaper."""
    import inspect

    aa = matrix_to_axis_angle(local[:, 1:])
    params = inspect.signature(prior.score_poses).parameters
    if "times" in params and "draws" in params:
        return prior.score_poses(aa, times=(0.1, 0.2), draws=2).float()
    return prior.score_poses(aa).float()


@torch.no_grad()
def swivel_search(local: torch.Tensor, root: torch.Tensor, pinned: torch.Tensor, prior,
                  steps: int = SWIVEL_STEPS, margin: float = SWIVEL_MARGIN, offsets=None) -> torch.Tensor:
    """Turn each limb about its root -> end axis to the swivel angle the prior likes best.

    The end joint (ankle, wrist) keeps its world position and global rotation, so pinned hands
    and feet stay; a limb whose root or middle joint is pinned is left alone.  Each of ``steps``
    angles (the current one included) gives two candidates: the limb turned rigidly, and the
    same knee / elbow position reached by the shortest swing of each bone (so a knee bent
    backward comes out bent forward).  Limbs are searched one after another (legs, then arms);
    the best candidate replaces the current pose only if its score is lower by ``margin``.

    Args:
        local: ``(T, 22, 3, 3)``; root: ``(T, 3)`` metres; pinned: ``(T, 22)`` bool.
        prior: a pose prior with ``score_poses``.
        offsets: rest offsets of the skeleton (see :func:`fit.fast_forward_kinematics`).
    Returns:
        ``(T, 22, 3, 3)`` local rotations (a new tensor).
    """
    chunk = 256  # frames per batch: candidates x noise draws stay a few MB
    if len(local) > chunk:
        parts = []
        for i in range(0, len(local), chunk):
            off = offsets if offsets is None or offsets.ndim == 2 else offsets[i:i + chunk]
            parts.append(swivel_search(local[i:i + chunk], root[i:i + chunk], pinned[i:i + chunk], prior,
                                       steps, margin, off))
        return torch.cat(parts)
    out = local.clone()
    t = len(out)
    angles = torch.arange(steps, dtype=out.dtype, device=out.device) * (2 * np.pi / steps)
    rows = torch.arange(t, device=out.device)
    for a, m, e in LIMBS:
        free = ~(pinned[:, a] | pinned[:, m])
        if not bool(free.any()):
            continue
        pos, glob = fast_forward_kinematics(out, root, offsets)
        axis = pos[:, e] - pos[:, a]
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        turn = axis_angle_to_matrix(axis[:, None, :] * angles[None, :, None])       # (T, K, 3, 3)
        g_par = glob[:, None, PARENTS[a]].transpose(-1, -2)
        # (1) the whole limb turned rigidly about the axis (a twisted IK chain)
        rigid = out[:, None].expand(t, steps, NUM_JOINTS, 3, 3).clone()
        rigid[:, :, a] = g_par @ turn @ glob[:, None, a]
        rigid[:, :, e] = (turn @ glob[:, None, m]).transpose(-1, -2) @ glob[:, None, e]
        # (2) the same joint positions reached by the shortest swing of each bone (an IK solve
        # with that pole): the knee or elbow bends in its own plane again
        knee = pos[:, None, a] + (turn @ (pos[:, m] - pos[:, a])[:, None, :, None])[..., 0]
        d1, d2 = pos[:, m] - pos[:, a], pos[:, e] - pos[:, m]
        g_a = rotation_between(d1[:, None].expand_as(knee), knee - pos[:, None, a]) @ glob[:, None, a]
        g_m = rotation_between(d2[:, None].expand_as(knee), pos[:, None, e] - knee) @ glob[:, None, m]
        swung = out[:, None].expand(t, steps, NUM_JOINTS, 3, 3).clone()
        swung[:, :, a] = g_par @ g_a
        swung[:, :, m] = g_a.transpose(-1, -2) @ g_m
        swung[:, :, e] = g_m.transpose(-1, -2) @ glob[:, None, e]
        cand = torch.cat([rigid, swung], dim=1)                                       # (T, 2K, ...)
        scores = _quick_scores(cand.reshape(t * 2 * steps, NUM_JOINTS, 3, 3), prior).reshape(t, 2 * steps)
        best = scores.argmin(dim=1)
        better = free & (scores[rows, best] < scores[:, 0] - margin)
        pick = torch.where(better, best, torch.zeros_like(best))
        out = cand[rows, pick]
    return out


def snap_poses(local, root, pinned, *, prior, strength: float = 0.5, iters: int = 64,
               t_max: float = 0.30, t_min: float = 0.05, lr: float = 0.04, polish_iters: int = 10,
               progress: Callable[[float, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None,
               generator: torch.Generator | None = None, swivel: bool = True,
               offsets=None) -> SnapResult:
    """Pull poses onto the prior's manifold while pinned bones stay where they are in world space.

    Args:
        local: ``(T, 22, 3, 3)`` local rotations (NumPy or torch).
        root: ``(T, 3)`` root translation, metres, Y up (kept).
        pinned: ``(T, 22)`` or ``(22,)`` bool: bones whose world position and rotation must stay.
        prior: a :class:`~poseforge.backend.models.prior.PosePrior` (DPoser).
        strength: 0..1, how strongly the prior pulls against the keep-close term.
        iters: optimisation steps.
        t_max, t_min: truncated timestep schedule of DPoser (annealed t_max -> t_min).
        lr: Adam learning rate (radians).
        polish_iters: Gauss-Newton steps that put pinned bones back exactly (see ``fit_poses``).
        progress: ``progress(fraction, message)``; cancelled: polled between steps.
        generator: randomness of the prior's noise.
        swivel: run the pole search (:func:`swivel_search`) first (skipped at strength 0).
        offsets: ``(22, 3)`` or ``(T, 22, 3)`` joint offsets of the animator's rig in canonical
            metres (``retarget.pose_offsets`` / ``Reference.offsets``), so pinned bones stay put
            on THAT rig; default the canonical body.
    Returns:
        :class:`SnapResult`.
    Raises:
        SnapError: bad shapes, NaN, empty input, strength outside [0, 1].
        Cancelled: ``cancelled()`` returned true (nothing is returned, so nothing changes).
    """
    local, root = _poses(local, root)
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise SnapError(f"strength must be between 0 and 1, got {strength}")
    pinned = torch.as_tensor(np.asarray(pinned) if not isinstance(pinned, torch.Tensor) else pinned,
                             dtype=torch.bool, device=local.device)
    if pinned.shape == (NUM_JOINTS,):
        pinned = pinned.expand(len(local), NUM_JOINTS)
    if tuple(pinned.shape) != (len(local), NUM_JOINTS):
        raise SnapError(f"pinned must be ({len(local)}, {NUM_JOINTS}) or ({NUM_JOINTS},) bools, got {tuple(pinned.shape)}")
    with _Threads(len(local)):
        return _snap(local, root, pinned, prior, strength, iters, t_max, t_min, lr, polish_iters,
                     progress, cancelled, generator, swivel, offsets)


def _snap(local, root, pinned, prior, strength, iters, t_max, t_min, lr, polish_iters,
          progress, cancelled, generator, swivel=True, offsets=None) -> SnapResult:
    if offsets is not None:
        offsets = torch.as_tensor(np.asarray(offsets, dtype=np.float32), device=local.device)
        if tuple(offsets.shape) == (NUM_JOINTS, 3):
            offsets = offsets.expand(len(local), NUM_JOINTS, 3)
        if tuple(offsets.shape) != (len(local), NUM_JOINTS, 3) or not bool(torch.isfinite(offsets).all()):
            raise SnapError(f"offsets must be ({NUM_JOINTS}, 3) or ({len(local)}, {NUM_JOINTS}, 3) finite "
                            f"metres, got {tuple(offsets.shape)}")
    pos0, glob0 = fast_forward_kinematics(local, root, offsets)
    w = pinned.float()
    before = score_keys(local, prior)
    # the pole search proposes a second start for the poses it changes; both starts are
    # optimised in one batch and each pose keeps the result the prior scores better
    start, rows = local, torch.arange(len(local), device=local.device)
    if swivel and strength > 0:
        turned = swivel_search(local, root, pinned, prior, offsets=offsets)
        changed = torch.nonzero((turned - local).flatten(1).abs().amax(1) > 1e-6).flatten()
        if len(changed):
            start = torch.cat([local, turned[changed]])
            rows = torch.cat([rows, changed])
        if cancelled is not None and cancelled():
            raise Cancelled("snap cancelled after the pole search")
    with _Schedule(prior, t_max, t_min):
        res = fit_poses(start, root[rows], target_pos=pos0[rows], pos_weight=w[rows] * PIN_POS_WEIGHT,
                        target_rot=glob0[rows], rot_weight=w[rows] * PIN_ROT_WEIGHT,
                        prior=prior, prior_weight=PRIOR_SCALE * strength,
                        keep_weight=KEEP_SCALE * (1.0 - strength) + 1e-4, iters=iters, lr=lr,
                        optimise_root=False, generator=generator, progress=progress, cancelled=cancelled,
                        polish_iters=polish_iters, offsets=None if offsets is None else offsets[rows])
    scores = score_keys(res.local, prior)
    n = len(local)
    out_local, after = res.local[:n].clone(), scores[:n].clone()
    for k, i in enumerate(rows[n:].tolist()):
        if scores[n + k] < after[i]:
            out_local[i], after[i] = res.local[n + k], scores[n + k]
    # never hand back a pose the prior finds less plausible than the animator's own
    worse = after > before
    out_local[worse], after[worse] = local[worse].to(out_local.dtype), before[worse]
    out_root = res.root[:n]
    pos1, _ = fast_forward_kinematics(out_local, out_root, offsets)
    return SnapResult(local=out_local, root=out_root, moved_mm=(pos1 - pos0).norm(dim=-1) * 1000.0,
                      energy_before=before, energy_after=after)


def fix_keys(local, root, prior, threshold: float, pinned=None, **snap_kwargs):
    """Snap only the frames whose :func:`score_keys` is above ``threshold``.

    Args:
        local: ``(T, 22, 3, 3)``; root: ``(T, 3)``; prior: the pose prior.
        threshold: frames scoring strictly above it are fixed.
        pinned: ``(T, 22)`` / ``(22,)`` bools (default: nothing pinned).
        **snap_kwargs: passed to :func:`snap_poses` (strength, iters, generator, ...).
    Returns:
        ``(indices (K,) int64 tensor of the fixed frames, SnapResult of those K frames)``;
        ``K == 0`` gives ``(empty, None)``.
    """
    local, root = _poses(local, root)
    scores = score_keys(local, prior)
    idx = torch.nonzero(scores > float(threshold)).flatten()
    if len(idx) == 0:
        return idx, None
    if pinned is None:
        pinned = torch.zeros(NUM_JOINTS, dtype=torch.bool)
    pinned = torch.as_tensor(np.asarray(pinned) if not isinstance(pinned, torch.Tensor) else pinned, dtype=torch.bool)
    pin = pinned if pinned.ndim == 1 else pinned[idx]
    return idx, snap_poses(local[idx], root[idx], pin, prior=prior, **snap_kwargs)
