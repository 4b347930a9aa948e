"""Baseline pose priors for the "Snap" benchmark: a Gaussian mixture and a VPoser-style VAE.

Both model the *body pose*: the local rotations of the 21 non-root canonical joints (SMPL order,
joints 1..21 of :mod:`..skeleton`), relative to the rest T-pose, in radians.  The root (pelvis)
orientation and translation are not modelled.  Like every :class:`~.prior.PosePrior`, they expose
``energy(body_pose_aa, progress)``: a differentiable ``(B,)`` value, lower = more plausible, used as
the prior term when a pose is fitted to pinned joints.

* :class:`GMMPrior` - the GMM pose prior of SMPLify (Bogo et al. 2016, "Keep it SMPL", sec. 3.2):
  a mixture of full-covariance Gaussians over the 63-D axis-angle body pose.  SMPLify replaces the
  log of the mixture by its best component (a max approximation); here the energy is the exact
  negative log-likelihood through log-sum-exp, which is as cheap in batch and smooth everywhere.
* :class:`VAEPrior` - a VPoser-style variational autoencoder (Pavlakos et al. 2019, "Expressive
  Body Capture: 3D Hands, Face, and Body from a Single Image" (SMPL-X), sec. 3.3; the
  ``human_body_prior`` code): an MLP encoder from the axis-angle pose to a 32-D Gaussian latent, an
  MLP decoder to 6D rotations (Zhou et al. 2019).  Its energy is the negative evidence lower bound
  evaluated at the posterior mean (see :meth:`VAEPrior.energy`), so it works on poses directly and
  plugs into the same fitting code as every other prior.

Parameters and normalisation statistics are registered buffers / parameters, so
:func:`..weights.save_model` stores everything in one safetensors file and loading never unpickles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle, rot6d_to_matrix
from .prior import PosePrior

NUM_BODY_JOINTS = 21
POSE_DIM = 3 * NUM_BODY_JOINTS


class BaselineError(ValueError):
    """Bad input to a baseline prior (wrong pose shape, too little data to fit)."""


def _check_pose(body_pose_aa: torch.Tensor) -> torch.Tensor:
    """Accept ``(B, 21, 3)`` or ``(B, 63)`` axis-angle poses; return ``(B, 63)``."""
    if body_pose_aa.ndim == 3 and tuple(body_pose_aa.shape[1:]) == (NUM_BODY_JOINTS, 3):
        return body_pose_aa.reshape(body_pose_aa.shape[0], POSE_DIM)
    if body_pose_aa.ndim == 2 and body_pose_aa.shape[1] == POSE_DIM:
        return body_pose_aa
    raise BaselineError(f"expected body poses of shape (B, {NUM_BODY_JOINTS}, 3) axis-angle, "
                        f"got {tuple(body_pose_aa.shape)}")


# --------------------------------------------------------------------------------------------
# Gaussian mixture (SMPLify)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GMMConfig:
    """Shape of a :class:`GMMPrior`: ``n_components`` full-covariance Gaussians over ``dim`` values."""
    n_components: int = 8
    dim: int = POSE_DIM


class GMMPrior(PosePrior):
    """Gaussian-mixture pose prior over the 63-D axis-angle body pose (SMPLify, Bogo et al. 2016).

    Buffers: ``means (K, 63)``, ``precisions_cholesky (K, 63, 63)`` (upper-triangular ``U_k`` with
    ``Sigma_k^-1 = U_k U_k^T``, scikit-learn's convention), ``weights (K,)``.  Fit with
    :meth:`fit` (expectation-maximisation, k-means++-style initialisation) or load shipped weights.
    """

    config_class = GMMConfig

    def __init__(self, config: GMMConfig = GMMConfig()):
        super().__init__()
        self.config = config
        k, d = config.n_components, config.dim
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("precisions_cholesky", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("weights", torch.full((k,), 1.0 / k))

    # -- likelihood ---------------------------------------------------------------------------
    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 63)`` poses -> ``(B, K)`` ``log w_k + log N(x | mu_k, Sigma_k)``."""
        d = self.config.dim
        y = torch.einsum("bd,kde->bke", x, self.precisions_cholesky) \
            - torch.einsum("kd,kde->ke", self.means, self.precisions_cholesky)[None]
        log_det = torch.log(torch.diagonal(self.precisions_cholesky, dim1=-2, dim2=-1)).sum(-1)
        return (torch.log(self.weights) + log_det - 0.5 * d * math.log(2 * math.pi))[None] \
            - 0.5 * (y ** 2).sum(-1)

    def energy(self, body_pose_aa: torch.Tensor, progress: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood ``-log sum_k w_k N(x | mu_k, Sigma_k)`` of each body pose.

        Args:
            body_pose_aa: ``(B, 21, 3)`` axis-angle (radians) of joints 1..21, relative to the
                rest T-pose; ``(B, 63)`` is accepted too.
            progress: ignored (the GMM has no schedule); part of the prior interface.
            generator: ignored (deterministic).
        Returns:
            ``(B,)`` energies in nats (lower = more plausible), differentiable.
        Raises:
            BaselineError: on a wrong pose shape.
        """
        x = _check_pose(body_pose_aa).to(self.means)
        return -torch.logsumexp(self.component_log_prob(x), dim=-1)

    @torch.no_grad()
    def score_poses(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """``(B, 21, 3)`` axis-angle -> ``(B,)`` implausibility (the negative log-likelihood)."""
        return self.energy(body_pose_aa)

    # -- fitting ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, poses: torch.Tensor | np.ndarray, *, iters: int = 200, tol: float = 1e-4,
            reg_covar: float = 1e-4, seed: int = 0, log=None) -> dict:
        """Fit the mixture to body poses by EM (Dempster et al. 1977), in float64.

        Args:
            poses: ``(N, 21, 3)`` or ``(N, 63)`` axis-angle body poses (radians), N >= 10 K.
            iters: maximum EM iterations; stops earlier when the mean log-likelihood improves
                by less than ``tol`` nats.
            reg_covar: added to each covariance diagonal (rad^2) so no component collapses.
            seed: seeds the k-means++ initialisation.
            log: optional ``callable(str)`` for progress lines.
        Returns:
            ``{"iterations", "train_nll"}``: EM iterations run and the final mean negative
            log-likelihood per pose (nats).
        Raises:
            BaselineError: too few poses for the number of components.
        """
        x = torch.as_tensor(np.asarray(poses), dtype=torch.float64)
        x = _check_pose(x)
        n, d = x.shape
        k = self.config.n_components
        if n < 10 * k:
            raise BaselineError(f"need at least {10 * k} poses to fit {k} components, got {n}")
        gen = torch.Generator().manual_seed(seed)
        # k-means++ seeding on a subsample, then a few Lloyd steps: the responsibilities start hard.
        sub = x[torch.randperm(n, generator=gen)[: min(n, 20000)]]
        centres = [sub[torch.randint(len(sub), (1,), generator=gen)].squeeze(0)]
        for _ in range(1, k):
            d2 = torch.cdist(sub, torch.stack(centres)).min(1).values ** 2
            centres.append(sub[torch.multinomial(d2 / d2.sum(), 1, generator=gen)].squeeze(0))
        mu = torch.stack(centres)
        for _ in range(10):
            lab = torch.cdist(x, mu).argmin(1)
            mu = torch.stack([x[lab == j].mean(0) if (lab == j).any() else mu[j] for j in range(k)])
        resp = torch.nn.functional.one_hot(torch.cdist(x, mu).argmin(1), k).double()

        eye = torch.eye(d, dtype=torch.float64)
        prev = -math.inf
        it = 0
        for it in range(1, iters + 1):
            # M step: weights, means, full covariances (+ reg_covar I), precision Cholesky factors.
            nk = resp.sum(0) + 10 * torch.finfo(torch.float64).eps
            w = nk / n
            mu = (resp.T @ x) / nk[:, None]
            cov = torch.stack([((resp[:, j, None] * (x - mu[j])).T @ (x - mu[j])) / nk[j] for j in range(k)])
            cov = cov + reg_covar * eye
            chol = torch.linalg.cholesky(cov)                                  # Sigma = L L^T
            prec_chol = torch.linalg.solve_triangular(chol, eye.expand(k, d, d), upper=False).transpose(-1, -2)
            self.means.copy_(mu.float()); self.weights.copy_(w.float())
            self.precisions_cholesky.copy_(prec_chol.float())
            # E step, in float64 with the same formula as component_log_prob.
            y = torch.einsum("nd,kde->nke", x, prec_chol) - torch.einsum("kd,kde->ke", mu, prec_chol)[None]
            log_det = torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)
            lp = (torch.log(w) + log_det - 0.5 * d * math.log(2 * math.pi))[None] - 0.5 * (y ** 2).sum(-1)
            ll = torch.logsumexp(lp, 1)
            resp = torch.exp(lp - ll[:, None])
            mean_ll = float(ll.mean())
            if log is not None and (it % 10 == 0 or it == 1):
                log(f"GMM EM iter {it}: mean log-likelihood {mean_ll:.3f}")
            if abs(mean_ll - prev) < tol:
                break
            prev = mean_ll
        return {"iterations": it, "train_nll": -mean_ll}


# --------------------------------------------------------------------------------------------
# VPoser-style VAE
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VAEConfig:
    """Shape of a :class:`VAEPrior` (VPoser: Pavlakos et al. 2019, sec. 3.3).

    Attributes:
        latent_dim: size of the Gaussian latent (VPoser uses 32).
        hidden: width of the encoder and decoder MLPs.
        layers: hidden layers in each MLP.
        dropout: dropout between decoder layers during training (VPoser uses 0.1 to 0.25).
    """
    latent_dim: int = 32
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.1


def _mlp(inp: int, hidden: int, layers: int, out: int, dropout: float = 0.0) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class VAEPrior(PosePrior):
    """VPoser-style VAE pose prior: axis-angle -> N(mu, sigma^2) in R^32 -> 6D rotations.

    Buffers: ``pose_mean (63,)`` / ``pose_std (63,)`` (normalisation of the encoder input, from
    the training poses) and ``recon_var ()`` (the mean squared rotation-matrix reconstruction
    error per element on the training poses, the variance of the Gaussian decoder likelihood used
    by :meth:`energy`).
    """

    config_class = VAEConfig

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        c = config
        self.encoder = _mlp(POSE_DIM, c.hidden, c.layers, 2 * c.latent_dim)
        self.decoder = _mlp(c.latent_dim, c.hidden, c.layers, 6 * NUM_BODY_JOINTS, c.dropout)
        self.register_buffer("pose_mean", torch.zeros(POSE_DIM))
        self.register_buffer("pose_std", torch.ones(POSE_DIM))
        self.register_buffer("recon_var", torch.tensor(1.0))

    def encode(self, body_pose_aa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 21, 3)`` axis-angle -> posterior ``(mu, sigma)``, each ``(B, latent_dim)``."""
        x = _check_pose(body_pose_aa).to(self.pose_mean)
        h = self.encoder((x - self.pose_mean) / self.pose_std)
        mu, s = h.chunk(2, dim=-1)
        return mu, nn.functional.softplus(s) + 1e-4

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` latent codes -> ``(B, 21, 3, 3)`` local rotation matrices."""
        return rot6d_to_matrix(self.decoder(z).reshape(z.shape[0], NUM_BODY_JOINTS, 6))

    def decode_aa(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> ``(B, 21, 3)`` axis-angle body poses (radians)."""
        return matrix_to_axis_angle(self.decode(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` body poses ``(n, 21, 3)`` axis-angle decoded from ``z ~ N(0, I)``."""
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.pose_mean)
        return self.decode_aa(z)

    def reconstruct(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """Round trip ``decode(mu(x))``: ``(B, 21, 3)`` -> ``(B, 21, 3, 3)`` rotation matrices."""
        return self.decode(self.encode(body_pose_aa)[0])

    def energy(self, body_pose_aa: torch.Tensor, progress: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO at the posterior mean: ``||mu||^2 / 2 + ||R(x) - R(dec(mu))||^2 / (2 s^2)``.

        ``mu = mu(x)`` is the encoder mean, ``R(.)`` the 21 rotation matrices (Frobenius norm over
        all 189 entries) and ``s^2`` the per-entry reconstruction variance measured on the
        training poses (buffer ``recon_var``).  The first term is the latent prior ``-log N(mu;
        0, I)`` and the second the Gaussian decoder likelihood ``-log p(x | mu)``, both up to
        constants: a pose is plausible when it encodes near the latent origin *and* the decoder
        reproduces it.  The latent term alone is not enough (an encoder maps unseen, implausible
        poses to arbitrary codes, often small ones); the reconstruction term measures the
        distance to the decoder's pose manifold.  Fitting directly in latent space, as SMPLify-X
        does with VPoser, would need a different optimiser for this one prior; this energy plugs
        into the same pose-space fitting as the GMM and DPoser, so the benchmark compares priors
        and not optimisers.

        Args:
            body_pose_aa: ``(B, 21, 3)`` axis-angle (radians), joints 1..21.
            progress: ignored (no schedule).
            generator: ignored (deterministic: no latent sampling).
        Returns:
            ``(B,)`` energies (lower = more plausible), differentiable.
        """
        x = _check_pose(body_pose_aa).to(self.pose_mean)
        mu, _ = self.encode(x)
        rot = axis_angle_to_matrix(x.reshape(-1, NUM_BODY_JOINTS, 3))
        rec = self.decode(mu)
        return 0.5 * (mu ** 2).sum(-1) + ((rot - rec) ** 2).sum((-1, -2, -3)) / (2 * self.recon_var)

    @torch.no_grad()
    def score_poses(self, body_pose_aa: torch.Tensor) -> torch.Tensor:
        """``(B, 21, 3)`` axis-angle -> ``(B,)`` implausibility (the energy)."""
        return self.energy(body_pose_aa)

    def loss(self, body_pose_aa: torch.Tensor, kl_weight: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Training loss (VPoser): rotation-matrix reconstruction + ``kl_weight`` * KL to N(0, I).

        Args:
            body_pose_aa: ``(B, 21, 3)`` training poses.
            kl_weight: weight of the KL divergence (per pose, in nats).
            generator: draws the reparameterised latent sample.
        Returns:
            ``(loss, {"recon": ..., "kl": ...})``; recon is the mean squared Frobenius error per
            pose summed over the 21 joints.
        """
        x = _check_pose(body_pose_aa).to(self.pose_mean)
        mu, sigma = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        rec = self.decode(mu + sigma * eps)
        rot = axis_angle_to_matrix(x.reshape(-1, NUM_BODY_JOINTS, 3))
        recon = ((rot - rec) ** 2).sum((-1, -2, -3)).mean()
        kl = 0.5 * (mu ** 2 + sigma ** 2 - 1 - 2 * torch.log(sigma)).sum(-1).mean()
        return recon + kl_weight * kl, {"recon": float(recon.detach()), "kl": float(kl.detach())}
