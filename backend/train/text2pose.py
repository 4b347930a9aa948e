"""Training the text-to-pose model: ``poseforge train text2pose --data DIR [--data DIR2] --out DIR``.

Pairs (built once, cached under ``$POSEFORGE_CACHE/text2pose``): every ``every``-th frame of the
"train" split clips and its left/right mirror, captioned by our posecode captioner
(:mod:`poseforge.backend.text.captioner`, with the Bandai content/style labels as motion
context; a mirrored clip's labels swap left and right), encoded into QPoser codes by the shipped
(or ``--qposer-dir``) tokenizer, captions embedded by the sentence encoder
(:mod:`poseforge.backend.text.encoder`).  One clip in ten (by a CRC of its name) is held out for
validation; the test split is not used.

Training (:mod:`poseforge.backend.models.text2pose`): masked code modelling (MaskGIT masking:
share of masked joints ``cos(pi/2 u)``; a quarter of the samples mask whole body parts instead,
as edits do), the text dropped for 10 % of samples (classifier-free guidance); the matching
model trained at the same time with a symmetric InfoNCE loss.  AdamW, warm-up and cosine decay,
an exponential moving average of the weights is what is saved.  Checkpoints every few minutes in
``--out`` so ``--resume`` continues.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import platform
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.text2pose import NUM_TOKENS, Text2Pose, Text2PoseConfig, tilt_codes
from ..rotations import quat_to_matrix
from ..skeleton import JOINT_INDEX, MIRROR
from ..weights import WeightsError, save_model
from .common import (TrainError, build_settings, ema_update, make_ema, parse_overrides,
                     pick_device, portable_command, warmup_cosine_lr)
from .dposer import _load_checkpoint, _save_checkpoint, resolve_caches

CKPT_NAME = "text2pose.ckpt"
PAIRS_VERSION = 2


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation and data settings (the architecture lives in :class:`Text2PoseConfig`)."""
    steps: int = 8000
    batch: int = 256
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup: int = 300
    ema_decay: float = 0.999
    text_drop: float = 0.1
    part_mask_prob: float = 0.25
    match_weight: float = 0.5
    balance: float = 0.5            # sample poses with weight count(signature) ** -balance (0: uniform)
    every: int = 10                 # keep every k-th frame of the 30 fps clips
    captions_per_pose: int = 1
    threads: int = 2
    checkpoint_minutes: float = 3.0


def is_validation(clip: str) -> bool:
    """One training clip in ten (by a CRC of its name) is held out for validation."""
    return zlib.crc32(clip.encode()) % 10 == 0


def _mirror_labels(labels):
    if not isinstance(labels, dict):
        return labels
    out = dict(labels)
    c = str(out.get("content", ""))
    out["content"] = c.replace("left", "\0").replace("right", "left").replace("\0", "right")
    return out


def mirror_poses(rotations: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left/right mirror of canonical poses about the body's X = 0 plane: ``(N, 22, 4)`` local
    quaternions (joints swap sides, ``(w, x, y, z) -> (w, x, -y, -z)``) and ``(N, 3)`` root
    (``x -> -x``)."""
    q = rotations[:, list(MIRROR)] * np.array([1.0, 1.0, -1.0, -1.0], np.float32)
    r = root * np.array([-1.0, 1.0, 1.0], np.float32)
    return q.astype(np.float32), r.astype(np.float32)


def _qposer_key(qposer_dir) -> str:
    """Hash of the tokenizer's encoder and codebooks (what decides the codes; the decoder may be
    fine-tuned without changing any pair)."""
    from safetensors.torch import load_file

    from ..weights import default_weights_dir
    p = Path(qposer_dir or default_weights_dir()) / "qposer.safetensors"
    if not p.is_file():
        raise TrainError(f"no QPoser tokenizer at {p}: train it first (poseforge train qposer)")
    h = hashlib.sha256()
    tensors = load_file(str(p))
    for name in sorted(tensors):
        if name.startswith(("enc", "joint_emb", "quantizer.codebook", "rest6d")):
            h.update(name.encode())
            h.update(tensors[name].float().numpy().tobytes())
    return h.hexdigest()[:16]


def pairs_key(caches, settings: TrainSettings, seed: int, qposer_dir, encoder_path: Path) -> str:
    """Cache key of the pairs: data, tokenizer weights, captioner code, sentence encoder, settings."""
    from ..data.dataset import load_index
    from ..text import captioner

    h = hashlib.sha256()
    for c in caches:
        h.update(load_index(c).get("data_hash", "").encode())
    h.update(_qposer_key(qposer_dir).encode())
    h.update(inspect.getsource(captioner).encode())
    h.update(encoder_path.name.encode())
    h.update(f"{PAIRS_VERSION}/{settings.every}/{settings.captions_per_pose}/{seed}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def build_pairs(caches, settings: TrainSettings, seed: int, qposer_dir=None, encoder_path=None,
                cache_dir: Path | None = None, log=print) -> dict:
    """Text-pose pairs for training (see the module docstring), loaded from the cache when present.

    Returns:
        ``{"codes": (N, 22, H) int16 (QPoser codes, then the pelvis tilt codes), "quats": (N, 22,
        4) float16 local rotations, "val": (N,)
        bool, "emb": (M, D) float16 caption embeddings, "pose": (M,) int32 pose of each caption,
        "captions": (M,) str}``.
    Raises:
        TrainError: no train clips, no tokenizer, no text encoder.
    """
    from ..cli import default_cache
    from ..data.dataset import load_clips, load_index
    from ..models.qposer import QPoser
    from ..text.captioner import caption
    from ..text.encoder import TextEncoderError, load_text_encoder, resolve_model_path
    from ..weights import load_model

    try:
        enc_path = resolve_model_path(encoder_path)
    except TextEncoderError as exc:
        raise TrainError(f"{exc} ({exc.hint})" if exc.hint else str(exc)) from exc
    key = pairs_key(caches, settings, seed, qposer_dir, enc_path)
    cache_dir = Path(cache_dir or default_cache() / "text2pose")
    path = cache_dir / f"pairs-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            log(f"text-pose pairs from {path.name}")
            return {k: z[k] for k in z.files}
    rots, roots, labels, val = [], [], [], []
    for c in caches:
        idx = load_index(c)
        for clip in load_clips(c, "train"):
            q, r = clip.rotations[::settings.every], clip.root[::settings.every]
            lab = idx["clips"].get(clip.source, {}).get("labels")
            lab = lab if isinstance(lab, dict) and lab.get("content") else None
            for qq, rr, ll in ((q, r, lab), (*mirror_poses(q, r), _mirror_labels(lab))):
                rots.append(qq)
                roots.append(rr)
                labels += [ll] * len(qq)
                val += [is_validation(clip.source)] * len(qq)
    if not rots:
        raise TrainError("the train split is empty: check --data")
    rots, roots, val = np.concatenate(rots), np.concatenate(roots), np.asarray(val)
    log(f"captioning {len(rots)} poses ({settings.captions_per_pose} each)")
    t0 = time.time()
    caps = caption(rots, roots, rng=seed, labels=labels, n=settings.captions_per_pose)
    captions = [c for cs in caps for c in cs]
    pose_of = np.repeat(np.arange(len(rots), dtype=np.int32), settings.captions_per_pose)
    log(f"captions in {time.time() - t0:.0f} s; encoding poses into QPoser codes")
    try:
        qposer = load_model("qposer", QPoser, weights_dir=qposer_dir).eval()
    except WeightsError as exc:
        raise TrainError(str(exc)) from exc
    codes = []
    for b in torch.split(torch.from_numpy(rots), 4096):
        m = quat_to_matrix(b)
        codes.append(torch.cat([qposer.encode(m[:, 1:]), tilt_codes(m[:, 0], qposer.config.codebook)[:, None]], 1))
    codes = torch.cat(codes).numpy().astype(np.int16)
    try:
        encoder = load_text_encoder(enc_path)
    except TextEncoderError as exc:
        raise TrainError(str(exc)) from exc
    t0 = time.time()
    uniq, inverse = np.unique(np.asarray(captions), return_inverse=True)
    by_len = np.argsort([len(u) for u in uniq], kind="stable")     # similar lengths batch together
    log(f"embedding {len(uniq)} distinct captions with {enc_path.name}")
    last = [time.time()]

    def progress(done, total):
        if time.time() - last[0] > 30:
            log(f"  {done}/{total} embedded ({time.time() - t0:.0f} s)")
            last[0] = time.time()
    emb_sorted = encoder.encode([str(u) for u in uniq[by_len]], batch_size=256, progress=progress)
    emb_u = np.empty_like(emb_sorted)
    emb_u[by_len] = emb_sorted
    out = {"codes": codes, "quats": rots.astype(np.float16), "val": val,
           "emb": emb_u[inverse].astype(np.float16), "pose": pose_of, "captions": np.asarray(captions)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    log(f"pairs written to {path.name} ({time.time() - t0:.0f} s of embedding)")
    return out


def pose_signatures(quats: np.ndarray) -> np.ndarray:
    """A coarse geometric signature of each pose, for rebalancing: knee and hip bends, lean
    forward / sideways, each hand above the head or below the pelvis, feet apart, binned.
    ``(N, 22, 4)`` local quaternions -> ``(N,)`` int64 ids (equal ids: similar poses)."""
    from ..bench.checks import bend_angle, face_forward, lean_angles
    from ..skeleton import forward_kinematics

    out = []
    for chunk in np.array_split(np.asarray(quats, np.float32), max(1, len(quats) // 8192)):
        pos = face_forward(forward_kinematics(quat_to_matrix(torch.from_numpy(chunk)))[0].numpy())
        lean = lean_angles(pos)
        feats = [np.digitize(bend_angle(pos, j), [30, 60, 95]) for j in ("left_knee", "right_knee")]
        feats += [np.digitize(bend_angle(pos, j), [30, 60, 95]) for j in ("left_hip", "right_hip")]
        feats += [np.digitize(lean["forward"], [-8, 8, 20, 45]), np.digitize(lean["left"], [-10, 10])]
        for w in ("left_wrist", "right_wrist"):
            h = pos[:, JOINT_INDEX[w], 1]
            feats.append(np.digitize(h, [pos[:, 0, 1].mean() - 0.05, pos[:, JOINT_INDEX["head"], 1].mean()]))
        feet = np.linalg.norm(pos[:, JOINT_INDEX["left_ankle"]] - pos[:, JOINT_INDEX["right_ankle"]], axis=-1)
        feats.append(np.digitize(feet, [0.3, 0.55]))
        sig = np.zeros(len(pos), np.int64)
        for f in feats:
            sig = sig * 8 + f
        out.append(sig)
    return np.concatenate(out)


def balance_weights(quats: np.ndarray, power: float) -> np.ndarray:
    """Sampling weights ``count(signature) ** -power`` (normalised to mean 1): rare poses
    (squats, deep leans, a knee up) are drawn more often than their share of the mocap."""
    sig = pose_signatures(quats)
    _, inv, counts = np.unique(sig, return_inverse=True, return_counts=True)
    w = counts[inv].astype(np.float64) ** -float(power)
    return w / w.mean()


def _part_masks() -> torch.Tensor:
    """``(P, 22)`` bool masks of body parts and their usual combinations (as edits mask them; the
    pelvis-tilt token stays known, as in edits)."""
    from ..text.parts import BODY_PARTS

    def m(*parts):
        v = torch.zeros(NUM_TOKENS, dtype=torch.bool)
        for p in parts:
            for j in BODY_PARTS[p]:
                v[JOINT_INDEX[j] - 1] = True
        return v
    combos = [("left_arm",), ("right_arm",), ("left_arm", "right_arm"), ("left_leg",), ("right_leg",),
              ("left_leg", "right_leg"), ("torso",), ("head",), ("left_leg", "right_leg", "torso"),
              ("torso", "head"), ("left_arm", "torso"), ("right_arm", "torso")]
    return torch.stack([m(*c) for c in combos])


def random_masks(batch: int, gen: torch.Generator, part_prob: float) -> torch.Tensor:
    """``(B, 22)`` bool training masks: MaskGIT's cosine share of random tokens (at least one),
    or, with probability ``part_prob``, a body part (combination)."""
    u = torch.rand(batch, generator=gen)
    n = torch.ceil(torch.cos(math.pi / 2 * u) * NUM_TOKENS).clamp(1, NUM_TOKENS)
    order = torch.rand(batch, NUM_TOKENS, generator=gen).argsort(1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(NUM_TOKENS).expand(batch, -1))
    masks = rank < n[:, None]
    parts = _part_masks()
    use = torch.rand(batch, generator=gen) < part_prob
    pick = parts[torch.randint(0, len(parts), (batch,), generator=gen)]
    return torch.where(use[:, None], pick, masks)


@torch.no_grad()
def validate(model: Text2Pose, pairs: dict, idx: np.ndarray, seed: int = 0, n: int = 2048) -> dict:
    """Held-out measures: code cross-entropy with every joint masked, with and without the text;
    matching accuracy (the right pose among 32 by cosine, R-precision style)."""
    g = np.random.default_rng(seed)
    sel = g.choice(idx, size=min(n, len(idx)), replace=False)
    pose = pairs["pose"][sel]
    codes = torch.from_numpy(pairs["codes"][pose].astype(np.int64))
    text = torch.from_numpy(pairs["emb"][sel].astype(np.float32))
    masked = torch.ones(len(sel), NUM_TOKENS, dtype=torch.bool)
    ce_t = float(model.loss(codes, masked, text, torch.zeros(len(sel), dtype=torch.bool)))
    ce_0 = float(model.loss(codes, masked, text, torch.ones(len(sel), dtype=torch.bool)))
    body = quat_to_matrix(torch.from_numpy(pairs["quats"][pose].astype(np.float32)))
    pe = model.matcher.embed_pose(body)
    te = model.matcher.embed_text(text)
    hits1 = hits5 = 0
    groups = len(sel) // 32
    for k in range(groups):
        s = slice(32 * k, 32 * (k + 1))
        sim = te[s] @ pe[s].T                                     # text -> 32 poses
        rank = (sim > sim.diag()[:, None]).sum(1)
        hits1 += int((rank < 1).sum())
        hits5 += int((rank < 5).sum())
    return {"code_ce_text": round(ce_t, 3), "code_ce_no_text": round(ce_0, 3),
            "match_top1_of_32": round(hits1 / max(1, groups * 32), 3),
            "match_top5_of_32": round(hits5 / max(1, groups * 32), 3)}


def train(caches, out: Path, config: Text2PoseConfig, settings: TrainSettings, seed: int = 0, device: str = "cpu",
          resume: bool = False, qposer_dir=None, encoder_path=None, command: str = "", log=print):
    """Train on the pairs of ``caches``; return ``(EMA model, card)``."""
    torch.set_num_threads(max(1, settings.threads))
    t0 = time.time()
    pairs = build_pairs(caches, settings, seed, qposer_dir, encoder_path, log=log)
    if pairs["emb"].shape[1] != config.text_dim:
        raise TrainError(f"the sentence encoder gives {pairs['emb'].shape[1]}-d embeddings, the config "
                         f"expects {config.text_dim} (set text_dim with --config)")
    val_pose = pairs["val"][pairs["pose"]]
    train_idx, val_idx = np.flatnonzero(~val_pose), np.flatnonzero(val_pose)
    log(f"{len(train_idx)} training pairs, {len(val_idx)} validation pairs, "
        f"{len(pairs['codes'])} poses")
    codes_all = torch.from_numpy(pairs["codes"].astype(np.int64))
    quats_all = torch.from_numpy(pairs["quats"].astype(np.float32))
    emb_all = torch.from_numpy(pairs["emb"].astype(np.float32))
    pose_all = torch.from_numpy(pairs["pose"].astype(np.int64))
    train_t = torch.from_numpy(train_idx)
    if settings.balance > 0:
        pose_w = balance_weights(pairs["quats"], settings.balance)
        draw_w = torch.from_numpy(pose_w[pairs["pose"][train_idx]])
        log(f"rebalanced sampling: pose weights {pose_w.min():.2f}-{pose_w.max():.2f} (balance {settings.balance})")
    else:
        draw_w = torch.ones(len(train_idx), dtype=torch.float64)

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Text2Pose(config).to(device)
    ema = make_ema(model)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                            betas=(0.9, 0.98))
    meta = {"config": dataclasses.asdict(config), "settings": dataclasses.asdict(settings), "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{CKPT_NAME}.safetensors"
    step = 0
    if resume and ckpt.is_file():
        step = _load_checkpoint(ckpt, model, ema, opt, gen, meta)
        log(f"resumed from {ckpt.name} at step {step}")

    def lr_at(s: int) -> float:
        return warmup_cosine_lr(s, settings.lr, settings.warmup, settings.steps)

    model.train()
    last_ckpt = last_log = time.time()
    acc, n_acc = np.zeros(2), 0
    while step < settings.steps:
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        sel = train_t[torch.multinomial(draw_w, settings.batch, replacement=True, generator=gen)]
        pose = pose_all[sel]
        codes, text = codes_all[pose].to(device), emb_all[sel].to(device)
        masked = random_masks(settings.batch, gen, settings.part_mask_prob).to(device)
        drop = (torch.rand(settings.batch, generator=gen) < settings.text_drop).to(device)
        l_code = model.loss(codes, masked, text, drop)
        l_match = model.matcher.loss(quat_to_matrix(quats_all[pose].to(device)), text)
        loss = l_code + settings.match_weight * l_match
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, step, settings.ema_decay)
        acc += (float(l_code.detach()), float(l_match.detach()))
        n_acc += 1
        now = time.time()
        if now - last_log > 60 or step == settings.steps:
            a = acc / max(1, n_acc)
            log(f"step {step}/{settings.steps} code {a[0]:.3f} match {a[1]:.3f} lr {lr_at(step):.2e} "
                f"({now - t0:.0f} s)")
            acc, n_acc, last_log = np.zeros(2), 0, now
        if now - last_ckpt > settings.checkpoint_minutes * 60 or step == settings.steps:
            _save_checkpoint(ckpt, model, ema, opt, step, gen, meta)
            last_ckpt = now
    ema = ema.cpu().eval()
    metrics = {"validation": validate(ema, pairs, val_idx, seed)}
    log(f"validation: {metrics['validation']}")
    card = {
        "model": "Text to QPoser codes: masked code transformer with classifier-free guidance, "
                 "plus a text-pose matching model that ranks candidates",
        "paper": "Li et al., QPoser, arXiv 2312.01104 (codes); Chang et al., MaskGIT, arXiv 2202.04200 "
                 "(masked modelling, iterative decoding); Delmas et al., PoseScript, arXiv 2210.11795 "
                 "(posecode captions, retrieval)",
        "text_encoder": config.text_model,
        "config": dataclasses.asdict(config),
        "training": dict(dataclasses.asdict(settings), seed=seed, wall_time_s=round(time.time() - t0, 1),
                         device=device, torch=torch.__version__, python=platform.python_version()),
        "data": {"description": "Bandai-Namco-Research-Motiondataset-2 train split plus the CMU dance clips, "
                               f"every {settings.every}th frame at 30 fps and its mirror, captioned by the "
                               "PoseForge posecode captioner; one clip in ten held out for validation",
                 "poses": int(len(pairs["codes"])), "train_pairs": int(len(train_idx)),
                 "validation_pairs": int(len(val_idx)),
                 "data_hash": ";".join(__import__("poseforge.backend.data.dataset", fromlist=["load_index"])
                                       .load_index(c).get("data_hash", "") for c in caches),
                 "qposer_encoder_sha256_16": _qposer_key(qposer_dir)},
        "command": command,
        "metrics": metrics,
        "licence": "CC BY-NC 4.0 (trained on Bandai-Namco-Research-Motiondataset-2)",
        "code_licence": "the PoseForge code is licensed separately (see blender_manifest.toml)",
    }
    return ema, card


def cli_main(args) -> int:
    """``poseforge train text2pose``: build pairs, train, save weights + model card to ``--out``."""
    from ..data.dataset import DatasetError
    from ..weights import default_weights_dir

    try:
        config, settings = build_settings(parse_overrides(getattr(args, "config", None)),
                                          Text2PoseConfig, TrainSettings, "text2pose")
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=int(args.steps))
        device = pick_device(args.device)
        caches = resolve_caches(args.data)
        out = Path(args.out).expanduser() if args.out is not None else default_weights_dir()
        command = portable_command()
        print(f"text2pose training: {dataclasses.asdict(config)} {dataclasses.asdict(settings)} seed {args.seed}",
              flush=True)
        model, card = train(caches, out, config, settings, seed=args.seed, device=device,
                            resume=bool(getattr(args, "resume", False)), qposer_dir=getattr(args, "qposer_dir", None),
                            encoder_path=getattr(args, "text_encoder", None), command=command,
                            log=lambda m: print(m, flush=True))
        path = save_model("text2pose", model.to("cpu"), config, card, out)
        print(f"saved {path.name} and text2pose.json in {out}; {json.dumps(card['metrics'])}", flush=True)
    except (TrainError, WeightsError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
