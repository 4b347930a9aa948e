"""The canonical mocap cache: folders of BVH clips -> one ``.npz`` per clip + ``index.json``.

``poseforge data build --bvh-dir DIR [--bvh-dir DIR2] [--out CACHE]`` retargets every ``.bvh``
under the folders onto the canonical body at 30 fps (:mod:`poseforge.backend.data.mocap`) and
writes ``CACHE/<clip>.npz`` (``rotations (T, 22, 4)`` float32 local quaternions w, x, y, z;
``root (T, 3)`` float32 metres, Y up) and ``CACHE/index.json``::

    {"version": 1, "fps": 30, "command": "...", "data_hash": "<sha256>",
     "clips": {"<clip>": {"file": "<clip>.npz", "source": "<dir>/<relative path>", "preset": "bandai",
                          "frames": 273, "split": "train" | "test",
                          "labels": {"content": "walk", "style": "normal", "take": 1,
                                     "content_id": 0, "style_id": 5}}},
     "skipped": {"<relative path>": "reason"}, "frames": {"train": N, "test": M}}

Split rule (DESIGN.md "Data"): a Bandai-Namco dataset-2 clip (``dataset-2_{content}_{style}_{take}``)
is in the test split when its take number is divisible by 5; every other clip trains.
The data hash is SHA-256 over the sorted relative file names and the bytes of each file, so two
caches built from the same BVH files have the same hash.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .bvh import BVHError
from .mocap import CanonicalMotion, MocapError, load_canonical_motion

INDEX_NAME = "index.json"
CACHE_VERSION = 1
MIN_FRAMES = 8  # shorter files are skeleton templates (the CMU set's standard.bvh has 3 frames)
_BANDAI = re.compile(r"^dataset-2_(?P<content>.+)_(?P<style>[^_]+)_(?P<take>\d+)$")


class DatasetError(ValueError):
    """A cache folder is missing, incomplete, or asked for an unknown split."""


def split_of(clip_name: str) -> str:
    """``"test"`` for a Bandai-2 clip whose take number is divisible by 5, else ``"train"``.

    Args:
        clip_name: file stem, e.g. ``"dataset-2_walk_normal_005"``.
    """
    m = _BANDAI.match(Path(clip_name).stem)
    if m and int(m.group("take")) % 5 == 0:
        return "test"
    return "train"


def clip_labels(bvh_path: Path) -> dict:
    """Content/style labels of a Bandai-2 clip from its name and the ``.json`` beside it
    (``{"content": 7, "style": 0}`` ids); ``{}`` for other clips."""
    m = _BANDAI.match(bvh_path.stem)
    if not m:
        return {}
    labels: dict = {"content": m.group("content"), "style": m.group("style"), "take": int(m.group("take"))}
    side = bvh_path.with_suffix(".json")
    if side.is_file():
        try:
            ids = json.loads(side.read_text(encoding="utf-8"))
            if isinstance(ids, dict):
                for k in ("content", "style"):
                    if isinstance(ids.get(k), int):
                        labels[f"{k}_id"] = ids[k]
        except (OSError, json.JSONDecodeError):
            pass
    return labels


def _find_clips(bvh_dirs: Iterable[Path]) -> list[tuple[Path, str, str]]:
    """(file, clip id, source name) of every .bvh under the folders, sorted by source name."""
    out, seen = [], set()
    dirs = [Path(d).expanduser() for d in bvh_dirs]
    for d in dirs:
        if not d.is_dir():
            raise DatasetError(f"BVH folder not found: {d}")
    multi = len({d.name for d in dirs}) < len(dirs)
    for n, d in enumerate(dirs):
        for f in sorted(d.rglob("*.bvh")):
            rel = f.relative_to(d).as_posix()
            source = f"{d.name}/{rel}"
            clip = rel[:-4].replace("/", "__")
            if clip in seen or multi:
                clip = f"{d.name}{n if multi else ''}__{clip}"
            seen.add(clip)
            out.append((f, clip, source))
    return out


def data_hash(files: list[tuple[Path, str]]) -> str:
    """SHA-256 over ``(relative name, file bytes)`` of the files, sorted by name (hex digest)."""
    h = hashlib.sha256()
    for path, name in sorted(files, key=lambda x: x[1]):
        h.update(name.encode("utf-8") + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _convert(job: tuple[str, str, str, str | None]) -> tuple[str, dict | None, str | None]:
    path, clip, out_dir, preset = job
    try:
        from .bvh import read_bvh
        from .mocap import bvh_to_canonical, detect_preset, source_frame_rate
        motion = read_bvh(path)
        if motion.num_frames < MIN_FRAMES:
            return clip, None, f"only {motion.num_frames} frames (skeleton template?)"
        p = preset if preset is not None else detect_preset(motion.names, motion.source)
        if isinstance(p, str):
            from ..presets import load_preset
            p = load_preset(p)
        cm = bvh_to_canonical(motion, p, path=path)
        np.savez(Path(out_dir) / f"{clip}.npz", rotations=cm.rotations, root=cm.root,
                 fps=np.float32(cm.fps))
        pid = p if isinstance(p, str) else p.get("id", "")
        return clip, {"frames": cm.num_frames, "preset": pid, "source_fps": round(source_frame_rate(motion, p, path), 3)}, None
    except (BVHError, MocapError, ValueError, OSError) as exc:
        return clip, None, str(exc)


def build_cache(bvh_dirs: Iterable[str | Path], out_dir: str | Path, preset: str | None = None,
                progress: Callable[[int, int, str], None] | None = None, workers: int = 2,
                command: str | None = None) -> dict:
    """Retarget every BVH clip under ``bvh_dirs`` onto the canonical body and cache it.

    Args:
        bvh_dirs: folders searched recursively for ``.bvh`` files.
        out_dir: cache folder (created); existing clip files are overwritten.
        preset: BVH rig preset id for all clips; ``None`` detects it per clip from joint names.
        progress: called as ``progress(done, total, clip)`` after each clip.
        workers: worker processes (2: the machines have 2 cores).
        command: the command line recorded in the index (default: ``sys.argv``).
    Returns:
        The index dict that was written to ``out_dir/index.json`` (see module doc).
    Raises:
        DatasetError: a folder is missing, or no clip could be converted.
    """
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = _find_clips(bvh_dirs)
    if not clips:
        raise DatasetError("no .bvh files found in " + ", ".join(str(d) for d in bvh_dirs))
    jobs = [(str(f), clip, str(out_dir), preset) for f, clip, _ in clips]
    meta = {clip: (f, source) for f, clip, source in clips}
    index: dict = {"version": CACHE_VERSION, "fps": 30,
                   "command": command if command is not None else " ".join(["poseforge"] + sys.argv[1:]),
                   "data_hash": "", "clips": {}, "skipped": {}}
    results = []
    if workers > 1 and len(jobs) > 1:
        with get_context("spawn").Pool(workers) as pool:
            for n, res in enumerate(pool.imap_unordered(_convert, jobs, chunksize=4), 1):
                results.append(res)
                if progress:
                    progress(n, len(jobs), res[0])
    else:
        for n, job in enumerate(jobs, 1):
            results.append(_convert(job))
            if progress:
                progress(n, len(jobs), job[1])
    for clip, info, err in sorted(results, key=lambda r: r[0]):
        f, source = meta[clip]
        if info is None:
            index["skipped"][source] = err
            continue
        index["clips"][clip] = {"file": f"{clip}.npz", "source": source, "preset": info["preset"],
                                "source_fps": info["source_fps"], "frames": info["frames"],
                                "split": split_of(f.stem), "labels": clip_labels(f)}
    if not index["clips"]:
        raise DatasetError("no clip could be converted: " + "; ".join(list(index["skipped"].values())[:3]))
    index["data_hash"] = data_hash([(f, source) for f, _, source in clips])
    totals = {"train": 0, "test": 0}
    for c in index["clips"].values():
        totals[c["split"]] += c["frames"]
    index["frames"] = totals
    tmp = out_dir / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    tmp.replace(out_dir / INDEX_NAME)
    return index


def cli_build(args) -> int:
    """``poseforge data build``: build the cache, print progress and a summary."""
    from ..cli import default_cache

    out = args.out if args.out is not None else default_cache() / "canonical"
    t0 = time.time()

    def progress(done: int, total: int, clip: str) -> None:
        if done == total or done % 100 == 0:
            print(f"  {done}/{total} clips ({time.time() - t0:.0f} s)", flush=True)

    cmd = "poseforge data build " + " ".join(f"--bvh-dir {d}" for d in args.bvh_dir)
    if args.preset:
        cmd += f" --preset {args.preset}"
    try:
        index = build_cache(args.bvh_dir, out, preset=args.preset, progress=progress, command=cmd)
    except DatasetError as exc:
        print(f"poseforge data build: {exc}", file=sys.stderr)
        return 2
    n = {"train": 0, "test": 0}
    for c in index["clips"].values():
        n[c["split"]] += 1
    print(f"cache {out}: {len(index['clips'])} clips, train {n['train']} clips / "
          f"{index['frames']['train']} frames, test {n['test']} clips / {index['frames']['test']} frames "
          f"at 30 fps, {time.time() - t0:.0f} s; data hash {index['data_hash'][:16]}")
    for src, why in index["skipped"].items():
        print(f"  skipped {src}: {why}")
    return 0


# --- reading the cache ----------------------------------------------------------------------------

def load_index(cache_dir: str | Path) -> dict:
    """The cache's ``index.json``; raises :class:`DatasetError` if absent or unreadable."""
    path = Path(cache_dir).expanduser() / INDEX_NAME
    if not path.is_file():
        raise DatasetError(f"no canonical cache at {Path(cache_dir)} (missing {INDEX_NAME}); "
                           "build it with `poseforge data build --bvh-dir <folder>`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: unreadable index ({exc})") from exc


def _select(index: dict, split: str) -> list[str]:
    if split not in ("train", "test", "all"):
        raise DatasetError(f"unknown split {split!r} (train, test or all)")
    return [c for c, info in sorted(index["clips"].items()) if split == "all" or info["split"] == split]


def load_clips(cache_dir: str | Path, split: str = "train") -> list[CanonicalMotion]:
    """All clips of a split as :class:`CanonicalMotion` (30 fps, float32), sorted by clip id.

    Args:
        cache_dir: folder written by :func:`build_cache`.
        split: ``"train"``, ``"test"`` or ``"all"``.
    Raises:
        DatasetError: missing cache, missing clip file, or unknown split.
    """
    cache_dir = Path(cache_dir).expanduser()
    index = load_index(cache_dir)
    out = []
    for clip in _select(index, split):
        path = cache_dir / index["clips"][clip]["file"]
        if not path.is_file():
            raise DatasetError(f"cache {cache_dir} is incomplete: {path.name} is missing (rebuild it)")
        with np.load(path) as z:
            out.append(CanonicalMotion(rotations=z["rotations"].astype(np.float32),
                                       root=z["root"].astype(np.float32),
                                       fps=float(z["fps"]) if "fps" in z else 30.0, source=clip))
    return out


def load_poses(cache_dir: str | Path, split: str = "train", every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a split, concatenated in clip order.

    Args:
        cache_dir: folder written by :func:`build_cache`.
        split: ``"train"``, ``"test"`` or ``"all"``.
        every: keep every k-th frame of each clip (``1``: all).
    Returns:
        ``(rotations (N, 22, 4) float32 local quaternions w, x, y, z, root (N, 3) float32 metres)``.
    Raises:
        DatasetError: as :func:`load_clips`, or ``every < 1``.
    """
    if every < 1:
        raise DatasetError(f"every must be >= 1, got {every}")
    clips = load_clips(cache_dir, split)
    if not clips:
        return np.zeros((0, 22, 4), np.float32), np.zeros((0, 3), np.float32)
    rots = np.concatenate([c.rotations[::every] for c in clips])
    root = np.concatenate([c.root[::every] for c in clips])
    return rots, root
