"""The sub-VP SDE (Song et al. 2021, eq. 29) and its samplers, checked against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from poseforge.backend.diffusion import (SubVPSDE, dsm_loss, euler_maruyama_sample,
                                         probability_flow_sample)

torch.set_num_threads(1)


def gaussian_score(sde: SubVPSDE, m: torch.Tensor, s: torch.Tensor):
    """Exact score of p_t when the data is N(m, diag(s^2)): p_t = N(alpha m, alpha^2 s^2 + sigma^2)."""
    def score(x, t):
        alpha, sigma = sde.marginal_coeffs(t)
        var = alpha[:, None] ** 2 * s ** 2 + sigma[:, None] ** 2
        return -(x - alpha[:, None] * m) / var
    return score


def test_marginal_matches_closed_form():
    sde = SubVPSDE(0.1, 20.0)
    x0 = torch.tensor([[1.0, -2.0]])
    for t in (0.0, 0.05, 0.3, 0.7, 1.0):
        mean, std = sde.marginal_prob(x0, t)
        log_mean = -0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1
        assert torch.allclose(mean, x0 * math.exp(log_mean), atol=1e-6)
        assert std.item() == pytest.approx(1.0 - math.exp(2 * log_mean), abs=1e-6)
    # at t = 1 the marginal is (numerically) the N(0, I) prior
    mean, std = sde.marginal_prob(x0, 1.0)
    assert (mean / x0).abs().max() < 1e-2 and std.item() > 0.99


def test_marginal_variance_solves_the_sde():
    """The variance of x(t) from x(0) = 0 obeys dVar/dt = -beta Var + g^2 (moments of eq. 29)."""
    sde = SubVPSDE(0.1, 20.0)
    x = torch.zeros(1, 1, dtype=torch.float64)
    h = 1e-5
    for t in (0.05, 0.2, 0.5, 0.9):
        var = lambda tt: sde.marginal_prob(x, torch.tensor([tt], dtype=torch.float64))[1] ** 2
        dvar = (var(t + h) - var(t - h)) / (2 * h)
        _, g = sde.sde(x, torch.tensor([t], dtype=torch.float64))
        rhs = -sde.beta(torch.tensor(t, dtype=torch.float64)) * var(t) + g ** 2
        assert dvar.item() == pytest.approx(rhs.item(), rel=1e-4)


def test_tweedie_with_exact_score_is_the_posterior_mean():
    sde = SubVPSDE()
    m, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    score = gaussian_score(sde, m, s)
    g = torch.Generator().manual_seed(0)
    x0 = m + s * torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g) * 0.9 + 0.05
    x_t, z, std = sde.perturb(x0, t, g)
    alpha, sigma = sde.marginal_coeffs(t)
    assert torch.allclose(x_t, alpha[:, None] * x0 + std[:, None] * z)
    post = m + (alpha[:, None] * s ** 2) * (x_t - alpha[:, None] * m) / (alpha[:, None] ** 2 * s ** 2 + sigma[:, None] ** 2)
    assert torch.allclose(sde.tweedie_denoise(x_t, t, score(x_t, t)), post, atol=1e-5)


def test_dsm_loss_prefers_the_true_score():
    sde = SubVPSDE()
    m, s = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    x0 = torch.randn(4096, 2, generator=torch.Generator().manual_seed(1))
    true = dsm_loss(gaussian_score(sde, m, s), x0, sde, torch.Generator().manual_seed(2))
    wrong = dsm_loss(gaussian_score(sde, m + 1.0, s * 0.5), x0, sde, torch.Generator().manual_seed(2))
    assert true < 0.9 * wrong


@pytest.mark.parametrize("sampler", ["em", "ode_heun", "ode_euler"])
def test_samplers_recover_a_gaussian(sampler):
    sde = SubVPSDE()
    m, s = torch.tensor([1.5, -0.5]), torch.tensor([0.5, 1.2])
    score = gaussian_score(sde, m, s)
    g = torch.Generator().manual_seed(3)
    if sampler == "em":
        x = euler_maruyama_sample(score, sde, (4000, 2), steps=300, generator=g)
    else:
        x = probability_flow_sample(score, sde, (4000, 2), steps=60 if sampler == "ode_heun" else 300,
                                    method=sampler[4:], generator=g)
    assert torch.allclose(x.mean(0), m, atol=0.08)
    assert torch.allclose(x.std(0), s, rtol=0.12)


def test_sampling_is_reproducible_with_a_generator():
    sde = SubVPSDE()
    score = gaussian_score(sde, torch.zeros(3), torch.ones(3))
    a = euler_maruyama_sample(score, sde, (8, 3), steps=20, generator=torch.Generator().manual_seed(5))
    b = euler_maruyama_sample(score, sde, (8, 3), steps=20, generator=torch.Generator().manual_seed(5))
    c = euler_maruyama_sample(score, sde, (8, 3), steps=20, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_infilling_keeps_known_entries_and_samples_the_rest():
    sde = SubVPSDE()
    m, s = torch.tensor([2.0, -1.0]), torch.tensor([0.4, 0.4])
    score = gaussian_score(sde, m, s)
    known = torch.zeros(2000, 2)
    known[:, 0] = 7.0  # far from the data: must still come out exactly
    mask = torch.tensor([[1.0, 0.0]]).expand(2000, 2)
    for fn in (euler_maruyama_sample, probability_flow_sample):
        x = fn(score, sde, (2000, 2), steps=100, mask=mask, known=known, generator=torch.Generator().manual_seed(7))
        assert torch.all(x[:, 0] == 7.0)
        assert abs(x[:, 1].mean().item() - (-1.0)) < 0.1  # independent dims: the unknown one follows its marginal
