"""What every ``poseforge train ...`` command shares: its error type, ``--config`` overrides,
the device choice and the command line recorded in a model card."""
from __future__ import annotations

import dataclasses
import json
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
