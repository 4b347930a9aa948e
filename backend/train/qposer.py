"""Training QPoser's pose tokenizer: ``poseforge train qposer --data DIR [--data DIR2] --out DIR``.

``--data``: a canonical cache or a BVH folder (as for DPoser).  Trains the MS-VQVAE with GLIF-AE
(:mod:`poseforge.backend.models.qposer`, QPoser arXiv 2312.01104 sec. 3.1-3.2) on the body poses of
the "train" split, left/right mirrored copies added.  Loss: rotation-matrix reconstruction plus
joint positions of the canonical body (forward kinematics, pelvis fixed, in units of 10 cm) plus
the commitment loss; codebooks by EMA with dead-code restarts.  AdamW, warm-up + cosine decay.

Phase 2 (``prior_steps > 0``): the encoder and codebooks are frozen (so the codes of every pose stay
the same) and the decoder is fine-tuned on the same reconstruction loss plus ``prior_weight``
times the DPoser prior term (DPoser arXiv 2312.05541 sec. 3.2-3.3, :meth:`DPoser.energy`: the
pose is pulled towards the prior's one-step denoised estimate at a random diffusion time).
Without it, decoded poses carry small off-manifold errors (a few degrees spread over all joints)
that the prior scores as implausible, though they are only about 1 cm off.  ``--init DIR``
starts from trained weights and runs phase 2 only.

The model card reports, on test-split poses: reconstruction MPJPE (mm) and geodesic error against
the VPoser-style VAE shipped as a baseline (``vae.safetensors``, latent 32), codebook usage
(perplexity and dead codes per head), and the DPoser implausibility of poses decoded from uniformly
random code grids, next to test mocap and to random VAE samples.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.qposer import QPoser, QPoserConfig
from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..skeleton import forward_kinematics
from ..weights import WeightsError, save_model
from .common import (TrainError, build_settings, parse_overrides, pick_device, portable_command,
                     warmup_cosine_lr)
from .dposer import load_body_poses, mirror_body_pose, resolve_caches


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the architecture lives in :class:`QPoserConfig`)."""
    steps: int = 4000
    batch: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    pos_weight: float = 1.0
    mirror: bool = True
    every: int = 2              # keep every k-th frame of the 30 fps clips
    threads: int = 2
    prior_steps: int = 0        # phase 2: decoder fine-tuning with the DPoser prior term
    prior_weight: float = 0.1
    prior_lr: float = 2e-4


def body_positions(body: torch.Tensor) -> torch.Tensor:
    """``(B, 21, 3, 3)`` body rotations -> ``(B, 22, 3)`` joint positions, pelvis at the origin
    with the identity orientation (metres, Y up)."""
    eye = torch.eye(3, dtype=body.dtype, device=body.device).expand(len(body), 1, 3, 3)
    return forward_kinematics(torch.cat([eye, body], 1))[0]


def loss_fn(model: QPoser, body: torch.Tensor, settings: TrainSettings):
    rec, _, commit = model(body)
    l_rot = (rec - body).pow(2).sum((-1, -2)).mean()
    l_pos = ((body_positions(rec) - body_positions(body)) / 0.1).pow(2).sum(-1).mean()
    return l_rot + settings.pos_weight * l_pos + model.config.commitment * commit, (float(l_rot.detach()), float(l_pos.detach()), float(commit.detach()))


@torch.no_grad()
def measure(model: QPoser, test_body: torch.Tensor, log=print, samples: int = 500, seed: int = 0) -> dict:
    """Reconstruction, codebook usage and random-grid plausibility (see the module docstring)."""
    model.eval()
    rec, codes = [], []
    for chunk in torch.split(test_body, 2048):
        r, c, _ = model(chunk)
        rec.append(r)
        codes.append(c)
    rec, codes = torch.cat(rec), torch.cat(codes)
    mpjpe = float((body_positions(rec) - body_positions(test_body)).norm(dim=-1).mean()) * 1000
    geo = float(matrix_to_axis_angle(rec @ test_body.transpose(-1, -2)).norm(dim=-1).mean().rad2deg())
    c = model.config
    usage = []
    for h in range(c.code_heads):
        counts = torch.bincount(codes[..., h].flatten(), minlength=c.codebook).double()
        p = counts / counts.sum()
        perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        usage.append({"perplexity": round(perplexity, 1), "dead_codes": int((counts == 0).sum())})
    out = {"test_poses": int(len(test_body)), "recon_mpjpe_mm": round(mpjpe, 2), "recon_geodesic_deg": round(geo, 3),
           "codebook": {"heads": c.code_heads, "codes_per_head": c.codebook, "per_head": usage}}
    # the VPoser-style VAE baseline on the same poses
    try:
        from ..models.baselines import VAEPrior
        from ..weights import load_model
        vae = load_model("vae", VAEPrior).eval()
        aa = matrix_to_axis_angle(test_body)
        vrec = torch.cat([vae.reconstruct(a) for a in torch.split(aa, 2048)])
        vrec = vrec if vrec.shape[-2:] == (3, 3) else axis_angle_to_matrix(vrec)
        out["vae_recon_mpjpe_mm"] = round(float((body_positions(vrec) - body_positions(test_body)).norm(dim=-1).mean()) * 1000, 2)
        g = torch.Generator().manual_seed(seed)
        vs = vae.sample(samples, generator=g)
        vae_samples = vs if vs.shape[-2:] == (3, 3) else axis_angle_to_matrix(vs)
    except (WeightsError, FileNotFoundError) as exc:
        log(f"no VAE baseline: {exc}")
        vae_samples = None
    # plausibility of random code grids under DPoser
    try:
        from ..models.dposer import DPoser
        from ..tasks.snap import score_keys
        from ..weights import load_model
        prior = load_model("dposer", DPoser).eval()
        g = torch.Generator().manual_seed(seed)
        grid = torch.randint(0, c.codebook, (samples, 21, c.code_heads), generator=g)
        dec = model.decode(grid)

        def score(body):
            eye = torch.eye(3).expand(len(body), 1, 3, 3)
            return round(float(score_keys(torch.cat([eye, body], 1), prior).mean()), 3)
        sel = torch.linspace(0, len(test_body) - 1, samples).long()
        out["dposer_implausibility"] = {"random_code_grids": score(dec), "test_mocap": score(test_body[sel]),
                                        "reconstructed_test_mocap": score(rec[sel])}
        if vae_samples is not None:
            out["dposer_implausibility"]["vae_random_samples"] = score(vae_samples)
    except (WeightsError, FileNotFoundError) as exc:
        log(f"no DPoser prior for the plausibility measure: {exc}")
    return out


def prior_phase(model: QPoser, data: torch.Tensor, settings: TrainSettings, gen: torch.Generator, device: str,
                log=print) -> None:
    """Phase 2 (see the module docstring): fine-tune the decoder with the DPoser prior term."""
    from ..models.dposer import DPoser
    from ..weights import load_model

    try:
        prior = load_model("dposer", DPoser, device=device).eval()
    except (WeightsError, FileNotFoundError) as exc:
        raise TrainError(f"phase 2 needs the DPoser prior: {exc}") from exc
    for p in prior.parameters():
        p.requires_grad_(False)
    model.eval()                                     # frozen codebooks: no EMA updates
    params = [model.dec_global, *model.dec_in.parameters(), *model.decoder.parameters(), *model.dec_out.parameters()]
    opt = torch.optim.AdamW(params, lr=settings.prior_lr, weight_decay=settings.weight_decay)
    last, acc, n = time.time(), np.zeros(2), 0
    for step in range(1, settings.prior_steps + 1):
        for grp in opt.param_groups:
            grp["lr"] = settings.prior_lr * 0.5 * (1 + math.cos(math.pi * step / settings.prior_steps))
        body = data[torch.randint(0, len(data), (settings.batch,), generator=gen).to(device)]
        with torch.no_grad():
            zq = model.quantizer.lookup(model.encode(body))
        rec = model.decode_vectors(zq)
        l_rec = (rec - body).pow(2).sum((-1, -2)).mean() + \
            settings.pos_weight * ((body_positions(rec) - body_positions(body)) / 0.1).pow(2).sum(-1).mean()
        l_prior = prior.energy(matrix_to_axis_angle(rec), progress=float(torch.rand((), generator=gen)),
                               generator=gen).mean()
        loss = l_rec + settings.prior_weight * l_prior
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        acc += (float(l_rec.detach()), float(l_prior.detach()))
        n += 1
        if time.time() - last > 30 or step == settings.prior_steps:
            a = acc / n
            log(f"prior phase {step}/{settings.prior_steps} rec {a[0]:.4f} prior {a[1]:.4f}")
            last, acc, n = time.time(), np.zeros(2), 0


def train(caches, out: Path, config: QPoserConfig, settings: TrainSettings, seed: int = 0, device: str = "cpu",
          command: str = "", log=print, init: QPoser | None = None) -> tuple[QPoser, dict]:
    """Train on the train split of ``caches``; return ``(model, card)``."""
    torch.set_num_threads(max(1, settings.threads))
    t0 = time.time()
    train_aa, desc = load_body_poses(caches, "train", settings.every)
    if len(train_aa) == 0:
        raise TrainError("the train split is empty: check --data")
    if settings.mirror:
        train_aa = np.concatenate([train_aa, mirror_body_pose(train_aa)])
    test_aa, _ = load_body_poses(caches, "test", 10)
    data = axis_angle_to_matrix(torch.from_numpy(train_aa)).to(device)
    test = axis_angle_to_matrix(torch.from_numpy(test_aa)).to(device)
    log(f"train poses {len(data)} (mirrored: {settings.mirror}), test poses {len(test)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = QPoser(config).to(device) if init is None else init.to(device)
    if init is not None:
        log("starting from the given weights: phase 2 only")
        settings_main = 0
    else:
        settings_main = settings.steps
    with torch.no_grad():   # start the codebooks on real features
        feats = model.features(data[torch.randint(0, len(data), (4096,), generator=gen)])
        flat = feats.reshape(-1, config.code_heads, config.code_dim)
        for h in range(config.code_heads if init is None else 0):
            pick = flat[torch.randint(0, len(flat), (config.codebook,), generator=gen), h]
            model.quantizer.codebook[h] = pick
            model.quantizer.ema_sum[h] = pick
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def lr_at(s: int) -> float:
        return warmup_cosine_lr(s, settings.lr, settings.warmup, settings.steps)

    model.train()
    last = time.time()
    acc, n = np.zeros(3), 0
    for step in range(1, settings_main + 1):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        body = data[torch.randint(0, len(data), (settings.batch,), generator=gen).to(device)]
        loss, parts = loss_fn(model, body, settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc += parts
        n += 1
        if time.time() - last > 30 or step == settings.steps:
            a = acc / n
            log(f"step {step}/{settings.steps} rot {a[0]:.4f} pos {a[1]:.4f} commit {a[2]:.4f} lr {lr_at(step):.2e}")
            acc, n, last = np.zeros(3), 0, time.time()
    if settings.prior_steps > 0:
        prior_phase(model, data, settings, gen, device, log)
    metrics = measure(model.cpu(), test.cpu(), log)
    card = {
        "model": "QPoser pose tokenizer: multi-head VQ-VAE with global-local integration (MS-VQVAE + GLIF-AE)",
        "paper": "Li et al., QPoser: Quantized Explicit Pose Prior Modeling for Controllable Pose Generation, arXiv 2312.01104",
        "input": "the 21 body joints' local rotations of the canonical body (6D), no pelvis orientation",
        "codes": f"{21} joints x {config.code_heads} heads, {config.codebook} codes per head codebook",
        "config": dataclasses.asdict(config),
        "training": dict(dataclasses.asdict(settings), seed=seed, wall_time_s=round(time.time() - t0, 1),
                         device=device, torch=torch.__version__, python=platform.python_version()),
        "data": {"description": "Bandai-Namco-Research-Motiondataset-2 train split plus the CMU dance clips, "
                               "retargeted to the canonical body, every 2nd frame at 30 fps, mirrored copies added",
                 "train_poses": int(len(data)), "data_hash": ";".join(d["data_hash"] for d in desc["caches"])},
        "command": command,
        "phases": ("phase 1 (tokenizer) for `steps` steps" if init is None else "phase 1 from --init (see phase1)")
                  + (f", then phase 2 (decoder with the DPoser prior term) for {settings.prior_steps} steps"
                     if settings.prior_steps > 0 else ""),
        "metrics": metrics,
        "licence": "CC BY-NC 4.0 (trained on Bandai-Namco-Research-Motiondataset-2)",
        "code_licence": "the PoseForge code is licensed separately (see blender_manifest.toml)",
    }
    return model, card


def cli_main(args) -> int:
    """``poseforge train qposer``: train, then save weights + model card to ``--out``."""
    from ..data.dataset import DatasetError
    from ..weights import default_weights_dir

    try:
        config, settings = build_settings(parse_overrides(getattr(args, "config", None)),
                                          QPoserConfig, TrainSettings, "QPoser")
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=int(args.steps))
        device = pick_device(args.device)
        caches = resolve_caches(args.data)
        out = Path(args.out).expanduser() if args.out is not None else default_weights_dir()
        command = portable_command()
        print(f"QPoser training: {dataclasses.asdict(config)} {dataclasses.asdict(settings)} seed {args.seed}", flush=True)
        init, init_card = None, None
        if getattr(args, "init", None) is not None:
            from ..weights import load_model
            init = load_model("qposer", QPoser, weights_dir=args.init)
            config = init.config
            card_path = Path(args.init).expanduser() / "qposer.json"
            init_card = json.loads(card_path.read_text()) if card_path.is_file() else None
            if settings.prior_steps <= 0:
                raise TrainError("--init runs phase 2 only: set prior_steps > 0 with --config")
        model, card = train(caches, out, config, settings, seed=args.seed, device=device, command=command,
                            log=lambda m: print(m, flush=True), init=init)
        if init_card is not None:
            card["phase1"] = {k: init_card.get(k) for k in ("command", "training", "metrics")}
        path = save_model("qposer", model.to("cpu"), config, card, out)
        print(f"saved {path} and qposer.json; {json.dumps(card['metrics'])}", flush=True)
    except (TrainError, WeightsError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
