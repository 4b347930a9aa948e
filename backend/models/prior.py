"""The pose-prior interface shared by every prior (DPoser, GMM, VPoser-style VAE, ...).

A prior sees the 21 non-root joint rotations of the canonical body (SMPL order without the
pelvis: left_hip ... right_wrist) as axis-angle vectors in radians, local to the parent and
relative to the rest T-pose. The root orientation is never seen: a prior judges the body, not
where the character faces.

Two entry points:

* :meth:`PosePrior.energy` is the term an optimiser adds to its data terms (used by
  :func:`poseforge.backend.tasks.fit.fit_poses`). It may be stochastic (DPoser noises the pose)
  and may depend on how far the optimisation has gone (``progress``), as DPoser's truncated
  timestep schedule does.
* :meth:`PosePrior.score_poses` is a deterministic implausibility score, used by
  "Fix implausible keys" to rank keyed frames (higher = less plausible).
"""
from __future__ import annotations

import torch

NUM_BODY_JOINTS = 21


def check_body_pose(body_pose_aa: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``body_pose_aa`` is a ``(B, 21, 3)`` floating tensor."""
    if not isinstance(body_pose_aa, torch.Tensor):
        raise ValueError(f"body pose must be a torch.Tensor, got {type(body_pose_aa).__name__}")
    if body_pose_aa.ndim != 3 or tuple(body_pose_aa.shape[1:]) != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"body pose must have shape (B, {NUM_BODY_JOINTS}, 3) axis-angle, got {tuple(body_pose_aa.shape)}")
    if not body_pose_aa.is_floating_point():
        raise ValueError("body pose must be a floating-point tensor")


class PosePrior(torch.nn.Module):
    """Base class of pose priors over the 21 non-root joints (axis-angle, radians).

    Subclasses implement :meth:`energy` and may override :meth:`score_poses` (the default is
    the energy at ``progress=1`` with a fixed seed, without gradients).
    """

    def energy(self, body_pose_aa: torch.Tensor, progress: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Prior energy of each pose (lower = more plausible), differentiable w.r.t. the pose.

        Args:
            body_pose_aa: ``(B, 21, 3)`` axis-angle of the non-root joints, radians, local.
            progress: fraction of the optimisation done, in ``[0, 1]`` (schedules may use it).
            generator: source of any randomness (``None``: torch's global generator).
        Returns:
            ``(B,)`` energies.
        """
        raise NotImplementedError

    @torch.no_grad()
    def score_poses(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """Deterministic implausibility of each pose (higher = less plausible).

        Args:
            body_pose_aa: ``(B, 21, 3)`` axis-angle of the non-root joints, radians.
        Returns:
            ``(B,)`` scores; the same input always gives the same scores.
        """
        check_body_pose(body_pose_aa)
        g = torch.Generator(device=body_pose_aa.device).manual_seed(0)
        return self.energy(body_pose_aa, progress=1.0, generator=g).detach()
