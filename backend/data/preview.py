"""Training data of "Render textured preview" (DMM, arXiv 2307.07754): the part labels, the reader
and a torch Dataset of frame windows.  NumPy + torch only (no bpy): the dataset itself is written
by ``poseforge data preview-set`` (rig/preview_render.py, inside Blender).

Folder layout (``DIR`` = the ``--out`` of the command)::

    DIR/index.json  {"version": 1, "resolution": R, "fps": 30, "parts": K, "command": "...",
                     "clips": [{"name", "character", "motion", "frames": T, "split": "train" | "test",
                                "texture": {...}, "camera": {...}, "light": {...},
                                "background": {...}, "ref_frame": ...}]}
    DIR/<name>.npz  "rgb" (T, R, R, 3) uint8       ground-truth frames of the textured character
                    "labels" (T, R, R) uint8       body-part label maps: 0 = background, 1..K = PART_NAMES
                    "ref_rgb" (R, R, 3) uint8      reference image: same character, texture, light and
                                                   camera, another pose (a frame outside the clip)
                    "ref_labels" (R, R) uint8      its label map

Images are rows top to bottom, sRGB ('Standard' view transform).  Held-out (``"test"``) clips use
mocap clips of the canonical cache's test split and texture seeds no train clip uses.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..skeleton import JOINT_NAMES
from .dataset import DatasetError

INDEX_NAME = "index.json"
PREVIEW_VERSION = 1

#: Body parts of the canonical body, label ids 1..K (0 = background).
PART_NAMES: tuple[str, ...] = (
    "head", "torso", "pelvis",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot")
#: Number of parts K (label ids run 0..K).
NUM_PARTS = len(PART_NAMES)
BACKGROUND = 0

#: Canonical joint -> part name: a vertex belongs to the part of its dominant joint.
JOINT_PART: dict[str, str] = {
    "head": "head", "neck": "head",
    "spine1": "torso", "spine2": "torso", "spine3": "torso", "left_collar": "torso", "right_collar": "torso",
    "pelvis": "pelvis",
    "left_shoulder": "left_upper_arm", "right_shoulder": "right_upper_arm",
    "left_elbow": "left_forearm", "right_elbow": "right_forearm",
    "left_wrist": "left_hand", "right_wrist": "right_hand",
    "left_hip": "left_thigh", "right_hip": "right_thigh",
    "left_knee": "left_shin", "right_knee": "right_shin",
    "left_ankle": "left_foot", "left_foot": "left_foot", "right_ankle": "right_foot", "right_foot": "right_foot",
}
assert set(JOINT_PART) == set(JOINT_NAMES)

#: ``(22,)`` label id (1..K) of each canonical joint, in JOINT_NAMES order.
JOINT_LABEL = np.array([PART_NAMES.index(JOINT_PART[j]) + 1 for j in JOINT_NAMES], dtype=np.uint8)

#: ``(K + 1, 3)`` uint8 sRGB colours the label maps are rendered with (row 0, background, is never
#: drawn: background pixels are the transparent ones).  Channels take the levels 0, 128, 255, so
#: any two colours differ by at least 127 in one channel and decoding is exact.
PART_COLORS = np.array([
    (0, 0, 0),
    (255, 255, 255), (255, 0, 0), (0, 0, 255),
    (0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (128, 0, 0), (0, 128, 0),
    (0, 0, 128), (128, 128, 0), (0, 128, 128), (128, 0, 128),
    (255, 128, 0), (128, 255, 0),
], dtype=np.uint8)
assert len(PART_COLORS) == NUM_PARTS + 1 and len({tuple(c) for c in PART_COLORS}) == NUM_PARTS + 1


class PreviewDataError(DatasetError):
    """A preview dataset folder is missing, incomplete or malformed (message names the file)."""


def decode_label_colors(rgba: np.ndarray, tolerance: int = 40) -> np.ndarray:
    """Label ids from a flat-shaded label render.

    Args:
        rgba: ``(H, W, 4)`` uint8 render (sRGB, 'Standard' view transform, no anti-aliasing);
            alpha 0 is background.
        tolerance: largest allowed per-channel distance to the nearest :data:`PART_COLORS` entry.
    Returns:
        ``(H, W)`` uint8 ids, 0 = background, 1..K = :data:`PART_NAMES`.
    Raises:
        PreviewDataError: a foreground pixel is farther than ``tolerance`` from every part colour
            (the render was anti-aliased, lit or colour-managed, so ids cannot be recovered exactly).
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise PreviewDataError(f"expected an (H, W, 4) label render, got {rgba.shape}")
    fg = rgba[..., 3] >= 128
    rgb = rgba[..., :3].astype(np.int16)
    dist = np.abs(rgb[:, :, None, :] - PART_COLORS[None, None, 1:].astype(np.int16)).max(-1)  # (H, W, K)
    ids = dist.argmin(-1).astype(np.uint8) + 1
    best = dist.min(-1)
    bad = fg & (best > tolerance)
    if bad.any():
        raise PreviewDataError(f"{int(bad.sum())} label pixels match no part colour (off by up to "
                               f"{int(best[bad].max())}): the label render is not flat")
    return np.where(fg, ids, BACKGROUND).astype(np.uint8)


# --- reading -------------------------------------------------------------------------------------

def load_index(data_dir: str | Path) -> dict:
    """``DIR/index.json`` of a preview dataset.

    Raises:
        PreviewDataError: no folder, no index, unreadable JSON, or an index without the fields
            of version 1 (``resolution``, ``parts``, ``clips`` with ``name`` / ``split`` / ``frames``).
    """
    data_dir = Path(data_dir).expanduser()
    path = data_dir / INDEX_NAME
    if not path.is_file():
        raise PreviewDataError(f"no preview dataset at {data_dir} (missing {INDEX_NAME}); "
                               "make one with `poseforge data preview-set --out <folder>`")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreviewDataError(f"{path}: unreadable index ({exc})") from exc
    if not isinstance(index, dict) or not all(k in index for k in ("resolution", "parts", "clips")):
        raise PreviewDataError(f"{path}: not a preview dataset index (needs resolution, parts, clips)")
    if index.get("version") != PREVIEW_VERSION:
        raise PreviewDataError(f"{path}: index version {index.get('version')!r}, expected {PREVIEW_VERSION}")
    if int(index["parts"]) != NUM_PARTS:
        raise PreviewDataError(f"{path}: {index['parts']} parts, this code knows {NUM_PARTS} (PART_NAMES)")
    for c in index["clips"]:
        if not isinstance(c, dict) or not all(k in c for k in ("name", "split", "frames")):
            raise PreviewDataError(f"{path}: a clip entry lacks name, split or frames: {c!r}")
    return index


def _clip_entry(index: dict, name: str, data_dir: Path) -> dict:
    for c in index["clips"]:
        if c["name"] == name:
            return c
    raise PreviewDataError(f"preview dataset {data_dir} has no clip '{name}'")


def load_clip(data_dir: str | Path, name: str, index: dict | None = None) -> dict[str, np.ndarray]:
    """One clip's arrays, checked against the index.

    Args:
        data_dir: the dataset folder; name: the clip name (``index["clips"][i]["name"]``).
        index: the already loaded index (default: read it).
    Returns:
        ``{"rgb": (T, R, R, 3) uint8, "labels": (T, R, R) uint8, "ref_rgb": (R, R, 3) uint8,
        "ref_labels": (R, R) uint8}``.
    Raises:
        PreviewDataError: unknown clip, missing or unreadable file, missing arrays, wrong dtype or
            shape (T and R from the index), label ids above K.
    """
    data_dir = Path(data_dir).expanduser()
    index = load_index(data_dir) if index is None else index
    entry = _clip_entry(index, name, data_dir)
    path = data_dir / f"{name}.npz"
    if not path.is_file():
        raise PreviewDataError(f"preview dataset {data_dir} is incomplete: {path.name} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError...
        raise PreviewDataError(f"{path}: unreadable clip file ({exc})") from exc
    T, R = int(entry["frames"]), int(index["resolution"])
    want = {"rgb": (T, R, R, 3), "labels": (T, R, R), "ref_rgb": (R, R, 3), "ref_labels": (R, R)}
    out = {}
    for key, shape in want.items():
        if key not in arrays:
            raise PreviewDataError(f"{path}: no '{key}' array (has {', '.join(sorted(arrays)) or 'nothing'})")
        a = arrays[key]
        if a.dtype != np.uint8 or a.shape != shape:
            raise PreviewDataError(f"{path}: '{key}' is {a.dtype} {a.shape}, expected uint8 {shape}")
        out[key] = a
    top = max(int(out["labels"].max(initial=0)), int(out["ref_labels"].max(initial=0)))
    if top > NUM_PARTS:
        raise PreviewDataError(f"{path}: label id {top} above the {NUM_PARTS} parts")
    return out


def clip_names(data_dir: str | Path, split: str = "train", index: dict | None = None) -> list[str]:
    """Names of the clips of a split (``"train"``, ``"test"`` or ``"all"``), in index order.

    Raises:
        PreviewDataError: unknown split, or as :func:`load_index`.
    """
    if split not in ("train", "test", "all"):
        raise PreviewDataError(f"unknown split {split!r} (train, test or all)")
    index = load_index(data_dir) if index is None else index
    return [c["name"] for c in index["clips"] if split == "all" or c["split"] == split]


def _as_image(a: np.ndarray):
    """uint8 (..., H, W, 3) -> float32 tensor (..., 3, H, W) in [-1, 1]."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3).contiguous()


class PreviewWindows:
    """torch Dataset of frame windows of a preview dataset (one split).

    Item ``i`` is ``(ref_rgb, ref_labels, rgb, labels)``:
        ref_rgb ``(3, R, R)`` float32 in [-1, 1]; ref_labels ``(R, R)`` uint8 (0..K);
        rgb ``(W, 3, R, R)`` float32 in [-1, 1]; labels ``(W, R, R)`` uint8 (0..K),
    with ``W = window`` consecutive frames of one clip (windows start every ``stride`` frames;
    clips shorter than the window are skipped).  Clip arrays are read on first use and kept.

    Args:
        data_dir: the dataset folder; split: ``"train"``, ``"test"`` or ``"all"``.
        window: frames per item (>= 1); stride: frames between window starts (default ``window``).
        clips: restrict to these clip names.
    Raises:
        PreviewDataError: as :func:`load_index` / :func:`load_clip`, a bad window or stride, or
            no window at all in the split.
    """

    def __init__(self, data_dir: str | Path, split: str = "train", window: int = 8,
                 stride: int | None = None, clips: Sequence[str] | None = None):
        self.data_dir = Path(data_dir).expanduser()
        self.index = load_index(self.data_dir)
        if window < 1:
            raise PreviewDataError(f"window must be >= 1 frame, got {window}")
        stride = window if stride is None else stride
        if stride < 1:
            raise PreviewDataError(f"stride must be >= 1 frame, got {stride}")
        self.window, self.stride = int(window), int(stride)
        self.resolution = int(self.index["resolution"])
        names = clip_names(self.data_dir, split, self.index)
        if clips is not None:
            unknown = sorted(set(clips) - set(names))
            if unknown:
                raise PreviewDataError(f"no {split} clips named " + ", ".join(unknown))
            names = [n for n in names if n in set(clips)]
        frames = {c["name"]: int(c["frames"]) for c in self.index["clips"]}
        self.items = [(n, s) for n in names for s in range(0, frames[n] - self.window + 1, self.stride)]
        if not self.items:
            raise PreviewDataError(f"preview dataset {self.data_dir}: no {split} window of {window} frames "
                                   f"({len(names)} clips)")
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def clip(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of one clip (:func:`load_clip`), cached."""
        if name not in self._cache:
            self._cache[name] = load_clip(self.data_dir, name, self.index)
        return self._cache[name]

    def __getitem__(self, i: int):
        import torch

        name, s = self.items[i]
        c = self.clip(name)
        w = slice(s, s + self.window)
        return (_as_image(c["ref_rgb"]), torch.from_numpy(c["ref_labels"].copy()),
                _as_image(c["rgb"][w]), torch.from_numpy(c["labels"][w].copy()))
