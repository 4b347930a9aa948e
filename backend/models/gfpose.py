"""GFPose-style conditional score model over motion windows, for in-betweening.

GFPose (Ci et al., "GFPose: Learning 3D Human Pose Prior with Gradient Fields", CVPR 2023,
arXiv 2212.08641) learns the score of a pose distribution conditioned on a partially observed
input, and trains one network for every task by masking the condition hierarchically (section
3.3: whole body, body parts, single joints).  Here the sample is a *window of frames* instead of
one pose, and the condition is the keyed part of the window: whole keyed frames, context frames
before the gap and partial keys (only some joints keyed on a frame).

Representation, per frame (``D = 3 + 22 * 6 = 135`` features, in the window's own frame: root
XZ centred on the keyed root positions, turned about Y so the pelvis faces +Z on the first keyed
frame, see :func:`canonicalise_window`):

* root position, metres, Y up;
* the 22 local joint rotations in the continuous 6D form of Zhou et al. 2019.

The diffusion runs on the *residual over the interpolation of the keys* (per joint SLERP, root
LERP), normalised per feature by ``residual_scale``: known entries have residual zero, so the
network only learns what interpolation misses.  The network is parameterised to predict the clean
residual ``x0`` (an "x0-prediction" denoiser); the score of the sub-VP SDE (Song et al. 2021,
eq. 29) follows from Tweedie's formula, ``score = -(x_t - alpha(t) x0_hat) / sigma(t)^2``.  At
``t = 1`` the noisy input carries no information, so ``x0_hat(0, t=1)`` is the network's estimate
of the conditional mean: the deterministic one-step answer.

Network: a pre-norm transformer encoder over the frames of the window (one token per frame:
noisy residual, interpolation, key masks), with a learned frame position embedding and a
sinusoidal noise-level embedding added to every token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion import SubVPSDE
from ..skeleton import NUM_JOINTS

#: Features per frame: root (3) + 22 joints x 6D rotation.
FEATURES = 3 + NUM_JOINTS * 6


@dataclass(frozen=True)
class GFPoseConfig:
    """Hyper-parameters of :class:`GFPose` (stored in the weights' metadata).

    Attributes:
        window: longest window in frames (keys included) the model handles (65 = LaFAN1's).
        width: transformer model width.
        layers: transformer encoder layers.
        heads: attention heads.
        ff_mult: feed-forward width as a multiple of ``width``.
        beta_min, beta_max: the sub-VP SDE's noise rates.
    """
    window: int = 65
    width: int = 256
    layers: int = 4
    heads: int = 4
    ff_mult: int = 2
    beta_min: float = 0.1
    beta_max: float = 20.0


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the diffusion time ``t (B,)`` in ``[0, 1]`` -> ``(B, dim)``
    (Vaswani et al. 2017 frequencies, as in DDPM / score SDE)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = (t * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class GFPose(nn.Module):
    """Conditional x0-denoiser over motion windows (see the module docstring).

    Inputs of :meth:`forward` (normalised units, window frame):

    * ``x_t``: ``(B, T, 135)`` noisy residual over the interpolation;
    * ``t``: ``(B,)`` diffusion time in ``(0, 1]``;
    * ``interp``: ``(B, T, 135)`` interpolation of the keys (root metres, 6D), un-normalised;
    * ``known``: ``(B, T, 22)`` bool, joint rotation keyed; ``known_root``: ``(B, T)`` bool.

    Output: ``(B, T, 135)`` predicted clean residual, exactly zero on keyed entries.
    """

    config_class = GFPoseConfig

    def __init__(self, config: GFPoseConfig = GFPoseConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.sde = SubVPSDE(config.beta_min, config.beta_max)
        # Normalisation of the residual and of the interpolation features; set from data by the
        # trainer (saved with the weights).
        self.register_buffer("residual_scale", torch.ones(FEATURES))
        self.register_buffer("feature_mean", torch.zeros(FEATURES))
        self.register_buffer("feature_scale", torch.ones(FEATURES))
        self.inp = nn.Linear(2 * FEATURES + NUM_JOINTS + 1, w)
        self.pos = nn.Parameter(torch.zeros(config.window, w))
        nn.init.normal_(self.pos, std=0.02)
        self.temb = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        layer = nn.TransformerEncoderLayer(w, config.heads, config.ff_mult * w, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, FEATURES)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def window(self) -> int:
        return self.config.window

    def feature_mask(self, known: torch.Tensor, known_root: torch.Tensor) -> torch.Tensor:
        """``(B, T, 22)``, ``(B, T)`` -> ``(B, T, 135)`` float, 1 on keyed features."""
        rot = known.unsqueeze(-1).expand(*known.shape, 6).reshape(*known.shape[:-1], NUM_JOINTS * 6)
        return torch.cat([known_root.unsqueeze(-1).expand(*known_root.shape, 3), rot], -1).to(torch.float32)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, interp: torch.Tensor, known: torch.Tensor,
                known_root: torch.Tensor) -> torch.Tensor:
        B, T, _ = x_t.shape
        if T > self.config.window:
            raise ValueError(f"window of {T} frames is longer than the model's {self.config.window}")
        fmask = self.feature_mask(known, known_root)
        cond = (interp - self.feature_mean) / self.feature_scale
        h = torch.cat([x_t * (1 - fmask), cond, known.to(x_t.dtype), known_root.to(x_t.dtype)[..., None]], -1)
        h = self.inp(h) + self.pos[:T] + self.temb(timestep_embedding(t, self.config.width))[:, None]
        h = self.encoder(h)
        return self.out(self.out_norm(h)) * (1 - fmask)

    def score(self, x_t: torch.Tensor, t: torch.Tensor, interp, known, known_root) -> torch.Tensor:
        """Score of the sub-VP marginal from the x0 prediction (Tweedie's formula inverted)."""
        alpha, sigma = self.sde.marginal_coeffs(t)
        x0 = self(x_t, t, interp, known, known_root)
        return -(x_t - alpha[:, None, None] * x0) / (sigma[:, None, None] ** 2)
