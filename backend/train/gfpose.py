"""Training the GFPose window model: ``poseforge train gfpose --data DIR [--data DIR2] --out DIR``.

``--data`` is a canonical cache (``poseforge data build``) or a BVH folder (converted first, as for
DPoser).  Training uses the "train" split minus a validation carve-out (one clip in ten, by a
hash of its name), so choices are never made on the test split that the benchmark reports.

Method: GFPose (Ci et al. 2023, arXiv 2212.08641) trains one conditional score network for every
task by masking its condition hierarchically (section 3.3).  Here each training sample is a
window of 8 to 65 frames cut from a clip at random, left/right mirrored half of the time, with
one of these key patterns:

* LaFAN1-like: 1-10 dense context frames at the start and the last frame keyed;
* sparse keys: first and last frame keyed plus 0-3 keyed frames in between;
* either of these plus partial keys: on 1-3 frames only a body part (an arm, a leg, both arms,
  the torso and head, or random joints) is keyed, with the root keyed or not.

Loss: the x0-prediction form of denoising score matching on the sub-VP SDE (Song et al. 2021):
``|| D(x_t, t | keys) - x0 ||^2`` on the un-keyed features of the normalised residual over the
interpolation, plus a forward-kinematics term on the un-keyed frames' joint positions (in units
of 10 cm, plus z-normalised per joint coordinate by the training windows' spread, as the LaFAN1
L2P metric normalises them).  A quarter of each batch is drawn at ``t = 1`` so the one-step deterministic answer
(the conditional mean estimate) is well trained.  AdamW, warm-up + cosine decay, EMA weights
(saved), checkpoints every few minutes so ``--resume`` continues.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.gfpose import FEATURES, GFPose, GFPoseConfig
from ..skeleton import BODY_PARTS, MIRROR, NUM_JOINTS, forward_kinematics
from ..tasks.inbetween import (from_features, interpolate_keys_torch, to_features, to_window,
                               window_frame)
from ..weights import WeightsError, save_model
from .common import (TrainError, build_settings, ema_update, make_ema, parse_overrides,
                     pick_device, portable_command, warmup_cosine_lr)
from .dposer import _load_checkpoint, _save_checkpoint, resolve_caches

CKPT_NAME = "gfpose.ckpt"
MIN_WINDOW = 8


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the architecture lives in :class:`GFPoseConfig`)."""
    steps: int = 8000
    batch: int = 64
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup: int = 300
    ema: float = 0.999
    grad_clip: float = 1.0
    t1_share: float = 0.25        # share of each batch at t = 1 (the deterministic answer)
    fk_weight: float = 1.0        # joint positions in units of 10 cm
    l2p_weight: float = 1.0       # joint positions z-normalised as the LaFAN1 L2P metric does
    mirror: bool = True
    checkpoint_minutes: float = 3.0
    threads: int = 2


def is_validation(clip: str) -> bool:
    """One training clip in ten (by a CRC of its name) is held out for validation."""
    return zlib.crc32(clip.encode()) % 10 == 0


class WindowSampler:
    """Random training windows with random key masks (see the module docstring)."""

    PARTS = [BODY_PARTS["left_arm"], BODY_PARTS["right_arm"], BODY_PARTS["left_arm"] + BODY_PARTS["right_arm"],
             BODY_PARTS["left_leg"], BODY_PARTS["right_leg"], BODY_PARTS["left_leg"] + BODY_PARTS["right_leg"],
             BODY_PARTS["torso"]]

    def __init__(self, clips, window: int, seed: int = 0):
        clips = [c for c in clips if c.num_frames >= window]
        if not clips:
            raise TrainError(f"no clip has {window} frames or more")
        self.rot = torch.from_numpy(np.concatenate([c.rotations for c in clips]).astype(np.float32))
        self.root = torch.from_numpy(np.concatenate([c.root for c in clips]).astype(np.float32))
        starts, off = [], 0
        for c in clips:
            starts.append(np.arange(off, off + c.num_frames - window + 1))
            off += c.num_frames
        self.starts = torch.from_numpy(np.concatenate(starts))
        self.window = window
        self.rng = np.random.default_rng(seed)
        self.frames = off

    def masks(self, B: int, T: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        known = np.zeros((B, T, NUM_JOINTS), bool)
        kroot = np.zeros((B, T), bool)
        for b in range(B):
            if rng.random() < 0.5:
                c = int(rng.integers(1, min(10, T - 2) + 1)) if rng.random() < 0.6 else min(10, T - 2)
                frames = list(range(c)) + [T - 1]
            else:
                inner = rng.choice(np.arange(1, T - 1), size=min(T - 2, int(rng.integers(0, 4))), replace=False)
                frames = [0, T - 1] + list(inner)
            known[b, frames] = True
            kroot[b, frames] = True
            if rng.random() < 0.35:
                for _ in range(int(rng.integers(1, 4))):
                    f = int(rng.integers(1, T - 1))
                    if rng.random() < 0.3:
                        part = np.flatnonzero(rng.random(NUM_JOINTS) < 0.3)
                    else:
                        part = np.array(self.PARTS[int(rng.integers(len(self.PARTS)))])
                    known[b, f] = False
                    known[b, f, part] = True
                    kroot[b, f] = bool(rng.random() < 0.5)
        return known, kroot

    def batch(self, B: int, gen: torch.Generator, mirror: bool):
        T = int(self.rng.integers(MIN_WINDOW, self.window + 1)) if self.rng.random() < 0.7 else \
            int(self.rng.choice([16, 26, 41, 56]))
        s = self.starts[torch.randint(0, len(self.starts), (B,), generator=gen)]
        off = int(self.rng.integers(0, self.window - T + 1))
        idx = s[:, None] + off + torch.arange(T)[None]
        q, r = self.rot[idx], self.root[idx]
        if mirror:
            m = torch.rand(B, generator=gen) < 0.5
            qm = q[:, :, list(MIRROR)] * torch.tensor([1.0, 1.0, -1.0, -1.0])
            rm = r * torch.tensor([-1.0, 1.0, 1.0])
            q = torch.where(m[:, None, None, None], qm, q)
            r = torch.where(m[:, None, None], rm, r)
        known, kroot = self.masks(B, T)
        return q, r, torch.from_numpy(known), torch.from_numpy(kroot)


def prepare(q, r, known, kroot):
    """World windows -> (interp features, target features, window-frame targets) in the window frame."""
    centre, yaw = window_frame(q, r, known, kroot)
    wq, wr = to_window(q, r, centre, yaw)
    iq, ir = interpolate_keys_torch(wq, wr, known, kroot)
    return to_features(iq, ir), to_features(wq, wr)


def set_normalisation(model: GFPose, sampler: WindowSampler, gen: torch.Generator, batches: int = 40) -> torch.Tensor:
    """Per-feature scale of the residual over the interpolation (un-keyed entries only) and
    mean / scale of the interpolation features, from random training windows.

    Returns:
        ``(22, 3)`` standard deviation of the joint positions in the window frame (metres), the
        normalisation of the L2P-like loss term.
    """
    res, feats, masks, pos = [], [], [], []
    for _ in range(batches):
        q, r, k, kr = sampler.batch(64, gen, False)
        interp, target = prepare(q, r, k, kr)
        fm = model.feature_mask(k, kr)
        res.append(((target - interp) * (1 - fm)).reshape(-1, FEATURES))
        masks.append((1 - fm).reshape(-1, FEATURES))
        feats.append(interp.reshape(-1, FEATURES))
        mats, root = from_features(target)
        pos.append(forward_kinematics(mats, root)[0].reshape(-1, NUM_JOINTS, 3))
    res, masks, feats = torch.cat(res), torch.cat(masks), torch.cat(feats)
    n = masks.sum(0).clamp_min(1)
    std = (res.pow(2).sum(0) / n).sqrt()
    model.residual_scale.copy_(std.clamp_min(1e-3))
    model.feature_mean.copy_(feats.mean(0))
    model.feature_scale.copy_(feats.std(0).clamp_min(1e-3))
    return torch.cat(pos).std(0).clamp_min(1e-2)


def loss_fn(model: GFPose, q, r, known, kroot, gen: torch.Generator, settings: TrainSettings,
            pos_std: torch.Tensor | None = None):
    interp, target = prepare(q, r, known, kroot)
    B = q.shape[0]
    fm = model.feature_mask(known, kroot)
    x0 = (target - interp) / model.residual_scale * (1 - fm)
    t = torch.rand(B, generator=gen) * (1 - 1e-3) + 1e-3
    t = torch.where(torch.rand(B, generator=gen) < settings.t1_share, torch.ones_like(t), t)
    alpha, sigma = model.sde.marginal_coeffs(t)
    z = torch.randn(x0.shape, generator=gen)
    x_t = alpha[:, None, None] * x0 + sigma[:, None, None] * z
    pred = model(x_t, t, interp, known, kroot)
    free = 1 - fm
    l_x0 = ((pred - x0) ** 2 * free).sum() / free.sum().clamp_min(1)
    loss = l_x0
    l_fk = torch.zeros(())
    if settings.fk_weight > 0 or settings.l2p_weight > 0:
        feats = interp + pred * model.residual_scale
        mats, root = from_features(feats)
        gmats, groot = from_features(target)
        pos, _ = forward_kinematics(mats, root)
        gpos, _ = forward_kinematics(gmats, groot)
        frame_free = (~(known.all(-1) & kroot)).to(pos.dtype)
        err = ((pos - gpos) / 0.1) ** 2 * settings.fk_weight
        if pos_std is not None and settings.l2p_weight > 0:
            err = err + ((pos - gpos) / pos_std) ** 2 * settings.l2p_weight
        l_fk = err.sum(-1).mean(-1)
        l_fk = (l_fk * frame_free).sum() / frame_free.sum().clamp_min(1)
        loss = loss + l_fk
    return loss, float(l_x0.detach()), float(l_fk.detach())


@torch.no_grad()
def validate(model: GFPose, clips, lengths=(5, 15, 30), seed: int = 7, max_windows: int = 256) -> dict:
    """Mean joint-position error (mm, window frame) of the deterministic answer and of the
    interpolation on LaFAN1-like validation windows (10 context frames, target at 10 + n)."""
    from ..tasks.inbetween import sample_windows

    rng = np.random.default_rng(seed)
    out = {}
    wins_q, wins_r = [], []
    for c in clips:
        for s in range(0, c.num_frames - 65, 40):
            wins_q.append(c.rotations[s:s + 65])
            wins_r.append(c.root[s:s + 65])
    if not wins_q:
        return out
    sel = rng.permutation(len(wins_q))[:max_windows]
    Q = torch.from_numpy(np.stack([wins_q[i] for i in sel]).astype(np.float32))
    R = torch.from_numpy(np.stack([wins_r[i] for i in sel]).astype(np.float32))
    for n in lengths:
        T = 11 + n
        q, r = Q[:, :T], R[:, :T]
        known = torch.zeros(len(q), T, NUM_JOINTS, dtype=torch.bool)
        known[:, :10] = True
        known[:, -1] = True
        kr = known.all(-1)
        pq, pr = sample_windows(model, q, r, known, kr)
        iq, ir = interpolate_keys_torch(q, r, known, kr)
        from ..rotations import quat_to_matrix
        gp, _ = forward_kinematics(quat_to_matrix(q), r)
        pp, _ = forward_kinematics(quat_to_matrix(pq), pr)
        ip, _ = forward_kinematics(quat_to_matrix(iq), ir)
        sl = slice(10, 10 + n)
        e_model = float((pp - gp)[:, sl].norm(dim=-1).mean()) * 1000
        e_interp = float((ip - gp)[:, sl].norm(dim=-1).mean()) * 1000
        out[str(n)] = {"model_mm": round(e_model, 1), "interp_mm": round(e_interp, 1),
                       "ratio": round(e_model / max(e_interp, 1e-9), 3)}
    out["windows"] = int(len(Q))
    return out


def train(caches, out: Path, config: GFPoseConfig, settings: TrainSettings, seed: int = 0, device: str = "cpu",
          resume: bool = False, command: str = "", log=print) -> tuple[GFPose, dict]:
    """Train on the train split of ``caches`` (minus the validation clips); return ``(EMA model, card)``."""
    from ..data.dataset import load_clips, load_index

    torch.set_num_threads(max(1, settings.threads))
    t_start = time.time()
    clips, val, descs = [], [], []
    for c in caches:
        idx = load_index(c)
        descs.append({"data_hash": idx.get("data_hash", "")})
        for clip in load_clips(c, "train"):
            (val if is_validation(clip.source) else clips).append(clip)
    if not clips:
        raise TrainError("the train split is empty: check --data")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sampler = WindowSampler(clips, config.window, seed)
    log(f"train clips {len(clips)} ({sampler.frames} frames), validation clips {len(val)}")
    model = GFPose(config)
    pos_std = set_normalisation(model, sampler, gen).to(device)
    log("joint position std (m, window frame): pelvis " + " ".join(f"{v:.3f}" for v in pos_std[0].tolist()))
    model.to(device)
    ema = make_ema(model)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    meta = {"config": dataclasses.asdict(config), "settings": dataclasses.asdict(settings), "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{CKPT_NAME}.safetensors"
    step = 0
    if resume and ckpt.is_file():
        step = _load_checkpoint(ckpt, model, ema, opt, gen, meta)
        sampler.rng = np.random.default_rng(seed + step)
        log(f"resumed from {ckpt} at step {step}")

    def lr_at(s: int) -> float:
        return warmup_cosine_lr(s, settings.lr, settings.warmup, settings.steps)

    model.train()
    last_ckpt = last_log = last_val = time.time()
    acc, n_acc, log_step = np.zeros(3), 0, step
    while step < settings.steps:
        q, r, k, kr = sampler.batch(settings.batch, gen, settings.mirror)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss, lx, lf = loss_fn(model, q.to(device), r.to(device), k.to(device), kr.to(device), gen, settings,
                              pos_std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        step += 1
        ema_update(ema, model, step, settings.ema)
        acc += (float(loss.detach()), lx, lf)
        n_acc += 1
        now = time.time()
        if now - last_log > 30 or step == settings.steps:
            a = acc / max(n_acc, 1)
            log(f"step {step}/{settings.steps} loss {a[0]:.4f} (x0 {a[1]:.4f} fk {a[2]:.4f}) lr {lr_at(step):.2e} "
                f"{(step - log_step) / (now - last_log):.2f} steps/s")
            acc, n_acc, last_log, log_step = np.zeros(3), 0, now, step
        if now - last_val > 600 and val:
            log(f"validation at step {step}: {json.dumps(validate(ema, val, max_windows=128))}")
            last_val = time.time()
        if now - last_ckpt > settings.checkpoint_minutes * 60 or step == settings.steps:
            _save_checkpoint(ckpt, model, ema, opt, step, gen, meta)
            last_ckpt = now

    ema.eval()
    metrics = {"validation": validate(ema, val)} if val else {}
    card = {
        "model": "GFPose-style conditional score model over motion windows (sub-VP SDE, x0-prediction "
                 "transformer over frames, residual over the interpolation of the keys)",
        "paper": "Ci et al., GFPose: Learning 3D Human Pose Prior with Gradient Fields, CVPR 2023, arXiv 2212.08641",
        "input": "windows of up to 65 frames at 30 fps: root position (m, Y up, window frame) and 22 local "
                 "joint rotations (6D) of the canonical body; keys given as per-joint and root masks",
        "config": dataclasses.asdict(config),
        "training": dict(dataclasses.asdict(settings), seed=seed, steps_done=step,
                         wall_time_s=round(time.time() - t_start, 1), device=device,
                         torch=torch.__version__, python=platform.python_version()),
        "data": {"description": "Bandai-Namco-Research-Motiondataset-2 train split plus the CMU dance clips "
                               "(salsa, martial arts, Indian dance), retargeted to the canonical body at 30 fps; "
                               "left/right mirrored windows added; one train clip in ten held out for validation",
                 "split_rule": "a Bandai-2 clip is in the test split when its take number is divisible by 5",
                 "train_clips": len(clips), "train_frames": int(sampler.frames), "validation_clips": len(val),
                 "data_hash": ";".join(d["data_hash"] for d in descs)},
        "command": command,
        "metrics": metrics,
        "licence": "CC BY-NC 4.0 (trained on Bandai-Namco-Research-Motiondataset-2)",
        "code_licence": "the PoseForge code is licensed separately (see blender_manifest.toml)",
    }
    return ema, card


def split_overrides(over: dict) -> tuple[GFPoseConfig, TrainSettings]:
    """Model config and train settings from defaults plus ``over`` (unknown keys raise)."""
    return build_settings(over, GFPoseConfig, TrainSettings, "GFPose")


def cli_main(args) -> int:
    """``poseforge train gfpose``: train, checkpoint, then save weights + model card to ``--out``."""
    from ..data.dataset import DatasetError
    from ..weights import default_weights_dir

    try:
        config, settings = split_overrides(parse_overrides(getattr(args, "config", None)))
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=int(args.steps))
        device = pick_device(args.device)
        caches = resolve_caches(args.data)
        out = Path(args.out).expanduser() if args.out is not None else default_weights_dir()
        command = portable_command()
        print(f"GFPose training: {dataclasses.asdict(config)} {dataclasses.asdict(settings)} seed {args.seed} "
              f"device {device}", flush=True)
        model, card = train(caches, out, config, settings, seed=args.seed, device=device, resume=args.resume,
                            command=command, log=lambda m: print(m, flush=True))
        path = save_model("gfpose", model.to("cpu"), config, card, out)
        print(f"saved {path} and gfpose.json; validation {json.dumps(card['metrics'].get('validation'))}", flush=True)
    except (TrainError, WeightsError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
