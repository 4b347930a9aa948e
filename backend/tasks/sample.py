"""Unconditional pose samples from the DPoser score model (the demo's "poses the models produce")."""
from __future__ import annotations

import torch

from ..diffusion import euler_maruyama_sample, probability_flow_sample
from ..rotations import axis_angle_to_matrix


@torch.no_grad()
def sample_poses(prior, n: int, *, steps: int = 100, stochastic: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` body poses from a DPoser prior by reverse diffusion.

    Song et al. 2021 (score SDE): Euler-Maruyama on the reverse sub-VP SDE (eq. 6) when
    ``stochastic``, else the probability-flow ODE (eq. 13), in the prior's normalised space.

    Args:
        prior: a :class:`~..models.dposer.DPoser`.
        n: number of poses; steps: solver steps.
    Returns:
        ``(n, 22, 3, 3)`` canonical local rotations; the root (pelvis) rotation is identity
        (facing +Z, Y up) since the prior models the 21 body joints only.
    """
    sampler = euler_maruyama_sample if stochastic else probability_flow_sample
    dev = prior.data_mean.device
    x = sampler(prior.score, prior.sde, (n, prior.config.dim), steps=steps, generator=generator,
                dtype=prior.data_mean.dtype, device=dev)
    body = axis_angle_to_matrix(prior.decode(x))
    root = torch.eye(3, dtype=body.dtype, device=dev).expand(n, 1, 3, 3)
    return torch.cat([root, body], dim=1)
