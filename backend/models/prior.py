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


def rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` rotation vectors -> ``(..., 3, 3)`` by Rodrigues' formula
    ``R = cos(a) I + sin(a)/a [v]x + (1 - cos(a))/a^2 v v^T``, with Taylor series near ``a = 0``
    (same result as :func:`~poseforge.backend.rotations.axis_angle_to_matrix`, fewer operations,
    used inside the optimisation loop)."""
    a2 = (aa * aa).sum(-1, keepdim=True)[..., None]                  # (..., 1, 1)
    small = a2 < 1e-8
    a = torch.sqrt(torch.where(small, torch.ones_like(a2), a2))
    c = torch.where(small, 1 - a2 / 2, torch.cos(a))
    s = torch.where(small, 1 - a2 / 6, torch.sin(a) / a)
    k = torch.where(small, 0.5 - a2 / 24, (1 - torch.cos(a)) / (a * a))
    x, y, z = aa.unbind(-1)
    o = torch.zeros_like(x)
    cross = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return c * eye + s * cross + k * (aa[..., :, None] * aa[..., None, :])


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
