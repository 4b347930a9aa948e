"""The sub-VP SDE and its samplers, written once and shared by DPoser and GFPose.

Reference: Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, "Score-Based Generative Modeling
through Stochastic Differential Equations", ICLR 2021 (arXiv 2011.13456). Equation numbers below
are those of the arXiv version.

The forward process on data ``x(0)`` over ``t`` in ``[0, 1]`` is the sub-VP SDE (eq. 29)

    dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta(s) ds))) dw,
    beta(t) = beta_min + t (beta_max - beta_min)                           (appendix B)

whose perturbation kernel is Gaussian (appendix B, eq. 33 for sub-VP):

    x(t) | x(0) ~ N( exp(-1/2 B(t)) x(0),  (1 - exp(-B(t)))^2 I ),
    B(t) = int_0^t beta(s) ds = beta_min t + 1/2 t^2 (beta_max - beta_min).

Generation runs the reverse-time SDE (eq. 6)

    dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar

or the probability-flow ODE with the same marginals (eq. 13)

    dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t).

Tensors: ``x`` is ``(B, D)`` (any trailing shape works), ``t`` is ``(B,)`` or a float. All
randomness goes through an explicit ``torch.Generator``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``(B,)`` tensor to broadcast against ``x`` of shape ``(B, ...)``."""
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _as_time(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` (float or tensor) as a ``(B,)`` tensor in the dtype/device of ``x``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` drawn from ``generator``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class SubVPSDE:
    """The sub-VP SDE of Song et al. 2021 (eq. 29), time ``t`` in ``[0, 1]``.

    Args:
        beta_min, beta_max: the linear noise rate ``beta(t)`` at ``t = 0`` and ``t = 1``
            (0.1 and 20 as in the paper and in DPoser).
        N: number of discretisation steps a sampler uses by default.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        if not (0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.N = int(N)

    T = 1.0

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (appendix B)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral_beta(self, t: torch.Tensor) -> torch.Tensor:
        """``B(t) = int_0^t beta(s) ds = beta_min t + 1/2 t^2 (beta_max - beta_min)``."""
        return self.beta_min * t + 0.5 * t ** 2 * (self.beta_max - self.beta_min)

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``f(x, t)`` and diffusion ``g(t)`` of eq. 29.

        Returns:
            ``(drift like x, diffusion (B,))``.
        """
        t = _as_time(t, x)
        beta_t = self.beta(t)
        drift = -0.5 * _bcast(beta_t, x) * x                                     # f = -1/2 beta x
        discount = 1.0 - torch.exp(-2.0 * self.integral_beta(t))                 # 1 - e^{-2B(t)}
        return drift, torch.sqrt(beta_t * discount)                               # g

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))``: mean factor ``exp(-B/2)`` and std ``1 - exp(-B)`` (eq. 33)."""
        b = self.integral_beta(t)
        return torch.exp(-0.5 * b), 1.0 - torch.exp(-b)

    def marginal_prob(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of ``p_0t(x(t) | x(0) = x0)`` (appendix B, eq. 33).

        Returns:
            ``(mean like x0, std (B,))``.
        """
        t = _as_time(t, x0)
        alpha, sigma = self.marginal_coeffs(t)
        return _bcast(alpha, x0) * x0, sigma

    def perturb(self, x0: torch.Tensor, t, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``x(t) = alpha(t) x0 + sigma(t) z``, ``z ~ N(0, I)``.

        Returns:
            ``(x_t, z, std (B,))``.
        """
        mean, std = self.marginal_prob(x0, t)
        z = randn_like(x0, generator)
        return mean + _bcast(std, x0) * z, z, std

    def tweedie_denoise(self, x_t: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """One-step estimate of ``E[x(0) | x(t)]`` by Tweedie's formula:

            x0_hat = (x_t + sigma(t)^2 score(x_t, t)) / alpha(t).

        Exact when ``score`` is the true score of the marginal ``p_t``.
        """
        t = _as_time(t, x_t)
        alpha, sigma = self.marginal_coeffs(t)
        return (x_t + _bcast(sigma ** 2, x_t) * score) / _bcast(alpha, x_t)

    def prior_sample(self, shape, generator: torch.Generator | None = None,
                     dtype=torch.float32, device=None) -> torch.Tensor:
        """Sample the prior ``p_T = N(0, I)`` (the sub-VP marginal at ``t = 1`` is ~N(0, I))."""
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of ``N(0, I)`` per sample, ``(B,)``."""
        d = z[0].numel()
        return -0.5 * d * math.log(2 * math.pi) - 0.5 * z.reshape(z.shape[0], -1).pow(2).sum(-1)


def dsm_loss(score_fn: ScoreFn, x0: torch.Tensor, sde: SubVPSDE,
             generator: torch.Generator | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Denoising score matching with ``lambda(t) = sigma(t)^2`` (Song et al. 2021, eq. 7).

    ``t ~ U(eps, 1)``, ``x_t = alpha(t) x0 + sigma(t) z``; the target score is ``-z / sigma``, so
    ``lambda |s - (-z/sigma)|^2 = |sigma s + z|^2``, averaged over dimensions and the batch.

    Args:
        score_fn: ``score_fn(x_t, t) -> score`` like ``x_t``.
        x0: ``(B, ...)`` clean (normalised) data.
    Returns:
        scalar loss.
    """
    t = eps + (1.0 - eps) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device)
    x_t, z, std = sde.perturb(x0, t, generator)
    score = score_fn(x_t, t)
    return (score * _bcast(std, x0) + z).pow(2).reshape(x0.shape[0], -1).mean(-1).mean()


def _impose_known(x: torch.Tensor, t, sde: SubVPSDE, mask, known, generator, exact: bool = False):
    """Infilling hook: replace the known entries (``mask == 1``) by the known values noised
    forward to time ``t`` (Song et al. 2021, appendix I.2, "imputation"); exact values when
    ``exact`` (the last step)."""
    if mask is None:
        return x
    if exact:
        return mask * known + (1 - mask) * x
    known_t, _, _ = sde.perturb(known, t, generator)
    return mask * known_t + (1 - mask) * x


def _time_grid(sde: SubVPSDE, steps: int | None, t_start: float, eps: float, x: torch.Tensor):
    steps = sde.N if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(t_start, eps, steps + 1, dtype=x.dtype, device=x.device)


@torch.no_grad()
def euler_maruyama_sample(score_fn: ScoreFn, sde: SubVPSDE, shape, *, steps: int | None = None,
                          eps: float = 1e-3, t_start: float = 1.0, x_init: torch.Tensor | None = None,
                          mask: torch.Tensor | None = None, known: torch.Tensor | None = None,
                          generator: torch.Generator | None = None, denoise_final: bool = True,
                          dtype=torch.float32, device=None) -> torch.Tensor:
    """Sample by Euler-Maruyama on the reverse-time SDE (eq. 6), from ``t_start`` down to ``eps``.

    Each step of size ``dt > 0`` going back in time:
        x <- x - [f(x, t) - g(t)^2 score(x, t)] dt + g(t) sqrt(dt) z.

    Args:
        score_fn: ``score_fn(x, t (B,)) -> score``.
        shape: ``(B, ...)`` of the samples.
        steps: number of steps (default ``sde.N``).
        x_init: start from this ``x(t_start)`` instead of a prior sample (e.g. a noised pose).
        mask, known: infilling: entries with ``mask == 1`` follow ``known`` (noised to the
            current time each step, exact at the end).
        denoise_final: finish with the noise-free mean / Tweedie step at ``eps``.
    Returns:
        samples of ``shape``.
    """
    x = sde.prior_sample(shape, generator, dtype, device) if x_init is None else x_init.clone()
    ts = _time_grid(sde, steps, t_start, eps, x)
    x = _impose_known(x, ts[0], sde, mask, known, generator)
    for i in range(len(ts) - 1):
        t, dt = ts[i], ts[i] - ts[i + 1]
        tb = t.expand(x.shape[0])
        f, g = sde.sde(x, tb)
        rev_drift = f - _bcast(g ** 2, x) * score_fn(x, tb)                  # eq. 6 drift
        x = x - rev_drift * dt                                                # deterministic part
        if i < len(ts) - 2 or not denoise_final:
            x = x + _bcast(g, x) * torch.sqrt(dt) * randn_like(x, generator)  # g dw_bar
        x = _impose_known(x, ts[i + 1], sde, mask, known, generator)
    if denoise_final:
        te = ts[-1].expand(x.shape[0])
        x = sde.tweedie_denoise(x, te, score_fn(x, te))
    return _impose_known(x, 0.0, sde, mask, known, generator, exact=True)


@torch.no_grad()
def probability_flow_sample(score_fn: ScoreFn, sde: SubVPSDE, shape, *, steps: int | None = None,
                            method: str = "heun", eps: float = 1e-3, t_start: float = 1.0,
                            x_init: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                            known: torch.Tensor | None = None, generator: torch.Generator | None = None,
                            denoise_final: bool = True, dtype=torch.float32, device=None) -> torch.Tensor:
    """Sample by integrating the probability-flow ODE (eq. 13) from ``t_start`` to ``eps``.

    ``dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t)`` with Euler or Heun's second-order method
    (Karras et al. 2022, Algorithm 1 applied to this ODE). Randomness only in the start point
    and the infilling hook. Arguments as :func:`euler_maruyama_sample`; ``method`` is
    ``"euler"`` or ``"heun"``.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")

    def velocity(x, t):
        tb = t.expand(x.shape[0])
        f, g = sde.sde(x, tb)
        return f - 0.5 * _bcast(g ** 2, x) * score_fn(x, tb)                  # eq. 13

    x = sde.prior_sample(shape, generator, dtype, device) if x_init is None else x_init.clone()
    ts = _time_grid(sde, steps, t_start, eps, x)
    x = _impose_known(x, ts[0], sde, mask, known, generator)
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        h = t_next - t                                                        # negative step
        v = velocity(x, t)
        x_euler = x + h * v
        if method == "heun":
            x = x + 0.5 * h * (v + velocity(x_euler, t_next))                 # trapezoid
        else:
            x = x_euler
        x = _impose_known(x, t_next, sde, mask, known, generator)
    if denoise_final:
        te = ts[-1].expand(x.shape[0])
        x = sde.tweedie_denoise(x, te, score_fn(x, te))
    return _impose_known(x, 0.0, sde, mask, known, generator, exact=True)
