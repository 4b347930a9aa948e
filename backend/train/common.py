"""What every ``poseforge train ...`` command shares: its error type, ``--config`` overrides,
the device choice, the command line recorded in a model card, the learning-rate schedule and the
exponential moving average of the weights."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
from pathlib import Path


class TrainError(RuntimeError):
    """Training cannot start or continue (bad data folder, incompatible checkpoint, bad settings)."""


def parse_overrides(text: str | None, env: str | None = None) -> dict:
    """Settings overrides: the ``--config`` JSON object, else the environment variable ``env``.

    Raises:
        TrainError: not JSON, or not a JSON object (names where it came from).
    """
    source = "--config" if text else env
    text = (text or (os.environ.get(env, "") if env else "")).strip()
    if not text:
        return {}
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainError(f"{source} is not JSON: {exc}") from exc
    if not isinstance(val, dict):
        raise TrainError(f"{source} must be a JSON object")
    return val


def build_settings(over: dict, config_cls, settings_cls, name: str):
    """``(config_cls(...), settings_cls(...))`` from their defaults plus ``over``.

    Raises:
        TrainError: a key that is neither a model nor a training setting.
    """
    mf = {f.name for f in dataclasses.fields(config_cls)}
    tf = {f.name for f in dataclasses.fields(settings_cls)}
    bad = set(over) - mf - tf
    if bad:
        raise TrainError(f"unknown {name} training settings: {sorted(bad)}")
    return (config_cls(**{k: v for k, v in over.items() if k in mf}),
            settings_cls(**{k: v for k, v in over.items() if k in tf}))


def pick_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; other values unchanged."""
    if device == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def portable_command(argv: list[str] | None = None) -> str:
    """``poseforge ...`` as typed, with the home folder written ``~`` (model cards carry no
    path of the machine that trained)."""
    home = str(Path.home())
    args = sys.argv[1:] if argv is None else argv
    return "poseforge " + " ".join(a if not a.startswith(home) else "~" + a[len(home):] for a in args)


def warmup_cosine_lr(step: int, lr: float, warmup: int, steps: int, floor: float = 0.02) -> float:
    """Learning rate at ``step``: linear warm-up over ``warmup`` steps, then cosine decay to
    ``floor * lr`` at ``steps`` (SGDR, Loshchilov & Hutter 2017, without restarts)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def make_ema(model):
    """A frozen copy of ``model`` (eval mode, no gradients) to hold the moving average."""
    ema = copy.deepcopy(model)
    ema.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


def ema_update(ema, model, step: int, decay: float) -> None:
    """One step of the exponential moving average of the parameters, the decay warmed up as
    ``min(decay, (1 + step) / (10 + step))``."""
    import torch

    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm.detach(), 1 - d)
