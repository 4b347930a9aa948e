"""``poseforge bench snap``: pose-prior benchmark (denoising and completion MPJPE, snap latency).

Protocol (DESIGN.md "Benchmarks", pose prior; the tasks of DPoser, Lu et al., arXiv 2312.05541,
sec. 4, on the canonical body instead of SMPL):

* Poses: ``N`` evenly spaced frames of the split (default 500 of the test split), pelvis moved
  to the origin, root orientation kept.  Joint positions come from forward kinematics of the
  canonical body (rest offsets of :mod:`..skeleton`, metres, Y up).
* Tasks: *denoising* - Gaussian noise of sigma 0.02 / 0.04 / 0.1 m added to every coordinate of
  the 22 joint positions, all joints fitted to the noisy positions; *completion* - only the
  visible joints' true positions are fitted: legs hidden, arms hidden, or only pelvis + head +
  wrists + ankles given (six points, as in AutoPosing tools).
* Fitting: :func:`..tasks.fit.fit_poses` from the same start for every prior - the body in the
  rest T-pose, the root at the origin with its true orientation (as a rig the animator posed) -
  with root rotation and translation optimised too; the same iterations and learning rate for
  every prior.  Priors: none, GMM, VPoser-style VAE, DPoser with the truncated timestep schedule,
  DPoser with uniform t.  The prior weight is tuned once per prior on a few TRAIN poses (all
  tasks together, a log grid refined once), never on the evaluated split; the chosen weights and
  the tuning scores are written to the JSON.
* Metric: MPJPE (mean per-joint position error) in mm over all 22 joints against the clean pose;
  for completion also over the hidden joints only.
* Latency: wall time of :func:`..tasks.snap.snap_poses` on one pose with the DPoser prior,
  median of 20 runs, 2 torch threads.

Prints a markdown table (rows = priors, columns = tasks) and writes JSON.
"""
from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..rotations import quat_to_matrix
from ..skeleton import BODY_PARTS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from ..tasks.fit import fast_forward_kinematics, fit_poses
from .common import data_hash, git_commit, load_split, portable_path, resolve_cache

DENOISE_SIGMAS = (0.02, 0.04, 0.1)
LEGS = BODY_PARTS["left_leg"] + BODY_PARTS["right_leg"]
ARMS = BODY_PARTS["left_arm"] + BODY_PARTS["right_arm"]
SIX_POINTS = tuple(JOINT_INDEX[n] for n in ("pelvis", "head", "left_wrist", "right_wrist",
                                            "left_ankle", "right_ankle"))
#: completion task -> hidden joints
HIDDEN: dict[str, tuple[int, ...]] = {
    "complete_legs": tuple(sorted(LEGS)),
    "complete_arms": tuple(sorted(ARMS)),
    "complete_six_points": tuple(j for j in range(NUM_JOINTS) if j not in SIX_POINTS),
}
TASKS: tuple[str, ...] = tuple(f"denoise_{s:g}" for s in DENOISE_SIGMAS) + tuple(HIDDEN)
TASK_TITLES = {"denoise_0.02": "denoise 2 cm", "denoise_0.04": "denoise 4 cm",
               "denoise_0.1": "denoise 10 cm", "complete_legs": "legs hidden",
               "complete_arms": "arms hidden", "complete_six_points": "6 points"}
PRIORS: tuple[str, ...] = ("none", "gmm", "vae", "dposer_truncated", "dposer_uniform")
#: prior-weight grid (coarse, one value per decade); refined once at half decades around the best.
WEIGHT_GRID = tuple(10.0 ** k for k in range(-6, 2))


class BenchError(RuntimeError):
    """The benchmark cannot run (missing weights, bad arguments); the message says what to do."""


@dataclass(frozen=True)
class BenchSettings:
    """Fitting and tuning settings (the same for every prior).

    Attributes:
        iters: Adam steps of :func:`fit_poses`.
        lr: its learning rate.
        tune_poses: TRAIN poses used to choose each prior's weight.
        latency_runs: snap runs timed (the median is reported); 0 skips the latency.
        refine: refine the weight grid at half decades around the coarse best.
        grid: the coarse prior-weight grid.
    """
    iters: int = 200
    lr: float = 0.05
    tune_poses: int = 32
    latency_runs: int = 20
    refine: bool = True
    grid: tuple[float, ...] = WEIGHT_GRID


QUICK = BenchSettings(iters=20, tune_poses=4, latency_runs=2, refine=False, grid=(1e-4, 1e-2, 1.0))


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------

def clean_poses(rotations: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Quaternions ``(N, 22, 4)`` -> local rotation matrices ``(N, 22, 3, 3)`` and joint positions
    ``(N, 22, 3)`` (metres, Y up) with the pelvis at the origin and the root orientation kept."""
    local = quat_to_matrix(torch.as_tensor(rotations, dtype=torch.float32))
    pos, _ = fast_forward_kinematics(local, torch.zeros(len(local), 3))
    return local, pos


def make_task(task: str, clean_pos: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Targets of one task.

    Args:
        task: one of :data:`TASKS`.
        clean_pos: ``(B, 22, 3)`` clean joint positions, metres.
        generator: draws the denoising noise.
    Returns:
        ``(target_pos (B, 22, 3), pos_weight (B, 22), hidden joints)``.
    """
    b = clean_pos.shape[0]
    if task.startswith("denoise_"):
        sigma = float(task.split("_", 1)[1])
        noise = torch.randn(clean_pos.shape, generator=generator) * sigma
        return clean_pos + noise, torch.ones(b, NUM_JOINTS), ()
    if task in HIDDEN:
        w = torch.ones(b, NUM_JOINTS)
        w[:, list(HIDDEN[task])] = 0.0
        return clean_pos.clone(), w, HIDDEN[task]
    raise BenchError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")


def initial_pose(clean_local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The start of every fit: rest T-pose body, true root orientation, pelvis at the origin."""
    init = torch.eye(3).expand(clean_local.shape[0], NUM_JOINTS, 3, 3).clone()
    init[:, 0] = clean_local[:, 0]
    return init, torch.zeros(clean_local.shape[0], 3)


# No data-only refinement after Adam: on denoising it would pull the pose back onto the noisy
# targets and undo the prior; the benchmark compares the priors, so every fit stops after Adam.
_NO_POLISH = {"polish_iters": 0} if "polish_iters" in inspect.signature(fit_poses).parameters else {}


def run_fit(prior, weight: float, clean_local: torch.Tensor, target: torch.Tensor,
            pos_weight: torch.Tensor, settings: BenchSettings, seed: int) -> torch.Tensor:
    """Fit the poses with one prior; returns the fitted joint positions ``(B, 22, 3)``."""
    init_local, init_root = initial_pose(clean_local)
    res = fit_poses(init_local, init_root, target_pos=target, pos_weight=pos_weight,
                    prior=prior, prior_weight=weight if prior is not None else 0.0,
                    keep_weight=0.0, iters=settings.iters, lr=settings.lr, optimise_root=True,
                    generator=torch.Generator().manual_seed(seed), **_NO_POLISH)
    pos, _ = fast_forward_kinematics(res.local, res.root)
    return pos


def mpjpe_mm(pred: torch.Tensor, true: torch.Tensor, joints=None) -> float:
    """Mean per-joint position error in millimetres over ``joints`` (default all) and poses."""
    d = (pred - true).norm(dim=-1)
    if joints is not None:
        d = d[:, list(joints)]
    return float(d.mean()) * 1000.0


# --------------------------------------------------------------------------------------------
# priors
# --------------------------------------------------------------------------------------------

def load_priors(weights_dir: Path | None = None) -> dict:
    """The benchmark's priors from the weights folder (default: the shipped weights).

    Returns:
        ``{name: PosePrior | None}`` for every name of :data:`PRIORS` (``none`` -> ``None``).
    Raises:
        BenchError: a weights file is missing (the message names the training command).
    """
    from ..models.baselines import GMMPrior, VAEPrior
    from ..models.dposer import DPoser
    from ..weights import WeightsError, load_model

    priors: dict = {"none": None}
    for name, cls, cmd in (("gmm", GMMPrior, "poseforge train baselines"),
                           ("vae", VAEPrior, "poseforge train baselines")):
        try:
            priors[name] = load_model(name, cls, weights_dir)
        except WeightsError as exc:
            raise BenchError(f"{exc}; make them with `{cmd} --data DIR`") from exc
    try:
        dposer = load_model("dposer", DPoser, weights_dir)
    except WeightsError as exc:
        raise BenchError(f"{exc}; make them with `poseforge train dposer --data DIR`") from exc
    priors["dposer_truncated"] = dposer_with_schedule(dposer, "truncated")
    priors["dposer_uniform"] = dposer_with_schedule(dposer, "uniform")
    for p in priors.values():
        if p is not None:
            p.eval()
    return priors


def weights_fingerprints(weights_dir: Path | None = None) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each shipped weights file the benchmark loads."""
    import hashlib

    from ..weights import default_weights_dir
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    return {name: hashlib.sha256((folder / f"{name}.safetensors").read_bytes()).hexdigest()[:16]
            for name in ("gmm", "vae", "dposer")}


def dposer_with_schedule(dposer, schedule: str):
    """A view of a DPoser prior whose energy uses ``schedule`` ("truncated" or "uniform")."""
    import copy
    view = copy.copy(dposer)  # shallow: shares the network, own schedule attribute
    view.schedule = schedule
    return view


# --------------------------------------------------------------------------------------------
# tuning, evaluation, latency
# --------------------------------------------------------------------------------------------

def _task_batch(clean_local, clean_pos, seed: int):
    """All tasks stacked into one batch (fits are independent per pose)."""
    g = torch.Generator().manual_seed(seed)
    targets, weights = [], []
    for task in TASKS:
        t, w, _ = make_task(task, clean_pos, g)
        targets.append(t)
        weights.append(w)
    n = len(TASKS)
    return (clean_local.repeat(n, 1, 1, 1), clean_pos.repeat(n, 1, 1),
            torch.cat(targets), torch.cat(weights))


def tune_weight(prior, clean_local, clean_pos, settings: BenchSettings, seed: int, log=print) -> tuple[float, dict]:
    """Choose a prior's weight: the grid value with the lowest MPJPE, averaged over all tasks, on
    the given (TRAIN) poses; then once more at half decades around it when ``settings.refine``.

    Returns:
        ``(weight, {weight: mean MPJPE in mm})``.
    """
    local, pos, target, w = _task_batch(clean_local, clean_pos, seed)
    scores: dict[float, float] = {}

    def score(weight: float) -> float:
        if weight not in scores:
            pred = run_fit(prior, weight, local, target, w, settings, seed)
            scores[weight] = mpjpe_mm(pred, pos)
        return scores[weight]

    for weight in settings.grid:
        score(weight)
    best = min(scores, key=scores.get)
    if settings.refine:
        for weight in (best / math.sqrt(10), best * math.sqrt(10)):
            score(weight)
        best = min(scores, key=scores.get)
    log(f"  weight {best:.3g}: {scores[best]:.1f} mm on the tuning poses")
    return best, scores


def measure_latency(prior, clean_local: torch.Tensor, runs: int) -> dict:
    """Median wall time (ms) of :func:`..tasks.snap.snap_poses` on one pose with ``prior``."""
    from ..tasks import snap

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        times = []
        for i in range(runs + 1):  # one warm-up run
            t0 = time.perf_counter()
            _snap_one(snap, prior, clean_local[:1], seed=i)
            if i > 0:
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(threads)
    return {"median": float(np.median(times)), "min": float(np.min(times)),
            "runs": runs, "threads": 2, "poses": 1}


def _snap_one(snap, prior, local, seed):
    """One "Snap to plausible pose" of a single pose (default strength and iterations) with the
    six points (pelvis, head, wrists, ankles) pinned."""
    pinned = torch.zeros(NUM_JOINTS, dtype=torch.bool)
    pinned[list(SIX_POINTS)] = True
    return snap.snap_poses(local, torch.zeros(1, 3), pinned, prior=prior,
                           generator=torch.Generator().manual_seed(seed))


def run_bench(cache: Path, split: str = "test", n_poses: int = 500, seed: int = 0,
              priors: dict | None = None, settings: BenchSettings = BenchSettings(),
              log=print) -> dict:
    """Run the whole benchmark; returns the JSON-ready result (see the module docstring).

    Args:
        cache: canonical cache folder (``poseforge data build``).
        split: ``"test"`` or ``"all"`` (the poses evaluated); weights are tuned on ``train``.
        n_poses: evaluated poses, evenly spaced over the split.
        seed: seeds the noise and the stochastic priors.
        priors: ``{name: prior}`` to compare (default: :func:`load_priors`).
        settings: fitting / tuning settings (:data:`QUICK` for smoke tests).
    Raises:
        BenchError, DataError: bad arguments, missing weights or data.
    """
    if split not in ("test", "all"):
        raise BenchError(f"--split must be 'test' or 'all', got {split!r}")
    if n_poses < 1:
        raise BenchError(f"--poses must be positive, got {n_poses}")
    t_start = time.time()
    weights_sha = None
    if priors is None:
        priors = load_priors()
        weights_sha = weights_fingerprints()
    rot, _ = load_split(cache, split)
    idx = np.unique(np.linspace(0, len(rot) - 1, min(n_poses, len(rot))).round().astype(np.int64))
    clean_local, clean_pos = clean_poses(rot[idx])
    train_rot, _ = load_split(cache, "train")
    tidx = np.unique(np.linspace(0, len(train_rot) - 1, min(settings.tune_poses, len(train_rot)))
                     .round().astype(np.int64))
    tune_local, tune_pos = clean_poses(train_rot[tidx])
    log(f"{len(idx)} {split} poses; prior weights tuned on {len(tidx)} train poses")

    # Latency first: it is quick, and a broken snap path fails before the long fits.
    latency = None
    snap_prior = priors.get("dposer_truncated")
    if settings.latency_runs > 0 and snap_prior is not None:
        latency = measure_latency(snap_prior, clean_local, settings.latency_runs)
        log(f"snap latency: {latency['median']:.1f} ms (median of {latency['runs']})")

    weights: dict[str, float | None] = {}
    tuning: dict[str, dict] = {}
    for name, prior in priors.items():
        if prior is None:
            weights[name] = None
            continue
        log(f"tuning the {name} weight")
        weights[name], scores = tune_weight(prior, tune_local, tune_pos, settings, seed + 1, log=log)
        tuning[name] = {f"{w:.3g}": round(s, 2) for w, s in sorted(scores.items())}

    results = {name: {} for name in priors}
    hidden = {name: {} for name in priors}
    inputs = {}
    for ti, task in enumerate(TASKS):
        target, w, hid = make_task(task, clean_pos, torch.Generator().manual_seed(seed * 1000 + ti))
        if not hid:
            inputs[task] = round(mpjpe_mm(target, clean_pos), 2)
        for name, prior in priors.items():
            t0 = time.time()
            pred = run_fit(prior, weights[name] or 0.0, clean_local, target, w, settings, seed)
            results[name][task] = round(mpjpe_mm(pred, clean_pos), 2)
            if hid:
                hidden[name][task] = round(mpjpe_mm(pred, clean_pos, hid), 2)
            log(f"{task:>20} {name:>17}: {results[name][task]:7.1f} mm ({time.time() - t0:.1f} s)")

    return {
        "split": split,
        "poses": int(len(idx)),
        "seed": seed,
        "tasks": list(TASKS),
        "priors": results,
        "hidden_mpjpe": {n: v for n, v in hidden.items()},
        "input_mpjpe": inputs,
        "prior_weights": weights,
        "tuning": {"split": "train", "poses": int(len(tidx)), "criterion": "mean MPJPE (mm) over all tasks",
                   "scores": tuning},
        "fit": {"iters": settings.iters, "lr": settings.lr, "optimiser": "Adam, cosine decay",
                "init": "rest T-pose body, true root orientation, pelvis at the origin",
                "optimise_root": True, "data_only_polish": False},
        "latency_ms": None if latency is None else round(latency["median"], 2),
        "latency": latency,
        "weights_sha256": weights_sha,
        "commit": git_commit(),
        "data": portable_path(cache),
        "data_hash": data_hash(cache),
        "seconds": round(time.time() - t_start, 1),
    }


def markdown_table(result: dict) -> str:
    """The benchmark table: rows = priors, columns = tasks; MPJPE in mm over all joints, with the
    hidden joints' MPJPE in parentheses for completion tasks."""
    tasks = result["tasks"]
    head = "| prior | " + " | ".join(TASK_TITLES.get(t, t) for t in tasks) + " |"
    lines = [head, "|---" * (len(tasks) + 1) + "|"]
    if result.get("input_mpjpe"):
        lines.append("| (noisy input) | " + " | ".join(
            f"{result['input_mpjpe'][t]:.1f}" if t in result["input_mpjpe"] else "" for t in tasks) + " |")
    for name, row in result["priors"].items():
        cells = []
        for t in tasks:
            cell = f"{row[t]:.1f}"
            if t in result["hidden_mpjpe"].get(name, {}):
                cell += f" ({result['hidden_mpjpe'][name][t]:.1f})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cli_main(args) -> int:
    """Entry point of ``poseforge bench snap --data DIR --split test|all --out FILE.json``."""
    torch.set_num_threads(2)
    cache = resolve_cache(args.data)
    settings = QUICK if getattr(args, "quick", False) else BenchSettings()
    result = run_bench(cache, args.split, int(args.poses), int(args.seed), settings=settings)
    table = markdown_table(result)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
