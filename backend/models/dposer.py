"""DPoser: a diffusion model as a pose prior.

Lu, Wang, Zhang, Xu, Zhang, Yang, "DPoser: Diffusion Model as Robust 3D Human Pose Prior",
arXiv 2312.05541.

* Model (sec. 3.1): a score network over the 21 non-root joint rotations of the body (SMPL
  body pose; here the canonical body, same joint order), normalised by the training-data mean
  and std, with the sub-VP SDE of :mod:`poseforge.backend.diffusion` (beta 0.1 to 20). The
  network is an MLP with residual blocks and a sinusoidal time embedding; it predicts the noise
  ``z`` and the score is ``-z_hat / sigma(t)``.
* Prior term for optimisation (sec. 3.2, "variational diffusion sampling" with one-step
  denoising): noise the current pose to time ``t``, denoise it in one step with Tweedie's
  formula, and pull the pose toward the (gradient-stopped) estimate:
  ``E(x) = w(t) * mean_d (x - sg(x0_hat))^2`` with ``w(t) = alpha(t) / sigma(t)`` (the
  signal-to-noise weighting of the authors' release).
* Truncated timestep schedule (sec. 3.3): ``t`` is annealed from ``t_max`` down to ``t_min`` as
  the optimisation progresses (0.30 -> 0.05 for completion in the paper); ``schedule="uniform"``
  draws ``t ~ U(t_min_uniform, t_max_uniform)`` each call instead (the paper's ablation).

Rotations are axis-angle in radians (``representation="axis_angle"``, 63 numbers per pose, the
paper's choice) or the 6D representation of Zhou et al. 2019 (``"rot6d"``, 126 numbers); which
one ships is chosen by measurement (see the model card).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion import SubVPSDE
from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from .prior import NUM_BODY_JOINTS, PosePrior, check_body_pose, rodrigues

REPRESENTATIONS = {"axis_angle": 3, "rot6d": 6}


@dataclass(frozen=True)
class DPoserConfig:
    """Architecture and prior settings of :class:`DPoser` (saved inside the weights file).

    Attributes:
        representation: ``"axis_angle"`` or ``"rot6d"`` (per joint, 21 joints).
        hidden: width of the MLP.
        blocks: number of residual blocks (two linear layers each).
        time_dim: size of the sinusoidal time embedding.
        dropout: dropout inside the blocks (training only).
        beta_min, beta_max: the sub-VP SDE noise rates.
        t_max, t_min: truncated schedule for :meth:`DPoser.energy` (annealed ``t_max -> t_min``).
        schedule: ``"truncated"`` (default) or ``"uniform"``.
        t_min_uniform, t_max_uniform: the range of ``t`` for ``schedule="uniform"``.
    """
    representation: str = "rot6d"
    hidden: int = 512
    blocks: int = 3
    time_dim: int = 128
    dropout: float = 0.1
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_max: float = 0.30
    t_min: float = 0.05
    schedule: str = "truncated"
    t_min_uniform: float = 0.02
    t_max_uniform: float = 0.98

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}, got {self.representation!r}")
        if self.schedule not in ("truncated", "uniform"):
            raise ValueError(f"schedule must be 'truncated' or 'uniform', got {self.schedule!r}")

    @property
    def dim(self) -> int:
        """Numbers per pose fed to the network."""
        return NUM_BODY_JOINTS * REPRESENTATIONS[self.representation]


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``t`` in ``[0, 1]`` (Vaswani et al. 2017, as in DDPM): ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    args = scale * t[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _Block(nn.Module):
    """Residual block: LN -> SiLU -> Linear -> (+ time) -> SiLU -> Dropout -> Linear, added to the input."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.temb = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.fc1(torch.nn.functional.silu(self.norm(h))) + self.temb(emb)
        return h + self.fc2(self.drop(torch.nn.functional.silu(y)))


class DPoser(PosePrior):
    """DPoser score model and pose prior (arXiv 2312.05541).

    Buffers ``data_mean`` / ``data_std`` ``(dim,)`` hold the normalisation statistics of the
    training poses (set with :meth:`set_normalisation`); they are saved with the weights.
    """

    config_class = DPoserConfig

    def __init__(self, config: DPoserConfig = DPoserConfig()):
        super().__init__()
        self.config = config
        d, h = config.dim, config.hidden
        self.sde = SubVPSDE(config.beta_min, config.beta_max)
        self.register_buffer("data_mean", torch.zeros(d))
        self.register_buffer("data_std", torch.ones(d))
        self.time_mlp = nn.Sequential(nn.Linear(config.time_dim, h), nn.SiLU(), nn.Linear(h, h))
        self.inp = nn.Linear(d, h)
        self.blocks = nn.ModuleList(_Block(h, config.dropout) for _ in range(config.blocks))
        self.out_norm = nn.LayerNorm(h)
        self.out = nn.Linear(h, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # run-time prior settings (the benchmark switches them; not part of the weights)
        self.schedule = config.schedule
        self.t_max, self.t_min = config.t_max, config.t_min
        self.t_min_uniform, self.t_max_uniform = config.t_min_uniform, config.t_max_uniform

    # --- representation -------------------------------------------------------------------
    def encode(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """``(B, 21, 3)`` axis-angle -> ``(B, dim)`` normalised network input (differentiable)."""
        if self.config.representation == "axis_angle":
            x = body_pose_aa.reshape(body_pose_aa.shape[0], -1)
        else:
            x = matrix_to_rot6d(rodrigues(body_pose_aa)).reshape(body_pose_aa.shape[0], -1)
        return (x - self.data_mean) / self.data_std

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` normalised -> ``(B, 21, 3)`` axis-angle (6D goes through Gram-Schmidt)."""
        x = x * self.data_std + self.data_mean
        if self.config.representation == "axis_angle":
            return x.reshape(x.shape[0], NUM_BODY_JOINTS, 3)
        return matrix_to_axis_angle(rot6d_to_matrix(x.reshape(x.shape[0], NUM_BODY_JOINTS, 6)))

    def features(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """Un-normalised representation ``(B, dim)`` (used for the normalisation statistics)."""
        if self.config.representation == "axis_angle":
            return body_pose_aa.reshape(body_pose_aa.shape[0], -1)
        return matrix_to_rot6d(axis_angle_to_matrix(body_pose_aa)).reshape(body_pose_aa.shape[0], -1)

    @torch.no_grad()
    def set_normalisation(self, body_pose_aa: torch.Tensor) -> None:
        """Store mean / std (clamped >= 1e-3) of the training poses ``(N, 21, 3)`` in the buffers."""
        f = self.features(body_pose_aa.to(self.data_mean))
        self.data_mean.copy_(f.mean(0))
        self.data_std.copy_(f.std(0).clamp_min(1e-3))

    # --- score network --------------------------------------------------------------------
    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network: ``(B, dim)`` noisy normalised poses and ``(B,)`` times -> predicted ``z``."""
        emb = self.time_mlp(timestep_embedding(t, self.config.time_dim))
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))

    def score(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Score ``grad log p_t(x_t)`` of the normalised poses: ``-z_hat(x_t, t) / sigma(t)``."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        _, sigma = self.sde.marginal_coeffs(t)
        return -self.predict_noise(x_t, t) / sigma[:, None]

    forward = score

    # --- prior ----------------------------------------------------------------------------
    def timestep(self, progress: float, generator: torch.Generator | None = None) -> float:
        """Diffusion time for the prior term at ``progress`` in ``[0, 1]`` of an optimisation.

        Truncated (sec. 3.3): linear from ``t_max`` (progress 0) to ``t_min`` (progress 1).
        Uniform: ``U(t_min_uniform, t_max_uniform)`` from ``generator``.
        """
        if self.schedule == "uniform":
            u = float(torch.rand((), generator=generator))
            return self.t_min_uniform + u * (self.t_max_uniform - self.t_min_uniform)
        p = min(max(float(progress), 0.0), 1.0)
        return self.t_max + p * (self.t_min - self.t_max)

    def energy(self, body_pose_aa: torch.Tensor, progress: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DPoser prior term (sec. 3.2-3.3), ``(B, 21, 3)`` axis-angle -> ``(B,)``.

        ``x_t = alpha x + sigma z``; ``x0_hat = (x_t + sigma^2 score(x_t, t)) / alpha`` (no
        gradient); ``E = alpha/sigma * mean_d (x - x0_hat)^2``. The gradient w.r.t. the pose
        is ``2 alpha/sigma (x - x0_hat) / D`` through the normalisation, the network is not
        back-propagated (as in the paper), which keeps a step cheap.
        """
        check_body_pose(body_pose_aa)
        x = self.encode(body_pose_aa)
        t_val = self.timestep(progress, generator)
        b_t = self.sde.integral_beta(t_val)
        alpha, sigma = math.exp(-0.5 * b_t), 1.0 - math.exp(-b_t)         # eq. 33, scalars
        with torch.no_grad():
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x_t = alpha * x + sigma * z                                    # perturb
            t = torch.full((x.shape[0],), t_val, dtype=x.dtype, device=x.device)
            # Tweedie with score = -z_hat / sigma: x0_hat = (x_t - sigma z_hat) / alpha
            x0_hat = (x_t - sigma * self.predict_noise(x_t, t)) / alpha
        return (alpha / sigma) * (x - x0_hat).pow(2).mean(-1)

    @torch.no_grad()
    def score_poses(self, body_pose_aa: torch.Tensor, times=(0.05, 0.1, 0.2, 0.3), draws: int = 4) -> torch.Tensor:
        """Implausibility of each pose: the mean denoising error ``|z_hat - z|^2`` (the
        per-pose score-matching loss) over fixed times and ``draws`` fixed noise draws
        (seed 0), so the same pose always scores the same. ``(B, 21, 3) -> (B,)``; about 1 for
        typical training poses, larger for implausible ones.
        """
        check_body_pose(body_pose_aa)
        x = self.encode(body_pose_aa)
        b, k = x.shape[0], len(times) * draws
        g = torch.Generator(device=x.device).manual_seed(0)
        t = torch.tensor([float(v) for v in times for _ in range(draws)], dtype=x.dtype, device=x.device)
        t = t.repeat_interleave(b)                                   # (k * B,) time-major
        z = torch.randn((k, x.shape[1]), generator=g, dtype=x.dtype, device=x.device)
        z = z.repeat_interleave(b, dim=0)                            # the same draws for every pose
        alpha, sigma = self.sde.marginal_coeffs(t)
        x_t = alpha[:, None] * x.repeat(k, 1) + sigma[:, None] * z
        err = (self.predict_noise(x_t, t) - z).pow(2).mean(-1)
        return err.reshape(k, b).mean(0)
