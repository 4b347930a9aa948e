"""GMM and VPoser-style VAE pose priors: likelihoods, round trips, saving, and the shipped weights."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from poseforge.backend.models.baselines import (BaselineError, GMMConfig, GMMPrior, VAEConfig,
                                                VAEPrior)
from poseforge.backend.rotations import axis_angle_to_matrix
from poseforge.backend.train.baselines import geodesic_deg, random_poses, train_vae

WEIGHTS = Path(__file__).resolve().parents[1] / "backend" / "weights"


def synthetic_poses(n: int, seed: int) -> torch.Tensor:
    """``(n, 21, 3)`` poses drawn around three distinct 'actions' with correlated joints."""
    structure = torch.Generator().manual_seed(1234)  # the same 'actions' for every draw
    protos = torch.randn(3, 21, 3, generator=structure) * 0.5
    basis = torch.randn(4, 21, 3, generator=structure) * 0.15
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, 4, generator=g)
    which = torch.randint(3, (n,), generator=g)
    return protos[which] + torch.einsum("nk,kjd->njd", mix, basis) \
        + 0.02 * torch.randn(n, 21, 3, generator=g)


@pytest.fixture(scope="module")
def gmm() -> GMMPrior:
    torch.manual_seed(0)
    g = GMMPrior(GMMConfig(n_components=3))
    g.fit(synthetic_poses(3000, 0), seed=0)
    return g


def test_gmm_energy_is_lower_on_data_poses_than_on_random_ones(gmm):
    real = synthetic_poses(200, 1)  # same distribution, new draws
    rnd = random_poses(200, seed=2)
    e_real, e_rnd = gmm.energy(real), gmm.energy(rnd)
    assert e_real.shape == (200,) and torch.isfinite(e_real).all()
    assert float(e_real.max()) < float(e_rnd.min())


def test_gmm_energy_matches_the_mixture_density(gmm):
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    x = synthetic_poses(5, 3).reshape(5, 63).double().numpy()
    prec = gmm.precisions_cholesky.double() @ gmm.precisions_cholesky.double().transpose(-1, -2)
    cov = torch.linalg.inv(prec).numpy()
    lp = np.stack([math.log(float(gmm.weights[k])) +
                   multivariate_normal(gmm.means[k].double().numpy(), cov[k]).logpdf(x)
                   for k in range(3)], 1)
    np.testing.assert_allclose(gmm.energy(torch.from_numpy(x).float()).numpy(), -logsumexp(lp, 1),
                               rtol=1e-3)


def test_gmm_gradient_pulls_a_pose_towards_the_data(gmm):
    x = (synthetic_poses(1, 4) + 0.5).requires_grad_(True)
    e0 = gmm.energy(x)
    e0.sum().backward()
    with torch.no_grad():
        x2 = x - 1e-4 * x.grad
    assert float(gmm.energy(x2)) < float(e0.detach())


def test_bad_pose_shape_is_a_clear_error(gmm):
    with pytest.raises(BaselineError, match="21, 3"):
        gmm.energy(torch.zeros(4, 22, 3))
    with pytest.raises(BaselineError, match="at least"):
        GMMPrior().fit(torch.zeros(10, 21, 3))


def test_vae_round_trip_of_a_data_pose_beats_noise_and_saves(tmp_path):
    from poseforge.backend.weights import load_model, save_model
    torch.set_num_threads(1)
    train = synthetic_poses(4000, 5)
    vae, metrics = train_vae(train, synthetic_poses(200, 6), seed=0, steps=400,
                             config=VAEConfig(latent_dim=8, hidden=64, dropout=0.0))
    real = synthetic_poses(100, 7)
    noise = random_poses(100, seed=8)
    with torch.no_grad():
        err_real = geodesic_deg(vae.reconstruct(real), axis_angle_to_matrix(real)).mean()
        err_noise = geodesic_deg(vae.reconstruct(noise), axis_angle_to_matrix(noise)).mean()
        assert float(err_real) < 0.5 * float(err_noise)
        assert float(vae.energy(real).mean()) < float(vae.energy(noise).mean())
    assert math.isfinite(metrics["test"]["recon_deg"]) and metrics["recon_var"] > 0
    save_model("vae", vae, vae.config, {"licence": "test"}, tmp_path)
    back = load_model("vae", VAEPrior, tmp_path)
    assert back.config == vae.config
    torch.testing.assert_close(back.energy(real), vae.energy(real))


def test_gmm_saves_and_loads_without_pickle(gmm, tmp_path):
    from poseforge.backend.weights import load_model, save_model
    save_model("gmm", gmm, gmm.config, {"licence": "test"}, tmp_path)
    back = load_model("gmm", GMMPrior, tmp_path)
    x = synthetic_poses(8, 9)
    torch.testing.assert_close(back.energy(x), gmm.energy(x))


@pytest.mark.skipif(not (WEIGHTS / "gmm.safetensors").is_file() or not (WEIGHTS / "vae.safetensors").is_file(),
                    reason="shipped gmm / vae weights absent (poseforge train baselines)")
def test_shipped_baselines_have_honest_model_cards():
    for name in ("gmm", "vae"):
        card = json.loads((WEIGHTS / f"{name}.json").read_text())
        assert card["licence"] == "CC BY-NC 4.0"
        for key in ("data", "data_hash", "split", "command", "seed", "steps", "metrics"):
            assert key in card, f"{name}.json lacks {key}"
        assert "/root/" not in json.dumps(card) and "/work/" not in json.dumps(card)
