"""Saving and loading model weights: safetensors plus a JSON model card, never pickle.

A model ``<name>`` lives in two files of a weights folder (default: ``backend/weights`` of this
package):

* ``<name>.safetensors``: the state dict (parameters and buffers, including normalisation
  statistics) with metadata ``{"format": "poseforge-weights-1", "model": class name,
  "config": JSON of the frozen config dataclass}``;
* ``<name>.json``: the model card (data, split, command, steps, seed, metrics, licence).

A model class used with :func:`load_model` has a class attribute ``config_class`` (the frozen
dataclass) and a constructor ``cls(config)``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

FORMAT = "poseforge-weights-1"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or do not match the model (the message says which file)."""


def default_weights_dir() -> Path:
    """The weights folder: ``$POSEFORGE_WEIGHTS_DIR`` when set (your own trained weights), else
    the shipped ``backend/weights`` beside this module."""
    env = os.environ.get("POSEFORGE_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "weights"


def save_model(name: str, model: torch.nn.Module, config, card: dict, out_dir=None) -> Path:
    """Write ``<out_dir>/<name>.safetensors`` (state dict + config in the metadata) and
    ``<out_dir>/<name>.json`` (the model card).

    Args:
        name: file stem, e.g. ``"dposer"``.
        model: the module (its tensors are copied to CPU, contiguous).
        config: the frozen dataclass the model was built from.
        card: JSON-serialisable model card.
        out_dir: folder (created if needed); default :func:`default_weights_dir`.
    Returns:
        path of the ``.safetensors`` file.
    Raises:
        WeightsError: config is not a dataclass or the card is not JSON-serialisable.
    """
    from safetensors.torch import save_file

    if not dataclasses.is_dataclass(config):
        raise WeightsError(f"config of {name!r} must be a dataclass, got {type(config).__name__}")
    out = Path(out_dir) if out_dir is not None else default_weights_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        card_text = json.dumps(card, indent=2, sort_keys=False)
    except TypeError as exc:
        raise WeightsError(f"model card of {name!r} is not JSON-serialisable: {exc}") from exc
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "model": type(model).__name__,
            "config": json.dumps(dataclasses.asdict(config))}
    path = out / f"{name}.safetensors"
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    (out / f"{name}.json").write_text(card_text + "\n")
    return path


def read_metadata(path) -> dict:
    """The metadata dict of a safetensors file. Raises :class:`WeightsError` if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc


def load_model(name: str, cls, weights_dir=None, device="cpu"):
    """Rebuild ``cls(config)`` from ``<weights_dir>/<name>.safetensors`` and load its tensors.

    Args:
        name: file stem.
        cls: model class with ``config_class``.
        weights_dir: folder (default :func:`default_weights_dir`).
        device: where to put the model.
    Returns:
        the model in eval mode.
    Raises:
        WeightsError: file missing or corrupt, config not for ``cls``, or tensors not matching.
    """
    from safetensors.torch import load_file

    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise WeightsError(f"no {name} weights in {folder}: {path.name} is missing "
                           f"(train them with `poseforge train {name}` or set the weights folder)")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(f"{path} is not a PoseForge weights file (metadata {sorted(meta)})")
    if meta.get("model") != cls.__name__:
        raise WeightsError(f"{path} holds a {meta.get('model')} model, not {cls.__name__}")
    try:
        fields = json.loads(meta["config"])
        known = {f.name for f in dataclasses.fields(cls.config_class)}
        config = cls.config_class(**{k: v for k, v in fields.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"bad config in {path}: {exc}") from exc
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot read tensors of {path}: {exc}") from exc
    model = cls(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not match {cls.__name__}({config}): {exc}") from exc
    return model.to(device).eval()


def load_card(name: str, weights_dir=None) -> dict:
    """The model card ``<name>.json``; raises :class:`WeightsError` if missing or not JSON."""
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise WeightsError(f"no model card {path.name} in {folder}") from exc
    except json.JSONDecodeError as exc:
        raise WeightsError(f"model card {path} is not valid JSON: {exc}") from exc
