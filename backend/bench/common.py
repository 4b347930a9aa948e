"""Helpers shared by the baseline training and the benchmarks: the canonical cache, its hash,
body poses as axis-angle, the git revision, and commands written without machine paths.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """The ``--data`` folder is not a canonical cache (or holds no poses for the split)."""


def resolve_cache(data) -> Path:
    """The canonical cache folder from a ``--data`` argument (a path or a list of paths).

    Args:
        data: a folder made by ``poseforge data build`` (it holds ``index.json``), or a list whose
            first entry is one (argparse ``action="append"``).
    Returns:
        the folder.
    Raises:
        DataError: no folder given, several given, or the folder has no ``index.json``.
    """
    if isinstance(data, (list, tuple)):
        if len(data) != 1:
            raise DataError(f"give exactly one canonical cache with --data, got {len(data)}")
        data = data[0]
    if data is None:
        raise DataError("no --data folder given")
    path = Path(data).expanduser()
    if not (path / "index.json").is_file():
        raise DataError(f"{path} is not a canonical cache (no index.json): "
                        "build one with `poseforge data build --bvh-dir DIR --out DIR`")
    return path


def data_hash(cache: Path) -> str:
    """Hash identifying a canonical cache: the ``data_hash``/``hash`` field of its index.json
    when present, else the SHA-256 of index.json itself (which lists every clip and its frames)."""
    raw = (Path(cache) / "index.json").read_bytes()
    try:
        index = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{cache / 'index.json'} is not valid JSON: {exc}") from exc
    if isinstance(index, dict):
        for key in ("data_hash", "hash", "sha256"):
            if isinstance(index.get(key), str):
                return index[key]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def body_pose_aa(rotations: np.ndarray) -> np.ndarray:
    """Local quaternions ``(N, 22, 4)`` (w, x, y, z) -> body pose ``(N, 21, 3)`` axis-angle (radians)
    of the 21 non-root joints, float32, angles in ``[0, pi]``."""
    import torch

    from ..rotations import quat_to_axis_angle
    rotations = np.asarray(rotations, dtype=np.float32)
    if rotations.ndim != 3 or rotations.shape[1:] != (22, 4):
        raise DataError(f"expected (N, 22, 4) quaternions, got {rotations.shape}")
    return quat_to_axis_angle(torch.from_numpy(rotations[:, 1:])).numpy()


def load_split(cache: Path, split: str, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(rotations (N, 22, 4), root (N, 3))`` of one split of a canonical cache.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"`` (train and test together).
    Raises:
        DataError: the split holds no poses.
    """
    from ..data.dataset import load_poses

    if split == "all":
        parts = [load_poses(cache, s, every=every) for s in ("train", "test")]
        rot = np.concatenate([p[0] for p in parts])
        root = np.concatenate([p[1] for p in parts])
    else:
        rot, root = load_poses(cache, split, every=every)
    if len(rot) == 0:
        raise DataError(f"the {split!r} split of {cache} holds no poses")
    return np.asarray(rot, dtype=np.float32), np.asarray(root, dtype=np.float32)


def git_commit() -> str | None:
    """The git revision of this checkout, or ``None`` outside a git work tree."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def portable_path(path: Path) -> str:
    """A path as written in model cards and benchmark JSON: relative to ``$POSEFORGE_CACHE`` or
    the home folder when inside them (no machine-specific prefix), else only its name."""
    path = Path(path).expanduser().resolve()
    cache = Path(os.environ.get("POSEFORGE_CACHE", Path.home() / ".cache" / "poseforge")).resolve()
    for base, label in ((cache, "$POSEFORGE_CACHE"), (Path.home().resolve(), "~")):
        try:
            return f"{label}/{path.relative_to(base).as_posix()}"
        except ValueError:
            continue
    return path.name
