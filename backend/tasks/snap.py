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
body. Poses are canonical (22 joints, local rotations relative to the T-pose rest, metres, Y up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..rotations import matrix_to_axis_angle
from ..skeleton import NUM_JOINTS
from .fit import Cancelled, FitError, fast_forward_kinematics, fit_poses

__all__ = ["SnapResult", "SnapError", "Cancelled", "snap_poses", "score_keys", "fix_keys"]

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


def snap_poses(local, root, pinned, *, prior, strength: float = 0.5, iters: int = 80,
               t_max: float = 0.30, t_min: float = 0.05, lr: float = 0.04, polish_iters: int = 5,
               progress: Callable[[float, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None,
               generator: torch.Generator | None = None) -> SnapResult:
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
                     progress, cancelled, generator)


def _snap(local, root, pinned, prior, strength, iters, t_max, t_min, lr, polish_iters,
          progress, cancelled, generator) -> SnapResult:
    pos0, glob0 = fast_forward_kinematics(local, root)
    w = pinned.float()
    before = score_keys(local, prior)
    with _Schedule(prior, t_max, t_min):
        res = fit_poses(local, root, target_pos=pos0, pos_weight=w * PIN_POS_WEIGHT,
                        target_rot=glob0, rot_weight=w * PIN_ROT_WEIGHT,
                        prior=prior, prior_weight=PRIOR_SCALE * strength,
                        keep_weight=KEEP_SCALE * (1.0 - strength) + 1e-4, iters=iters, lr=lr,
                        optimise_root=False, generator=generator, progress=progress, cancelled=cancelled,
                        polish_iters=polish_iters)
    pos1, _ = fast_forward_kinematics(res.local, res.root)
    after = score_keys(res.local, prior)
    return SnapResult(local=res.local, root=res.root, moved_mm=(pos1 - pos0).norm(dim=-1) * 1000.0,
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
