"""``poseforge bench preview``: the textured-preview benchmark of issue 5 (DMM, arXiv 2307.07754).

Protocol:

* **Data.**  The held-out (``"test"``) clips of a preview dataset (``poseforge data preview-set``;
  motions and texture seeds no training clip uses), every frame of each clip; ``--clips N``
  keeps ``N`` of them, evenly spread.
* **Rows.**  ``dmm`` (the full network, weights ``dmm``), the ablations trained the same way:
  ``conv`` (plain convolution instead of the deformable motion modulation, weights ``dmm_conv``)
  and ``forward`` (forward-only propagation, ``dmm_forward``), and ``copy_reference`` (every frame
  is the reference image).  A network row whose weights are missing is left out with a note.
* **Rendering.**  :func:`poseforge.backend.tasks.preview.render_preview` with the default windows
  (16 frames, 4 shared and cross-faded: what the animator gets), reported under ``full`` and
  ``character``; the same with all frames of a clip in one pass under ``one_pass`` (computed
  only for clips longer than one window, otherwise identical by construction).
* **Metrics** (:mod:`.preview_metrics`) on frames scaled to ``[0, 1]``, per clip, then averaged
  over the clips: PSNR (MSE pooled over the clip), SSIM (11x11 Gaussian window), L1 and temporal
  flicker (mean ``|e_{t+1} - e_t|`` of the error ``e``), on the full frame and on the character
  region (pixels where the ground-truth frame's label map shows a body part, dilated by 2 pixels;
  for flicker the union of the two frames' regions).
* **Ahead.**  For each ablation, region and metric: whether DMM is better (higher PSNR / SSIM,
  lower L1 / flicker).  Target of the issue: DMM ahead of every ablation on every metric.
* **Latency.**  A ``--latency-frames`` (120) sequence at the dataset's size (128x128): the test
  clips' label maps concatenated, the first clip's reference; :func:`render_preview` (default
  windows) plus :func:`write_mp4` on the CPU, median of 3 runs after a short warm-up; and the
  time to load the weights (median of 3, uncached).  Target: under 60 s for 120 frames.
* **Strip** (``--strip FILE.png``): one held-out clip, 6 frames spread over it; rows = ground
  truth, DMM, conv, forward-only, copy-reference, the label map (coloured); the reference image
  (and its label map) in a first column.

JSON written::

    {"benchmark": "preview", "protocol", "data", "clips", "frames", "resolution",
     "rows": {name: {"full": {...}, "character": {...}, "one_pass": {...}}},
     "ahead": {ablation: {"full": {metric: bool}, "character": {...}}}, "dmm_ahead_everywhere",
     "latency_s", "latency", "device", "torch", "weights", "notes", "commit", "seconds"}
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .common import git_commit

#: row name -> weights file stem (``None``: the copy-reference baseline, no weights).
ROWS: dict[str, str | None] = {"dmm": "dmm", "conv": "dmm_conv", "forward": "dmm_forward", "copy_reference": None}
ABLATIONS: tuple[str, ...] = ("conv", "forward", "copy_reference")
METRICS: tuple[str, ...] = ("psnr", "ssim", "l1", "flicker")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "l1": False, "flicker": False}
REGIONS: tuple[str, ...] = ("full", "character")
#: Pixels the ground-truth silhouette is dilated by for the character region.
CHARACTER_DILATE = 2
STRIP_COLUMNS = 6
TARGET_LATENCY_S = 60.0
LATENCY_RUNS = 3


class BenchError(RuntimeError):
    """The benchmark cannot run (no dataset, no test clip, no DMM weights); the message says what
    to do."""


def default_data_dir() -> Path:
    """The default of ``poseforge data preview-set --out``: ``$POSEFORGE_CACHE/preview``."""
    from ..cli import default_cache
    return default_cache() / "preview"


def evenly_spaced(total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``0..total-1`` (all of them when ``n`` is ``None`` or
    not smaller than ``total``)."""
    if n is None or n >= total:
        return list(range(total))
    if n < 1:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, n)})


def _video(frames: np.ndarray):
    """uint8 ``(T, H, W, 3)`` -> float64 tensor ``(T, 3, H, W)`` in [0, 1]."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float64).div(255.0).movedim(-1, -3)


def clip_metrics(pred: np.ndarray, gt: np.ndarray, labels: np.ndarray) -> dict:
    """``{"full": {psnr, ssim, l1, flicker}, "character": {...}}`` of one clip.

    Args:
        pred, gt: ``(T, H, W, 3)`` uint8 frames (rendered and ground truth), ``T >= 2``.
        labels: ``(T, H, W)`` ground-truth label maps (the character region).
    """
    from .preview_metrics import all_metrics, character_mask, masked_metrics

    p, g = _video(pred), _video(gt)
    mask = character_mask(labels, CHARACTER_DILATE)
    return {"full": all_metrics(p, g, 1.0), "character": masked_metrics(p, g, mask, 1.0)}


def _mean_rows(per_clip: list[dict]) -> dict:
    return {r: {m: float(np.mean([c[r][m] for c in per_clip])) for m in METRICS} for r in REGIONS}


def ahead(rows: dict) -> dict:
    """For each ablation present in ``rows`` and each region and metric: whether ``dmm`` is
    better (higher PSNR / SSIM, lower L1 / flicker; a tie is not ahead)."""
    out = {}
    d = rows["dmm"]
    for name in ABLATIONS:
        if name not in rows:
            continue
        out[name] = {r: {m: bool(d[r][m] > rows[name][r][m]) if HIGHER_IS_BETTER[m] else bool(d[r][m] < rows[name][r][m])
                         for m in METRICS} for r in REGIONS}
    return out


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """``(…, H, W)`` part ids -> ``(…, H, W, 3)`` uint8 in the label render's colours
    (``PART_COLORS``; background dark grey)."""
    from ..data.preview import PART_COLORS

    pal = PART_COLORS.copy()
    pal[0] = (40, 40, 40)
    return pal[np.clip(np.asarray(labels), 0, len(pal) - 1)]


def make_strip(path, ref_rgb: np.ndarray, ref_labels: np.ndarray, rows: Sequence[tuple[str, np.ndarray]],
               labels: np.ndarray, columns: int = STRIP_COLUMNS, gap: int = 2, row_labels: bool = True) -> Path:
    """Write the PNG strip of one clip (Pillow).

    Columns: the reference, then ``columns`` frames spread over the clip.  Rows: each
    ``(name, frames (T, H, W, 3) uint8)`` of ``rows`` in order (the reference image in the first
    column of the first row, empty in the others), then the label maps (coloured, the reference's
    label map first).

    Returns:
        ``path``; the PNG is written to a temporary name and renamed.
    """
    from PIL import Image, ImageDraw

    T, H, W = labels.shape
    idx = evenly_spaced(T, columns)
    names = [n for n, _ in rows] + ["label map"]
    label_w = 96 if row_labels else 0
    ncol = 1 + len(idx)
    top = 14 if row_labels else 0
    canvas = np.full((top + len(names) * (H + gap) + gap, label_w + ncol * (W + gap) + gap, 3), 255, np.uint8)

    def put(r: int, c: int, img: np.ndarray) -> None:
        y, x = top + gap + r * (H + gap), label_w + gap + c * (W + gap)
        canvas[y:y + H, x:x + W] = img

    put(0, 0, ref_rgb)
    for r, (_, frames) in enumerate(rows):
        for c, t in enumerate(idx):
            put(r, c + 1, frames[t])
    lab = colour_labels(labels)
    put(len(rows), 0, colour_labels(ref_labels))
    for c, t in enumerate(idx):
        put(len(rows), c + 1, lab[t])
    img = Image.fromarray(canvas)
    if row_labels:
        draw = ImageDraw.Draw(img)
        for r, name in enumerate(names):
            draw.text((4, top + gap + r * (H + gap) + H // 2 - 5), name, fill=(0, 0, 0))
        for c, head in enumerate(["reference"] + [f"frame {t}" for t in idx]):
            draw.text((label_w + gap + c * (W + gap) + 2, 1), head, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def measure_latency(weights_dir, ref_rgb, ref_labels, labels, runs: int = LATENCY_RUNS, log=None) -> dict:
    """Seconds for a textured preview of ``labels`` on the CPU: :func:`render_preview` (default
    windows) plus :func:`write_mp4` into a temporary folder; median of ``runs`` after a warm-up
    on one window; and the weights' load time (median of ``runs`` uncached loads)."""
    import torch

    from ..tasks.preview import DEFAULT_WINDOW, load_preview_model, render_preview, write_mp4

    loads = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model = load_preview_model(weights_dir, "dmm", "cpu", cache=False)
        loads.append(time.perf_counter() - t0)
    render_preview(model, ref_rgb, ref_labels, labels[:min(len(labels), DEFAULT_WINDOW)])   # warm-up
    times, net = [], []
    with tempfile.TemporaryDirectory(prefix="poseforge-bench-") as tmp:
        for i in range(runs):
            t0 = time.perf_counter()
            frames = render_preview(model, ref_rgb, ref_labels, labels)
            t1 = time.perf_counter()
            write_mp4(frames, Path(tmp) / "latency.mp4", 30.0)
            times.append(time.perf_counter() - t0)
            net.append(t1 - t0)
            if log is not None:
                log(f"  latency run {i + 1}: {times[-1]:.1f} s ({net[-1]:.1f} s network)")
    med = statistics.median(times)
    T, H, W = labels.shape
    return {"median_s": round(med, 3), "runs_s": [round(t, 3) for t in times],
            "network_median_s": round(statistics.median(net), 3), "frames": int(T), "size": [int(W), int(H)],
            "per_frame_s": round(med / T, 4), "load_weights_s": round(statistics.median(loads), 4),
            "device": "cpu", "threads": int(torch.get_num_threads()),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "target_s": TARGET_LATENCY_S if T == 120 and (H, W) == (128, 128) else None,
            "met": bool(med < TARGET_LATENCY_S) if T == 120 and (H, W) == (128, 128) else None}


def _card_summary(name: str, weights_dir) -> dict | None:
    from ..weights import WeightsError, load_card
    try:
        card = load_card(name, weights_dir)
    except WeightsError:
        return None
    tr = card.get("training", {}) if isinstance(card, dict) else {}
    return {"variant": card.get("variant"), "steps": tr.get("steps_done", tr.get("steps")),
            "wall_time_s": tr.get("wall_time_s")}


def run_bench(data=None, *, weights_dir=None, clips: int | None = None, strip=None, latency_frames: int = 120,
              device: str = "cpu", window: int = 16, overlap: int = 4,
              log: Callable[[str], None] = lambda m: None) -> dict:
    """Run the benchmark (see the module docstring); returns the JSON-ready result.

    Args:
        data: preview dataset folder (default :func:`default_data_dir`).
        weights_dir: folder of ``dmm`` / ``dmm_conv`` / ``dmm_forward`` (default: the shipped one).
        clips: evaluate this many test clips, evenly spread (default all).
        strip: write the PNG strip of the first evaluated clip here.
        latency_frames: frames of the latency sequence (0: skip the latency).
        device: where the metric renders run (the latency is always on the CPU).
        window, overlap: the windows of :func:`render_preview` (the defaults users get).
    Raises:
        BenchError: no dataset (names ``poseforge data preview-set``), no test clip, no DMM weights,
            a bad argument.
    """
    import torch

    from ..data.preview import PreviewDataError, clip_names, load_clip, load_index
    from ..service import JobError
    from ..tasks.preview import load_preview_model, render_preview

    t_start = time.time()
    data = Path(data).expanduser() if data is not None else default_data_dir()
    if clips is not None and clips < 1:
        raise BenchError(f"--clips must be 1 or more, got {clips}")
    if latency_frames < 0:
        raise BenchError(f"--latency-frames must be 0 or more, got {latency_frames}")
    try:
        index = load_index(data)
    except PreviewDataError as exc:
        raise BenchError(f"no preview dataset at {data} ({exc}); make one with "
                         f"`poseforge data preview-set --out {data}`") from None
    names = clip_names(data, "test", index)
    if not names:
        raise BenchError(f"the preview dataset {data.name} has no held-out (test) clip; "
                         "make one with `poseforge data preview-set` (--test-fraction)")
    names = [names[i] for i in evenly_spaced(len(names), clips)]
    notes: list[str] = []
    models = {}
    for row, stem in ROWS.items():
        if stem is None:
            continue
        try:
            models[row] = load_preview_model(weights_dir, stem, device, cache=False)
        except JobError as exc:
            if row == "dmm":
                raise BenchError(exc.message) from None
            folder = str(Path(weights_dir)) if weights_dir else None
            why = exc.message.replace(folder, f"the weights folder {Path(folder).name}") if folder else exc.message
            notes.append(f"row '{row}' left out: {why}")
    try:
        data_clips = {n: load_clip(data, n, index) for n in names}
    except PreviewDataError as exc:
        raise BenchError(str(exc)) from None
    short = [n for n, c in data_clips.items() if len(c["labels"]) < 2]
    if short:
        raise BenchError(f"test clips with fewer than 2 frames (flicker needs 2): {', '.join(short)}")
    row_names = [r for r in ROWS if r in models or ROWS[r] is None]
    per_clip = {r: [] for r in row_names}
    per_clip_one = {r: [] for r in row_names}
    strip_frames: dict[str, np.ndarray] = {}
    frames_total = 0
    for i, name in enumerate(names):
        c = data_clips[name]
        T = len(c["labels"])
        frames_total += T
        for row in row_names:
            if row == "copy_reference":
                pred = np.repeat(c["ref_rgb"][None], T, 0)
                one = pred
            else:
                pred = render_preview(models[row], c["ref_rgb"], c["ref_labels"], c["labels"], window, overlap)
                one = pred if T <= window else render_preview(models[row], c["ref_rgb"], c["ref_labels"],
                                                              c["labels"], None)
            m = clip_metrics(pred, c["rgb"], c["labels"])
            per_clip[row].append(m)
            per_clip_one[row].append(m if one is pred else clip_metrics(one, c["rgb"], c["labels"]))
            if i == 0:
                strip_frames[row] = pred
        log(f"clip {i + 1}/{len(names)} {name}: " + ", ".join(
            f"{r} {per_clip[r][-1]['full']['psnr']:.2f} dB" for r in row_names) + f" ({time.time() - t_start:.0f} s)")
    if all(len(c["labels"]) <= window for c in data_clips.values()):
        notes.append(f"every clip fits one window of {window} frames: 'one_pass' equals the default windows")
    rows = {}
    for r in row_names:
        rows[r] = _mean_rows(per_clip[r])
        rows[r]["one_pass"] = _mean_rows(per_clip_one[r])
    ah = ahead(rows)
    missing = [a for a in ABLATIONS if a not in rows]
    everywhere = bool(ah) and not missing and all(v for a in ah.values() for reg in a.values() for v in reg.values())

    strip_path = None
    if strip is not None:
        first = data_clips[names[0]]
        titles = {"dmm": "DMM", "conv": "conv (ablation)", "forward": "forward-only", "copy_reference": "copy reference"}
        strip_rows = [("ground truth", first["rgb"])] + [(titles[r], strip_frames[r]) for r in row_names]
        strip_path = make_strip(strip, first["ref_rgb"], first["ref_labels"], strip_rows, first["labels"])
        log(f"wrote {strip_path} (clip {names[0]})")

    latency = None
    if latency_frames > 0:
        labs = np.concatenate([data_clips[n]["labels"] for n in names])
        reps = -(-latency_frames // len(labs))
        labs = np.concatenate([labs] * reps)[:latency_frames]
        first = data_clips[names[0]]
        log(f"latency: {latency_frames} frames of {labs.shape[2]}x{labs.shape[1]} on the CPU")
        latency = measure_latency(weights_dir, first["ref_rgb"], first["ref_labels"], labs, log=log)

    return {
        "benchmark": "preview",
        "protocol": {"split": "test", "clips_selected": "all" if clips is None else f"{len(names)} evenly spread",
                     "window": window, "overlap": overlap, "reported": "default windows (cross-faded)",
                     "one_pass": "all frames of a clip in one network pass",
                     "scale": "frames in [0, 1]", "aggregate": "per clip, mean over clips",
                     "psnr": "MSE pooled over the clip", "ssim": "11x11 Gaussian window, sigma 1.5",
                     "flicker": "mean |e(t+1) - e(t)| of the error e",
                     "character_region": f"ground-truth label map > 0 dilated by {CHARACTER_DILATE} px "
                                         "(flicker: union of the two frames' regions)"},
        "data": data.name,
        "resolution": int(index["resolution"]),
        "clips": len(names),
        "clip_names": names,
        "frames": int(frames_total),
        "rows": rows,
        "ahead": ah,
        "dmm_ahead_everywhere": everywhere,
        "latency_s": None if latency is None else latency["median_s"],
        "latency": latency,
        "strip": None if strip_path is None else {"file": strip_path.name, "clip": names[0]},
        "device": device,
        "torch": torch.__version__,
        "weights": {r: _card_summary(ROWS[r], weights_dir) for r in row_names if ROWS[r]},
        "notes": notes,
        "commit": git_commit(),
        "seconds": round(time.time() - t_start, 1),
    }


def table(result: dict) -> str:
    """Markdown table: rows = methods, columns = PSNR / SSIM / L1 / flicker on the full frame and
    on the character region; then the latency."""
    head = "| method | " + " | ".join(f"{m.upper() if m != 'flicker' else 'flicker'} {r}"
                                      for r in REGIONS for m in METRICS) + " |"
    lines = [head, "|---" * (1 + len(REGIONS) * len(METRICS)) + "|"]
    fmt = {"psnr": "{:.2f}", "ssim": "{:.4f}", "l1": "{:.4f}", "flicker": "{:.4f}"}
    for name, row in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(fmt[m].format(row[r][m]) for r in REGIONS for m in METRICS) + " |")
    lat = result.get("latency")
    if lat:
        lines.append("")
        lines.append(f"latency: {lat['frames']} frames of {lat['size'][0]}x{lat['size'][1]} on the CPU "
                     f"({lat['threads']} thread{'s' if lat['threads'] != 1 else ''}): {lat['median_s']:.1f} s median of {len(lat['runs_s'])} "
                     f"({lat['per_frame_s']:.3f} s per frame), weights load {lat['load_weights_s']:.3f} s")
    lines.append(f"DMM ahead of every ablation on every metric: {'yes' if result['dmm_ahead_everywhere'] else 'no'}")
    return "\n".join(lines)


def cli_main(args) -> int:
    """Entry point of ``poseforge bench preview --out FILE.json [--data DIR] [--weights DIR]
    [--clips N] [--strip FILE.png] [--latency-frames 120] [--device auto]``.

    Returns 0, or 2 with one line on stderr when the benchmark cannot run (nothing written).
    """
    import torch

    from ..service import JobError
    from ..tasks.jobs import resolve_device
    from ..tasks.text2pose_cli import write_json_atomic

    torch.set_num_threads(2)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        device = resolve_device(getattr(args, "device", "auto") or "auto")
        result = run_bench(getattr(args, "data", None), weights_dir=getattr(args, "weights_dir", None),
                           clips=getattr(args, "clips", None), strip=getattr(args, "strip", None),
                           latency_frames=int(getattr(args, "latency_frames", 120)), device=device, log=log)
    except (BenchError, JobError) as exc:
        msg = exc.message if isinstance(exc, JobError) else str(exc)
        print(f"poseforge bench preview: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    for n in result["notes"]:
        log(f"note: {n}")
    print(table(result))
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


__all__ = ["ROWS", "ABLATIONS", "METRICS", "BenchError", "default_data_dir", "evenly_spaced", "clip_metrics",
           "ahead", "colour_labels", "make_strip", "measure_latency", "run_bench", "table", "cli_main"]
