"""`poseforge bench snap`: the pose-prior benchmark on a tiny synthetic cache, and the shipped
baselines on real test poses."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from poseforge.backend.bench import snap as bench
from poseforge.backend.bench.common import DataError, resolve_cache
from poseforge.backend.models.baselines import GMMConfig, GMMPrior, VAEConfig, VAEPrior
from poseforge.backend.rotations import axis_angle_to_quat

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "backend" / "weights"
REAL_CACHE = Path(os.environ.get("POSEFORGE_CACHE", Path.home() / ".cache" / "poseforge")) / "canonical"


def write_tiny_cache(folder: Path, seed: int = 0) -> Path:
    """A canonical cache in the format of ``poseforge data build``: 3 train clips, 2 test clips of
    smooth random motion (local quaternions w, x, y, z; root in metres)."""
    g = np.random.default_rng(seed)
    base = g.normal(0, 0.3, (22, 3))
    clips = {}
    for i, split in enumerate(["train", "train", "train", "test", "test"]):
        t = np.linspace(0, 2 * np.pi, 40)[:, None, None]
        aa = base + 0.3 * np.sin(t + g.uniform(0, 6, (1, 22, 3))) * g.uniform(0.2, 1, (1, 22, 3))
        quats = axis_angle_to_quat(torch.as_tensor(aa, dtype=torch.float32)).numpy()
        root = np.stack([np.zeros(40), np.full(40, 0.9), np.linspace(0, 1, 40)], 1).astype(np.float32)
        name = f"clip_{i:03d}"
        np.savez(folder / f"{name}.npz", rotations=quats.astype(np.float32), root=root, fps=30.0)
        clips[name] = {"file": f"{name}.npz", "source": f"synthetic/{name}.bvh", "preset": "test",
                       "frames": 40, "split": split, "labels": {}}
    index = {"version": 1, "fps": 30, "command": "synthetic", "data_hash": "synthetic-0",
             "clips": clips, "skipped": {}, "frames": {"train": 120, "test": 80}}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def tiny_priors(cache: Path) -> dict:
    """Every benchmark prior, small and (except the GMM) untrained: the protocol, not the numbers."""
    from poseforge.backend.bench.common import body_pose_aa, load_split
    from poseforge.backend.models.dposer import DPoser, DPoserConfig
    torch.manual_seed(0)
    gmm = GMMPrior(GMMConfig(n_components=2))
    gmm.fit(body_pose_aa(load_split(cache, "train")[0]), iters=20)
    dposer = DPoser(DPoserConfig(hidden=32, blocks=1, time_dim=16)).eval()
    return {"none": None, "gmm": gmm,
            "vae": VAEPrior(VAEConfig(latent_dim=4, hidden=16, dropout=0.0)).eval(),
            "dposer_truncated": bench.dposer_with_schedule(dposer, "truncated"),
            "dposer_uniform": bench.dposer_with_schedule(dposer, "uniform")}


def test_bench_on_a_tiny_cache_reports_every_prior_and_task(tmp_path):
    torch.set_num_threads(1)
    cache = write_tiny_cache(tmp_path)
    result = bench.run_bench(cache, "test", n_poses=6, seed=0, priors=tiny_priors(cache),
                             settings=bench.QUICK, log=lambda *_: None)
    text = json.dumps(result)  # JSON-serialisable
    assert set(result["priors"]) == set(bench.PRIORS)
    assert result["tasks"] == list(bench.TASKS) and len(bench.TASKS) == 6
    assert result["poses"] == 6 and result["split"] == "test" and result["data_hash"] == "synthetic-0"
    for name in bench.PRIORS:
        for task in bench.TASKS:
            assert math.isfinite(result["priors"][name][task]) and result["priors"][name][task] >= 0
        for task in bench.HIDDEN:
            assert math.isfinite(result["hidden_mpjpe"][name][task])
    assert result["prior_weights"]["none"] is None
    assert all(result["prior_weights"][n] > 0 for n in bench.PRIORS if n != "none")
    assert result["latency_ms"] is not None and result["latency_ms"] > 0
    # noise grows -> the noisy input gets worse; the table names every prior
    inp = result["input_mpjpe"]
    assert inp["denoise_0.02"] < inp["denoise_0.04"] < inp["denoise_0.1"]
    table = bench.markdown_table(result)
    assert all(f"| {n} |" in table for n in bench.PRIORS)
    assert str(tmp_path) not in text  # no machine path in the JSON


def test_hidden_joints_of_the_completion_tasks():
    names = lambda task: {bench.JOINT_NAMES[j] for j in bench.HIDDEN[task]}  # noqa: E731
    assert "left_knee" in names("complete_legs") and "left_wrist" not in names("complete_legs")
    assert "right_elbow" in names("complete_arms") and "pelvis" not in names("complete_arms")
    visible = set(bench.JOINT_NAMES) - names("complete_six_points")
    assert visible == {"pelvis", "head", "left_wrist", "right_wrist", "left_ankle", "right_ankle"}


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="index.json"):
        resolve_cache([tmp_path])
    cache = write_tiny_cache(tmp_path)
    with pytest.raises(bench.BenchError, match="split"):
        bench.run_bench(cache, "train", n_poses=4, priors={"none": None}, settings=bench.QUICK)
    with pytest.raises(bench.BenchError, match="weights"):
        bench.load_priors(tmp_path)  # no weights there


@pytest.mark.skipif(not (REAL_CACHE / "index.json").is_file(), reason="canonical cache absent (poseforge data build)")
@pytest.mark.skipif(not (WEIGHTS / "gmm.safetensors").is_file() or not (WEIGHTS / "vae.safetensors").is_file(),
                    reason="shipped gmm / vae weights absent (poseforge train baselines)")
def test_shipped_baselines_reduce_denoising_error_on_test_poses():
    """GMM and VAE, each with its weight tuned on TRAIN poses, beat no prior at sigma = 10 cm."""
    from poseforge.backend.bench.common import load_split
    from poseforge.backend.weights import load_model
    torch.set_num_threads(2)
    settings = bench.BenchSettings(iters=100)

    def poses(split, n):
        rot, _ = load_split(REAL_CACHE, split)
        return bench.clean_poses(rot[np.linspace(0, len(rot) - 1, n).round().astype(int)])

    def fit_error(prior, weight, local, pos, seed):
        target, w, _ = bench.make_task("denoise_0.1", pos, torch.Generator().manual_seed(seed))
        return bench.mpjpe_mm(bench.run_fit(prior, weight, local, target, w, settings, seed), pos)

    tune_local, tune_pos = poses("train", 16)
    test_local, test_pos = poses("test", 50)
    none = fit_error(None, 0.0, test_local, test_pos, 7)
    for name, cls in (("gmm", GMMPrior), ("vae", VAEPrior)):
        prior = load_model(name, cls)
        grid = [1e-4, 1e-3, 1e-2]
        weight = min(grid, key=lambda wt: fit_error(prior, wt, tune_local, tune_pos, 3))
        err = fit_error(prior, weight, test_local, test_pos, 7)
        assert err < none - 5.0, f"{name}: {err:.1f} mm vs {none:.1f} mm without a prior"
