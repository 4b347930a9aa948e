"""Training the DMM textured-preview network: ``poseforge train dmm --data DIR --out DIR``.

``--data`` is a preview dataset (``poseforge data preview-set``, read through
``backend/data/preview.py``).  Training uses its "train" split minus a validation carve-out (one
clip in ten by a CRC of its name, only when the split has 10 clips or more), so no choice is made
on the held-out test clips the benchmark reports.

Method: Bidirectionally Deformable Motion Modulation (Yu et al., ICCV 2023, arXiv 2307.07754),
see ``backend/models/dmm.py``.  Each sample is a window of ``frames`` consecutive frames of one
clip with the clip's reference image and label maps; half of the windows are played backwards
(the motion is as plausible in reverse, and both propagation passes see both directions).

Losses, none needing a pretrained network (section 3.4 of the paper uses perceptual and
adversarial terms, which cannot be downloaded here):

* L1 between the frames and the ground truth (``[-1, 1]``);
* ``1 - SSIM`` (Gaussian 11x11 window, per channel, :func:`..bench.preview_metrics.ssim_map`);
* multi-scale image gradient: L1 between the finite differences of prediction and ground truth
  along x and y at 1, 1/2 and 1/4 resolution (average pooled), :func:`gradient_loss`.

AdamW with warm-up and cosine decay, EMA weights (saved), checkpoints every few minutes so
``--resume`` continues.  The ablations of the benchmark are trained the same way through the
``variant`` setting: ``"conv"`` (plain convolution instead of the deformable modulation) and
``"forward"`` (forward propagation only); their weights are saved as ``dmm_conv`` / ``dmm_forward``.
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
import torch.nn.functional as F

from ..bench.preview_metrics import all_metrics, ssim_map
from ..models.dmm import DMM, DMMConfig, DMMError, copy_reference, one_hot_labels
from ..weights import WeightsError, save_model
from .common import (TrainError, build_settings, ema_update, make_ema, parse_overrides,
                     pick_device, portable_command, warmup_cosine_lr)
from .dposer import _load_checkpoint, _save_checkpoint

CKPT_NAME = "dmm.ckpt"
#: variant -> the config fields it sets.
VARIANTS = {"dmm": {}, "conv": {"modulation": "conv"}, "forward": {"propagation": "forward"}}


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the architecture lives in :class:`DMMConfig`).

    Attributes:
        variant: ``"dmm"`` (the full model), ``"conv"`` or ``"forward"`` (the ablations).
        frames: frames per training window; batch: windows per step.
        l1_weight, ssim_weight, grad_weight: loss weights (see the module docstring).
        reverse: play half of the windows backwards.
        mirror: mirror half of the windows left-right (images flipped, left and right part ids
            swapped in the label maps).
        fg_weight: extra L1 weight on the pixels where the character is in the target frame or in
            the reference (the label maps dilated by 2 pixels): the character covers under a tenth of
            a frame, and the background is mostly a copy of the reference's.
    """
    variant: str = "dmm"
    steps: int = 1500
    batch: int = 2
    frames: int = 8
    lr: float = 4e-4
    weight_decay: float = 0.0
    warmup: int = 100
    ema: float = 0.999
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    ssim_weight: float = 0.5
    grad_weight: float = 0.5
    reverse: bool = True
    mirror: bool = True
    fg_weight: float = 4.0
    checkpoint_minutes: float = 5.0
    threads: int = 2


def model_name(variant: str) -> str:
    """Weights file stem of a variant: ``"dmm"``, ``"dmm_conv"``, ``"dmm_forward"``."""
    return "dmm" if variant == "dmm" else f"dmm_{variant}"


def is_validation(clip: str) -> bool:
    """One training clip in ten (by a CRC of its name) is held out for validation."""
    return zlib.crc32(clip.encode()) % 10 == 0


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, scales=(1, 2, 4)) -> torch.Tensor:
    """Multi-scale image gradient loss.

    At each scale ``s`` both images are average-pooled by ``s`` and the mean absolute difference of
    their horizontal and vertical finite differences is taken; the result is the mean over scales.

    Args:
        pred, target: ``(…, C, H, W)`` with ``H, W`` divisible by the largest scale.
    Returns:
        scalar tensor (differentiable), 0 when the images differ by a constant.
    """
    C, H, W = pred.shape[-3:]
    p, t = pred.reshape(-1, C, H, W), target.reshape(-1, C, H, W)
    total = pred.new_zeros(())
    for s in scales:
        ps, ts = (F.avg_pool2d(p, s), F.avg_pool2d(t, s)) if s > 1 else (p, t)
        dx = (ps[..., :, 1:] - ps[..., :, :-1]) - (ts[..., :, 1:] - ts[..., :, :-1])
        dy = (ps[..., 1:, :] - ps[..., :-1, :]) - (ts[..., 1:, :] - ts[..., :-1, :])
        total = total + dx.abs().mean() + dy.abs().mean()
    return total / len(scales)


def foreground_weights(cond: torch.Tensor, ref_cond: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """Per-pixel L1 weights ``(B, T, 1, H, W)``: ``1 + fg_weight`` where the character is in the
    target frame or in the reference (one-hot maps ``(B, T, K+1, H, W)`` / ``(B, K+1, H, W)``,
    channel 0 = background; dilated by 2 pixels), 1 elsewhere."""
    fg = torch.maximum(1 - cond[:, :, :1], 1 - ref_cond[:, None, :1])
    B, T = fg.shape[:2]
    fg = F.max_pool2d(fg.flatten(0, 1), 5, 1, 2).unflatten(0, (B, T))
    return 1 + fg_weight * fg


def mirror_part_ids() -> torch.Tensor:
    """``(K + 1,)`` long: the label id of each id's mirror image (left and right parts swapped)."""
    from ..data.preview import PART_NAMES

    def other(n):
        return n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")

    ids = {n: i + 1 for i, n in enumerate(PART_NAMES)}
    return torch.tensor([0] + [ids[other(n)] for n in PART_NAMES], dtype=torch.long)


def loss_fn(pred: torch.Tensor, target: torch.Tensor, settings: TrainSettings,
            weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted L1 + (1 - SSIM) + multi-scale gradient loss of frames ``(B, T, 3, H, W)`` in ``[-1, 1]``.

    ``weights``: optional ``(B, T, 1, H, W)`` per-pixel L1 weights (:func:`foreground_weights`);
    the L1 is their weighted mean.
    Returns:
        ``(loss, {"l1", "ssim", "grad"})`` (the parts as floats).
    """
    if weights is None:
        l1 = (pred - target).abs().mean()
    else:
        w = weights.expand_as(pred)
        l1 = ((pred - target).abs() * w).sum() / w.sum()
    ss = ssim_map((pred + 1) / 2, (target + 1) / 2, data_range=1.0).mean()
    gr = gradient_loss(pred, target)
    loss = settings.l1_weight * l1 + settings.ssim_weight * (1 - ss) + settings.grad_weight * gr
    return loss, {"l1": float(l1.detach()), "ssim": float(ss.detach()), "grad": float(gr.detach())}


def apply_variant(config: DMMConfig, settings: TrainSettings) -> DMMConfig:
    """The config of ``settings.variant``.

    Raises:
        TrainError: an unknown variant, or model settings that contradict it (e.g.
            ``{"modulation": "conv"}`` with variant "dmm": set the variant instead).
    """
    if settings.variant not in VARIANTS:
        raise TrainError(f"unknown variant {settings.variant!r}: one of {', '.join(VARIANTS)}")
    want = {"modulation": "dmm", "propagation": "bidirectional", **VARIANTS[settings.variant]}
    for k, v in want.items():
        if getattr(config, k) not in (v, getattr(DMMConfig, k)):
            raise TrainError(f"{k}={getattr(config, k)!r} contradicts variant {settings.variant!r}: "
                             "choose the ablation with the 'variant' setting")
    return dataclasses.replace(config, **want)


def _windows(data: Path, names: list[str], frames: int, stride: int | None = None):
    from ..data.preview import PreviewWindows
    return PreviewWindows(data, "train", window=frames, stride=stride or 1, clips=names)


def _batch(ds, idx, cfg: DMMConfig, device: str, reverse_mask=None, mirror_mask=None):
    items = [ds[int(i)] for i in idx]
    ref = torch.stack([it[0] for it in items])
    ref_lab = torch.stack([it[1] for it in items])
    rgb = torch.stack([it[2] for it in items])
    lab = torch.stack([it[3] for it in items])
    if reverse_mask is not None and reverse_mask.any():
        rgb = torch.where(reverse_mask[:, None, None, None, None], rgb.flip(1), rgb)
        lab = torch.where(reverse_mask[:, None, None, None], lab.flip(1), lab)
    if mirror_mask is not None and mirror_mask.any():
        perm = mirror_part_ids().to(torch.uint8)
        m = mirror_mask
        ref = torch.where(m[:, None, None, None], ref.flip(-1), ref)
        rgb = torch.where(m[:, None, None, None, None], rgb.flip(-1), rgb)
        ref_lab = torch.where(m[:, None, None], perm[ref_lab.flip(-1).long()], ref_lab)
        lab = torch.where(m[:, None, None, None], perm[lab.flip(-1).long()], lab)
    ref = ref.to(device)
    return (ref, one_hot_labels(ref_lab, cfg.parts).to(device), one_hot_labels(lab, cfg.parts).to(device),
            rgb.to(device))


@torch.no_grad()
def validate(model: DMM, ds, device: str, max_windows: int = 32) -> dict:
    """PSNR / SSIM / L1 / flicker (images in ``[0, 1]``) of ``model`` and of copying the reference
    on up to ``max_windows`` validation windows."""
    model.eval()
    preds, copies, gts = [], [], []
    step = max(1, len(ds) // max_windows)
    for i in range(0, len(ds), step)[:max_windows]:
        ref, rc, cond, rgb = _batch(ds, [i], model.config, device)
        preds.append(model(ref, rc, cond).cpu())
        copies.append(copy_reference(ref, cond.shape[1]).cpu())
        gts.append(rgb.cpu())
    gt = (torch.cat(gts) + 1) / 2
    return {"windows": len(gts),
            "dmm": {k: round(v, 4) for k, v in all_metrics((torch.cat(preds) + 1) / 2, gt).items()},
            "copy_reference": {k: round(v, 4) for k, v in all_metrics((torch.cat(copies) + 1) / 2, gt).items()}}


def train(data: Path, out: Path, config: DMMConfig, settings: TrainSettings, seed: int = 0, device: str = "cpu",
          resume: bool = False, command: str = "", log=print) -> tuple[DMM, dict]:
    """Train on the train split of the preview dataset ``data``; return ``(EMA model, card)``.

    Raises:
        TrainError: bad settings, no usable training window, a checkpoint made with other settings.
        PreviewDataError: the dataset is missing or malformed (from ``backend/data/preview.py``).
    """
    from ..data.preview import clip_names, load_index

    torch.set_num_threads(max(1, settings.threads))
    t_start = time.time()
    config = apply_variant(config, settings)
    index = load_index(data)
    R = int(index["resolution"])
    if int(index["parts"]) != config.parts:
        raise TrainError(f"the dataset has {index['parts']} body parts, the model expects {config.parts}")
    f = 2 ** (config.levels - 1)
    if R % f or R < 11 or R // 4 < 2:
        raise TrainError(f"resolution {R} must be at least 11 and divisible by {f} (and by 4 for the gradient loss)")
    if settings.frames < 1 or settings.batch < 1:
        raise TrainError("frames and batch must be >= 1")
    names = clip_names(data, "train", index)
    if not names:
        raise TrainError(f"the preview dataset {data} has no train clips")
    val_names = [n for n in names if is_validation(n)] if len(names) >= 10 else []
    train_names = [n for n in names if n not in val_names]
    frames = {c["name"]: int(c["frames"]) for c in index["clips"]}
    if not any(frames[n] >= settings.frames for n in train_names):
        raise TrainError(f"no train clip has {settings.frames} frames or more (set 'frames' lower)")
    ds = _windows(data, train_names, settings.frames)
    val_ds = _windows(data, val_names, settings.frames, settings.frames) if val_names else None
    log(f"train clips {len(train_names)} ({len(ds)} windows of {settings.frames} frames at {R}x{R}), "
        f"validation clips {len(val_names)}")

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DMM(config).to(device)
    ema = make_ema(model)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                            betas=(0.9, 0.99))
    meta = {"config": dataclasses.asdict(config), "settings": dataclasses.asdict(settings), "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{model_name(settings.variant)}.ckpt.safetensors"
    step = 0
    if resume and ckpt.is_file():
        step = _load_checkpoint(ckpt, model, ema, opt, gen, meta)
        log(f"resumed from {ckpt.name} at step {step}")

    def lr_at(s: int) -> float:
        return warmup_cosine_lr(s, settings.lr, settings.warmup, settings.steps, floor=0.05)

    model.train()
    last_ckpt = last_log = time.time()
    acc, n_acc, log_step = np.zeros(4), 0, step
    while step < settings.steps:
        idx = torch.randint(0, len(ds), (settings.batch,), generator=gen)
        rev = (torch.rand(settings.batch, generator=gen) < 0.5) if settings.reverse else None
        mir = (torch.rand(settings.batch, generator=gen) < 0.5) if settings.mirror else None
        ref, rc, cond, rgb = _batch(ds, idx, config, device, rev, mir)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        pred = model(ref, rc, cond)
        weights = foreground_weights(cond, rc, settings.fg_weight) if settings.fg_weight > 0 else None
        loss, parts = loss_fn(pred, rgb, settings, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        step += 1
        ema_update(ema, model, step, settings.ema)
        acc += (float(loss.detach()), parts["l1"], parts["ssim"], parts["grad"])
        n_acc += 1
        now = time.time()
        if now - last_log > 30 or step == settings.steps:
            a = acc / max(n_acc, 1)
            log(f"step {step}/{settings.steps} loss {a[0]:.4f} (l1 {a[1]:.4f} ssim {a[2]:.4f} grad {a[3]:.4f}) "
                f"lr {lr_at(step):.2e} {(now - last_log) / max(step - log_step, 1):.2f} s/step")
            acc, n_acc, last_log, log_step = np.zeros(4), 0, now, step
        if now - last_ckpt > settings.checkpoint_minutes * 60 or step == settings.steps:
            _save_checkpoint(ckpt, model, ema, opt, step, gen, meta)
            last_ckpt = now

    metrics = {"validation": validate(ema, val_ds, device)} if val_ds is not None else {}
    ema.eval()
    card = {
        "model": "DMM: video pose transfer from one reference image (source encoder with a style vector, "
                 "modulated deformable convolution driven by motion features, bidirectional recurrent "
                 "propagation)" + ("" if settings.variant == "dmm" else f"; ablation '{settings.variant}'"),
        "paper": "Yu et al., Bidirectionally Deformable Motion Modulation For Video-based Human Pose Transfer, "
                 "ICCV 2023, arXiv 2307.07754",
        "variant": settings.variant,
        "input": f"reference image (RGB in [-1, 1]) with its body-part label map, and one label map per target "
                 f"frame ({config.parts} parts of the canonical body + background, one-hot); frames of "
                 f"{R}x{R} trained (any size divisible by {f} runs)",
        "output": "RGB frames in [-1, 1]",
        "config": dataclasses.asdict(config),
        "training": dict(dataclasses.asdict(settings), seed=seed, steps_done=step,
                         wall_time_s=round(time.time() - t_start, 1), device=device,
                         torch=torch.__version__, python=platform.python_version()),
        "data": {"description": "preview dataset of `poseforge data preview-set`: characters animated with mocap, "
                               "random textures, lights and cameras, rendered by Blender",
                 "split_rule": "test clips use mocap clips and texture seeds no train clip uses; one train clip "
                               "in ten (CRC of its name) held out for validation when there are 10 or more",
                 "dataset_command": portable_command(str(index.get("command", "")).split()[1:]), "resolution": R,
                 "train_clips": len(train_names), "train_windows": len(ds), "validation_clips": len(val_names)},
        "command": command,
        "metrics": metrics,
        "licence": "CC BY-NC 4.0 when the preview set is animated with Bandai-Namco-Research-Motiondataset-2 "
                   "mocap (the default); see the licences of the characters used",
        "code_licence": "the PoseForge code is licensed separately (see blender_manifest.toml)",
    }
    return ema, card


def split_overrides(over: dict) -> tuple[DMMConfig, TrainSettings]:
    """Model config and train settings from defaults plus ``over`` (unknown keys raise TrainError)."""
    try:
        return build_settings(over, DMMConfig, TrainSettings, "DMM")
    except (DMMError, TypeError) as exc:
        raise TrainError(f"bad DMM settings: {exc}") from exc


def cli_main(args) -> int:
    """``poseforge train dmm``: train, checkpoint, then save weights + model card to ``--out``."""
    from ..data.dataset import DatasetError
    from ..weights import default_weights_dir

    try:
        config, settings = split_overrides(parse_overrides(getattr(args, "config", None)))
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=int(args.steps))
        config = apply_variant(config, settings)
        data = args.data
        if isinstance(data, (list, tuple)):
            if len(data) != 1:
                raise TrainError(f"give exactly one preview dataset with --data, got {len(data)}")
            data = data[0]
        data = Path(data).expanduser()
        device = pick_device(args.device)
        out = Path(args.out).expanduser() if args.out is not None else default_weights_dir()
        command = portable_command()
        name = model_name(settings.variant)
        print(f"DMM training ({name}): {dataclasses.asdict(config)} {dataclasses.asdict(settings)} "
              f"seed {args.seed} device {device}", flush=True)
        model, card = train(data, out, config, settings, seed=args.seed, device=device,
                            resume=getattr(args, "resume", False), command=command,
                            log=lambda m: print(m, flush=True))
        path = save_model(name, model.to("cpu"), config, card, out)
        print(f"saved {path.name} and {name}.json in {out}; validation "
              f"{json.dumps(card['metrics'].get('validation'))}", flush=True)
    except (TrainError, WeightsError, DatasetError, DMMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
