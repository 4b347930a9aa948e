"""``poseforge train baselines``: fit the GMM and train the VPoser-style VAE pose priors.

Both are fitted on the TRAIN split of a canonical cache (``poseforge data build``) and saved with
:func:`..weights.save_model` as ``gmm`` and ``vae`` (safetensors + config + model card).  They are
the baselines of ``poseforge bench snap``; see :mod:`..models.baselines` for the models.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..bench.common import (body_pose_aa, data_hash, git_commit, load_split, portable_path,
                            resolve_cache)
from ..models.baselines import GMMConfig, GMMPrior, VAEConfig, VAEPrior
from ..rotations import axis_angle_to_matrix

LICENCE = "CC BY-NC 4.0"
LICENCE_NOTE = ("Trained on Bandai-Namco-Research-Motiondataset-2 (CC BY-NC 4.0): the weights "
                "inherit CC BY-NC 4.0 (non-commercial use only).")
#: Most poses used to fit the GMM (evenly spaced; consecutive mocap frames are near-duplicates).
GMM_MAX_POSES = 100_000
VAE_STEPS = 8_000
VAE_BATCH = 256
VAE_LR = 1e-3
VAE_KL_WEIGHT = 5e-3


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def random_poses(n: int, seed: int, max_angle: float = math.pi) -> torch.Tensor:
    """``(n, 21, 3)`` axis-angle poses with uniform random axes and angles in ``[0, max_angle]``."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 21, 3, generator=g), dim=-1)
    return axis * torch.rand(n, 21, 1, generator=g) * max_angle


def geodesic_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between rotation matrices ``(..., 3, 3)``."""
    cos = (((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))


def fit_gmm(train: torch.Tensor, test: torch.Tensor, seed: int, config: GMMConfig = GMMConfig()
            ) -> tuple[GMMPrior, dict]:
    """Fit :class:`GMMPrior` on ``train`` ``(N, 21, 3)``; metrics on train, test and random poses."""
    gmm = GMMPrior(config)
    sub = train[_evenly(len(train), GMM_MAX_POSES)]
    t0 = time.time()
    info = gmm.fit(sub, seed=seed, log=_log)
    with torch.no_grad():
        metrics = {
            "fit_poses": len(sub),
            "em_iterations": info["iterations"],
            "train_nll": float(gmm.energy(sub).mean()),
            "test_nll": float(gmm.energy(test).mean()),
            "random_pose_nll": float(gmm.energy(random_poses(1000, seed)).mean()),
            "fit_seconds": round(time.time() - t0, 1),
        }
    return gmm, metrics


@torch.no_grad()
def vae_metrics(vae: VAEPrior, poses: torch.Tensor) -> dict:
    """Mean per-joint geodesic round-trip error (degrees), KL (nats) and energy on ``poses``."""
    vae.eval()
    err, kl, en = [], [], []
    for chunk in poses.split(4096):
        mu, sigma = vae.encode(chunk)
        rec = vae.decode(mu)
        err.append(geodesic_deg(rec, axis_angle_to_matrix(chunk)).mean(-1))
        kl.append(0.5 * (mu ** 2 + sigma ** 2 - 1 - 2 * torch.log(sigma)).sum(-1))
        en.append(vae.energy(chunk))
    return {"recon_deg": float(torch.cat(err).mean()), "kl": float(torch.cat(kl).mean()),
            "energy": float(torch.cat(en).mean())}


def train_vae(train: torch.Tensor, test: torch.Tensor, seed: int, steps: int = VAE_STEPS,
              config: VAEConfig = VAEConfig()) -> tuple[VAEPrior, dict]:
    """Train :class:`VAEPrior` on ``train`` ``(N, 21, 3)`` (Adam, cosine decay, fixed KL weight).

    After training, ``recon_var`` is set to the mean squared rotation-matrix round-trip error per
    entry on (up to 50k) training poses, so :meth:`VAEPrior.energy` is a calibrated negative ELBO.
    """
    torch.manual_seed(seed)  # weight initialisation
    vae = VAEPrior(config)
    flat = train.reshape(len(train), -1)
    vae.pose_mean.copy_(flat.mean(0))
    vae.pose_std.copy_(flat.std(0).clamp_min(1e-3))
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(vae.parameters(), lr=VAE_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    t0 = time.time()
    vae.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (VAE_BATCH,), generator=gen)
        loss, parts = vae.loss(train[idx], VAE_KL_WEIGHT, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == 1:
            _log(f"VAE step {step}/{steps}: loss {float(loss.detach()):.4f} recon {parts['recon']:.4f} "
                 f"kl {parts['kl']:.2f} ({time.time() - t0:.0f} s)")
    vae.eval()
    with torch.no_grad():
        sub = train[_evenly(len(train), 50_000)]
        sq = []
        for chunk in sub.split(4096):
            rec = vae.reconstruct(chunk)
            sq.append(((axis_angle_to_matrix(chunk) - rec) ** 2).mean((-1, -2, -3)))
        vae.recon_var.copy_(torch.cat(sq).mean())
    metrics = {"steps": steps, "batch": VAE_BATCH, "lr": VAE_LR, "kl_weight": VAE_KL_WEIGHT,
               "train_seconds": round(time.time() - t0, 1), "recon_var": float(vae.recon_var),
               "train": vae_metrics(vae, sub), "test": vae_metrics(vae, test),
               "random_pose_energy": vae_metrics(vae, random_poses(1000, seed))["energy"]}
    return vae, metrics


def _train_frames(cache: Path) -> int | None:
    import json
    try:
        return int(json.loads((cache / "index.json").read_text())["frames"]["train"])
    except (KeyError, TypeError, ValueError):
        return None


def _card(model: str, cache: Path, seed: int, metrics: dict, config, **extra) -> dict:
    return {
        "model": model,
        "data": portable_path(cache),
        "data_hash": data_hash(cache),
        "split": "train (the clips the cache's index.json marks train: Bandai-2 takes not divisible by 5 and any other clips)",
        "train_frames": _train_frames(cache),
        "command": f"poseforge train baselines --data {portable_path(cache)} --seed {seed}",
        "seed": seed,
        "commit": git_commit(),
        "config": asdict(config),
        "metrics": metrics,
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
        "trained": time.strftime("%Y-%m-%d"),
        **extra,
    }


def cli_main(args) -> int:
    """Entry point of ``poseforge train baselines --data DIR [--out DIR] [--seed S]``."""
    from ..weights import save_model

    torch.set_num_threads(2)
    cache = resolve_cache(args.data)
    out = Path(args.out) if args.out is not None else None
    seed = int(args.seed)
    steps = int(getattr(args, "steps", None) or VAE_STEPS)
    _log(f"loading the train and test splits of {cache}")
    train = torch.from_numpy(body_pose_aa(load_split(cache, "train")[0]))
    test_all = torch.from_numpy(body_pose_aa(load_split(cache, "test")[0]))
    test = test_all[_evenly(len(test_all), 20_000)]
    _log(f"{len(train)} train poses, {len(test_all)} test poses (metrics on {len(test)})")

    gmm, gm = fit_gmm(train, test, seed)
    _log(f"GMM: {gm}")
    save_model("gmm", gmm, gmm.config, _card(
        "gmm", cache, seed, gm, gmm.config, steps=gm["em_iterations"],
        method="Gaussian mixture pose prior of SMPLify (Bogo et al. 2016, sec. 3.2), 8 full-covariance "
               "components over the 63-D axis-angle body pose, fitted by EM; energy = exact negative "
               "log-likelihood (log-sum-exp)."), out)

    vae, vm = train_vae(train, test, seed, steps=steps)
    _log(f"VAE: {vm}")
    save_model("vae", vae, vae.config, _card(
        "vae", cache, seed, vm, vae.config, steps=steps,
        method="VPoser-style VAE (Pavlakos et al. 2019, sec. 3.3): MLP encoder axis-angle -> N(mu, sigma) "
               "in R^32, MLP decoder -> 6D rotations; energy = negative ELBO at the posterior mean."), out)
    _log("done")
    return 0
