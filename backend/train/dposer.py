"""Training the DPoser score model: ``poseforge train dposer --data DIR [--data DIR2] --out DIR``.

``--data`` is a canonical cache folder (has ``index.json``, made by ``poseforge data build``) or a
folder of BVH clips (converted first into a cache under ``$POSEFORGE_CACHE``). Only the "train"
split is used for training (DESIGN.md: a Bandai-2 clip whose take number is divisible by 5 is in
the test split); the test split gives the held-out denoising score-matching loss in the card.

Method (DPoser, arXiv 2312.05541, sec. 3.1): denoising score matching on the sub-VP SDE
(:func:`poseforge.backend.diffusion.dsm_loss`) over normalised body poses, left/right mirrored
copies added, AdamW with warm-up and cosine decay, an exponential moving average (EMA) of the
weights, which is what is saved. A checkpoint (safetensors + JSON, no pickle) is written every few
minutes to ``<out>/dposer.ckpt.safetensors`` so ``--resume`` continues an interrupted run.

Defaults in :class:`TrainSettings` are those of the shipped weights; ``--config`` or the
environment variable ``POSEFORGE_DPOSER_CONFIG`` (a JSON object) overrides model or training
fields, e.g.
``{"representation": "rot6d", "hidden": 512, "batch": 256}``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion import dsm_loss
from ..models.dposer import DPoser, DPoserConfig
from ..rotations import quat_to_axis_angle
from ..skeleton import MIRROR
from ..weights import WeightsError, save_model
from .common import (TrainError, build_settings, ema_update, make_ema, parse_overrides,
                     pick_device, portable_command, warmup_cosine_lr)

__all__ = ["TrainError", "TrainSettings", "split_overrides", "resolve_caches", "train", "cli_main"]

CKPT_NAME = "dposer.ckpt"


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (model architecture lives in :class:`DPoserConfig`)."""
    steps: int = 9000
    batch: int = 512
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 500
    ema: float = 0.999
    grad_clip: float = 1.0
    every: int = 1              # keep every k-th frame of the 30 fps clips
    mirror: bool = True         # add left/right mirrored poses
    checkpoint_minutes: float = 3.0
    threads: int = 1            # on a shared 2-core machine one thread trains faster than two


def split_overrides(over: dict) -> tuple[DPoserConfig, TrainSettings]:
    """Build the model config and train settings from defaults plus ``over`` (unknown keys raise)."""
    return build_settings(over, DPoserConfig, TrainSettings, "DPoser")


# --- data ---------------------------------------------------------------------------------------

def resolve_caches(data_dirs) -> list[Path]:
    """Canonical cache folders for ``--data`` arguments; BVH folders are converted first (once)
    into ``$POSEFORGE_CACHE/canonical-<hash of the folder paths>``."""
    from ..cli import default_cache
    from ..data.dataset import build_cache

    caches, bvh = [], []
    for d in data_dirs:
        d = Path(d).expanduser()
        if (d / "index.json").is_file():
            caches.append(d)
        elif d.is_dir():
            bvh.append(d.resolve())
        else:
            raise TrainError(f"--data {d}: not a folder")
    if bvh:
        key = hashlib.sha256("\n".join(sorted(map(str, bvh))).encode()).hexdigest()[:12]
        out = default_cache() / f"canonical-{key}"
        if not (out / "index.json").is_file():
            print(f"converting BVH clips of {', '.join(map(str, bvh))} into {out}", flush=True)
            build_cache(bvh, out, progress=lambda n, tot, clip: (n % 200 == 0 or n == tot) and print(f"  {n}/{tot} clips", flush=True))
        caches.append(out)
    return caches


def mirror_body_pose(aa: np.ndarray) -> np.ndarray:
    """Left/right mirror of ``(N, 21, 3)`` body axis-angle (the plane X = 0 of the canonical body):
    joints swap sides and each rotation vector ``(x, y, z)`` becomes ``(x, -y, -z)``."""
    perm = [MIRROR[j] - 1 for j in range(1, 22)]
    out = aa[:, perm].copy()
    out[..., 1:] *= -1
    return out


def load_body_poses(caches, split: str, every: int = 1) -> tuple[np.ndarray, dict]:
    """Body axis-angle ``(N, 21, 3)`` float32 of a split from several caches, and a description."""
    from ..data.dataset import load_index, load_poses

    parts, desc = [], []
    for c in caches:
        idx = load_index(c)
        rots, _ = load_poses(c, split, every=every)
        if len(rots):
            parts.append(quat_to_axis_angle(torch.from_numpy(rots[:, 1:])).numpy().astype(np.float32))
        sources = sorted({info.get("preset", "?") for info in idx["clips"].values()})
        desc.append({"cache": c.name, "data_hash": idx.get("data_hash", ""), "presets": sources,
                     "clips": {s: sum(1 for i in idx["clips"].values() if i["split"] == s) for s in ("train", "test")},
                     "frames": idx.get("frames", {})})
    if not parts:
        return np.zeros((0, 21, 3), np.float32), {"caches": desc}
    return np.concatenate(parts), {"caches": desc}


# --- checkpoints --------------------------------------------------------------------------------

def _save_checkpoint(path: Path, model, ema, opt, step: int, gen: torch.Generator, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().contiguous().clone() for k, v in ema.state_dict().items()})
    state = opt.state_dict()
    for pid, st in state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" else v.contiguous()
    tensors["rng"] = gen.get_state()
    info = dict(meta, step=step, param_groups=state["param_groups"])
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"json": json.dumps(info)})
    tmp.replace(path)


def _load_checkpoint(path: Path, model, ema, opt, gen: torch.Generator, meta: dict) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads(f.metadata()["json"])
        tensors = load_file(str(path))
    except Exception as exc:
        raise TrainError(f"cannot read checkpoint {path}: {exc}") from exc
    def same(key):  # the step budget may change between runs
        a, b = dict(info.get(key) or {}), dict(meta.get(key) or {})
        a.pop("steps", None), b.pop("steps", None)
        return a == b

    for key in ("config", "settings"):
        if not same(key):
            raise TrainError(f"checkpoint {path} was made with another {key}: {info.get(key)} != {meta.get(key)}")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    st: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            st.setdefault(int(pid), {})[name] = v.reshape(()) if name == "step" else v
    opt.load_state_dict({"state": st, "param_groups": info["param_groups"]})
    gen.set_state(tensors["rng"])
    return int(info["step"])


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def heldout_dsm(model: DPoser, body_aa: torch.Tensor, seed: int = 1234, repeats: int = 4) -> float:
    """Held-out denoising score-matching loss (same weighting as training, fixed seed)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = model.encode(body_aa)
    tot = 0.0
    for _ in range(repeats):
        for chunk in torch.split(x, 4096):
            tot += float(dsm_loss(model.score, chunk, model.sde, g)) * len(chunk)
    return tot / (repeats * len(x))


# --- training -----------------------------------------------------------------------------------

def train(caches, out: Path, config: DPoserConfig, settings: TrainSettings, seed: int = 0,
          device: str = "cpu", resume: bool = False, command: str = "", log=print) -> tuple[DPoser, dict]:
    """Train DPoser on the train split of ``caches``; checkpoint to ``out``; return ``(EMA model, card)``."""
    torch.set_num_threads(max(1, settings.threads))
    t_start = time.time()
    train_aa, data_desc = load_body_poses(caches, "train", settings.every)
    if len(train_aa) == 0:
        raise TrainError("the train split is empty: check --data")
    test_aa, _ = load_body_poses(caches, "test", 10)
    if settings.mirror:
        train_aa = np.concatenate([train_aa, mirror_body_pose(train_aa)])
    log(f"train poses {len(train_aa)} (mirrored: {settings.mirror}), held-out poses {len(test_aa)}")

    torch.manual_seed(seed)
    model = DPoser(config).to(device)
    model.set_normalisation(torch.from_numpy(train_aa[:: max(1, len(train_aa) // 200000)]))
    with torch.no_grad():
        data = model.encode(torch.from_numpy(train_aa).to(device))  # (N, D) normalised
    ema = make_ema(model)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    meta = {"config": dataclasses.asdict(config), "settings": dataclasses.asdict(settings), "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{CKPT_NAME}.safetensors"
    step = 0
    if resume and ckpt.is_file():
        step = _load_checkpoint(ckpt, model, ema, opt, gen, meta)
        log(f"resumed from {ckpt} at step {step}")

    def lr_at(s: int) -> float:
        return warmup_cosine_lr(s, settings.lr, settings.warmup, settings.steps)

    model.train()
    last_ckpt = last_log = time.time()
    run_loss, n_loss, log_step = 0.0, 0, step
    while step < settings.steps:
        idx = torch.randint(0, len(data), (settings.batch,), generator=gen)
        x0 = data[idx.to(device)]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = dsm_loss(model.score, x0, model.sde, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        step += 1
        ema_update(ema, model, step, settings.ema)
        run_loss += float(loss.detach())
        n_loss += 1
        now = time.time()
        if now - last_log > 30 or step == settings.steps:
            log(f"step {step}/{settings.steps} loss {run_loss / n_loss:.4f} "
                f"lr {lr_at(step):.2e} {(step - log_step) / (now - last_log):.2f} steps/s")
            run_loss, n_loss, last_log, log_step = 0.0, 0, now, step
        if now - last_ckpt > settings.checkpoint_minutes * 60 or step == settings.steps:
            _save_checkpoint(ckpt, model, ema, opt, step, gen, meta)
            last_ckpt = now

    ema.eval()
    metrics = {}
    if len(test_aa):
        metrics["heldout_dsm_loss"] = round(heldout_dsm(ema, torch.from_numpy(test_aa).to(device)), 5)
        metrics["heldout_poses"] = int(len(test_aa))
    if len(test_aa):
        metrics["heldout_fit"] = measure_prior(ema.cpu(), test_aa)
        ema.to(device)
    metrics["train_dsm_loss_last"] = round(heldout_dsm(ema, torch.from_numpy(train_aa[:: max(1, len(train_aa) // 5000)]).to(device)), 5)
    card = {
        "model": "DPoser score model (sub-VP SDE, MLP with time embedding)",
        "paper": "Lu et al., DPoser: Diffusion Model as Robust 3D Human Pose Prior, arXiv 2312.05541",
        "input": f"21 non-root joint rotations of the canonical body ({config.representation}), "
                 "normalised by the training mean/std stored in the weights",
        "config": dataclasses.asdict(config),
        "training": dict(dataclasses.asdict(settings), seed=seed, steps_done=step,
                         wall_time_s=round(time.time() - t_start, 1), device=device,
                         threads=settings.threads, torch=torch.__version__, python=platform.python_version()),
        "data": {"description": "Bandai-Namco-Research-Motiondataset-2 train split plus the CMU dance "
                                "clips (salsa, martial arts, Indian dance), retargeted to the canonical "
                                "body at 30 fps; left/right mirrored copies added",
                 "split_rule": "a Bandai-2 clip (dataset-2_<content>_<style>_<take>) is in the test split "
                               "when its take number is divisible by 5; all else (and every CMU clip) trains",
                 "train_poses": int(len(train_aa)), **data_desc,
                 "data_hash": ";".join(d["data_hash"] for d in data_desc["caches"])},
        "command": command,
        "metrics": metrics,
        "licence": "CC BY-NC 4.0 (trained on Bandai-Namco-Research-Motiondataset-2)",
        "code_licence": "the PoseForge code is licensed separately (see blender_manifest.toml)",
    }
    return ema, card


def cli_main(args) -> int:
    """``poseforge train dposer``: train, checkpoint, then save weights + model card to ``--out``."""
    from ..data.dataset import DatasetError

    try:
        config, settings = split_overrides(parse_overrides(getattr(args, "config", None), "POSEFORGE_DPOSER_CONFIG"))
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=int(args.steps))
        device = pick_device(args.device)
        caches = resolve_caches(args.data)
        out = Path(args.out).expanduser() if args.out is not None else None
        from ..weights import default_weights_dir
        out = out or default_weights_dir()
        env = os.environ.get("POSEFORGE_DPOSER_CONFIG", "").strip()
        command = ("" if not env else f"POSEFORGE_DPOSER_CONFIG='{env}' ") + portable_command()
        print(f"DPoser training: {dataclasses.asdict(config)} {dataclasses.asdict(settings)} seed {args.seed} "
              f"device {device}", flush=True)
        model, card = train(caches, out, config, settings, seed=args.seed, device=device,
                            resume=args.resume, command=command, log=lambda m: print(m, flush=True))
        path = save_model("dposer", model.to("cpu"), config, card, out)
        print(f"saved {path} and dposer.json; held-out DSM loss {card['metrics'].get('heldout_dsm_loss')}", flush=True)
    except (TrainError, WeightsError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


# --- measurement: denoising by fitting ----------------------------------------------------------

def denoise_fit_mpjpe(prior, body_aa: torch.Tensor, noise_m: float = 0.04, prior_weight: float = 0.1,
                      iters: int = 150, seed: int = 0, visible=None) -> float:
    """MPJPE (mm) of poses fitted to noisy joint positions under ``prior``.

    Protocol (DESIGN.md "Pose prior", denoising): each clean pose (root at the origin, facing +Z)
    gives 22 world joint positions; Gaussian noise of ``noise_m`` metres per coordinate is
    added; :func:`poseforge.backend.tasks.fit.fit_poses` fits all 22 joints from the T-pose with
    the prior (``None``: no prior); the error is against the clean positions.

    Args:
        prior: a PosePrior or ``None``; body_aa: ``(B, 21, 3)`` clean test poses.
        visible: joint indices given as targets (default all 22: denoising; fewer: completion).
    Returns:
        mean per-joint position error in millimetres.
    """
    from ..rotations import axis_angle_to_matrix
    from ..tasks.fit import fast_forward_kinematics, fit_poses

    g = torch.Generator().manual_seed(seed)
    b = len(body_aa)
    aa = torch.cat([torch.zeros(b, 1, 3), body_aa.float()], dim=1)
    clean, _ = fast_forward_kinematics(axis_angle_to_matrix(aa), torch.zeros(b, 3))
    noisy = clean + noise_m * torch.randn(clean.shape, generator=g)
    init = torch.eye(3).expand(b, 22, 3, 3).clone()
    w = torch.ones(b, 22)
    if visible is not None:
        w = torch.zeros(b, 22)
        w[:, list(visible)] = 1.0
    res = fit_poses(init, torch.zeros(b, 3), target_pos=noisy, pos_weight=w, prior=prior,
                    prior_weight=prior_weight if prior is not None else 0.0, iters=iters, lr=0.05,
                    optimise_root=True, generator=g)
    fitted, _ = fast_forward_kinematics(res.local, res.root)
    return float((fitted - clean).norm(dim=-1).mean() * 1000)


def measure_prior(model, test_aa: np.ndarray, n: int = 100, prior_weight: float = 0.1) -> dict:
    """The model-card measurements on ``n`` evenly spaced held-out poses: MPJPE (mm) after
    fitting with and without the prior, for denoising (0.04 m noise on all 22 joints) and
    six-point completion (pelvis, head, wrists, ankles exact, the rest free)."""
    idx = np.linspace(0, len(test_aa) - 1, min(n, len(test_aa))).astype(int)
    body = torch.from_numpy(np.asarray(test_aa)[idx]).float()
    six = [0, 15, 20, 21, 7, 8]
    out = {"poses": int(len(body)), "prior_weight": prior_weight, "fit_iters": 150}
    for name, prior in (("no_prior", None), ("dposer", model)):
        out[f"denoise_0.04m_mpjpe_mm_{name}"] = round(denoise_fit_mpjpe(prior, body, 0.04, prior_weight), 2)
        out[f"six_points_mpjpe_mm_{name}"] = round(denoise_fit_mpjpe(prior, body, 0.0, prior_weight, visible=six), 2)
    return out
