"""Render textured preview: the DMM network over a frame range, the mp4 writer and the ``preview`` job.

Inputs are what Blender renders for the animator's rig (rig/preview_labels.py): a reference image
of the character with its body-part label map, and one label map per frame of the range (ids
``0`` = background, ``1..K`` = ``PART_NAMES`` of ``backend/data/preview.py``).  The DMM network
(Yu et al., "Bidirectionally Deformable Motion Modulation For Video-based Human Pose Transfer",
ICCV 2023, arXiv 2307.07754; :mod:`poseforge.backend.models.dmm`) renders the character in every
frame's pose.  Long ranges run in windows of ``window`` frames that share ``overlap`` frames with
the next window; the shared frames are linearly cross-faded, so memory stays bounded and no seam
shows where two windows meet.  Frames are written to H.264 mp4 with PyAV (libx264, yuv420p).

Images are rows top to bottom, sRGB, uint8 ``(H, W, 3)``.
"""
from __future__ import annotations

import math
import os
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from ..service import JobCancelled, JobContext, JobError

#: Default frames per network window and frames shared by consecutive windows.
DEFAULT_WINDOW = 16
DEFAULT_OVERLAP = 4
#: Constant rate factor of the H.264 encoder (18: visually lossless for previews).
CRF = 18
#: The extension's own folder (the package root): never written into.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

_models: dict = {}
_models_lock = threading.Lock()


class PreviewError(JobError):
    """The preview cannot be rendered as asked (bad inputs, sizes, output path or weights)."""


# --- the model -----------------------------------------------------------------------------------

def load_preview_model(weights_dir=None, name: str = "dmm", device: str = "cpu", cache: bool = True):
    """The DMM network ``<weights_dir>/<name>.safetensors`` in eval mode, loaded once per file
    version and device (retrained weights are picked up: the file's size and time are in the key).

    Args:
        weights_dir: weights folder (default: ``$POSEFORGE_WEIGHTS_DIR`` or the shipped
            ``backend/weights``); name: file stem (``"dmm"``, ``"dmm_conv"``, ``"dmm_forward"``).
        device: ``"cpu"`` or ``"cuda"``.
        cache: keep the loaded model for the next call (``False``: always read the file).
    Returns:
        a :class:`~poseforge.backend.models.dmm.DMM` in eval mode on ``device``.
    Raises:
        PreviewError: the weights are missing, corrupt, or not DMM weights (the hint names the
            trainer and the preference).
    """
    from ..models.dmm import DMM
    from ..weights import WeightsError, default_weights_dir, load_model

    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    path = folder / f"{name}.safetensors"
    try:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    key = (str(folder), name, str(device), stamp)
    with _models_lock:
        if cache and key in _models:
            return _models[key]
        if stamp is None:
            variant = name[4:] if name.startswith("dmm_") else "dmm"
            how = "`poseforge train dmm`" + ("" if variant == "dmm" else f" with --config '{{\"variant\": \"{variant}\"}}'")
            raise PreviewError(f"No preview weights {path.name} in {folder}",
                               hint=f"Train them with {how}, or set the weights folder in the PoseForge preferences")
        try:
            model = load_model(name, DMM, folder, device).eval()
        except WeightsError as exc:
            raise PreviewError(f"No usable preview weights: {exc}",
                               hint="Train them with `poseforge train dmm`, or set the weights folder in the "
                                    "PoseForge preferences") from exc
        if cache:
            for k in [k for k in _models if k[:3] == key[:3]]:
                del _models[k]
            _models[key] = model
        return model


# --- rendering -----------------------------------------------------------------------------------

def plan_windows(frames: int, window: int | None = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP) -> list[tuple[int, int]]:
    """Frame windows ``[(start, end), ...]`` (end exclusive) covering ``0..frames-1``.

    Windows of ``window`` frames start every ``window - overlap`` frames; the last one is moved
    back to end on the last frame (so it may share more than ``overlap`` frames with the one
    before).  One window when ``window`` is ``None`` or not shorter than the range.

    Raises:
        PreviewError: ``frames < 1``, ``window < 1`` or ``overlap`` outside ``0..window-1``.
    """
    if frames < 1:
        raise PreviewError("No frames to render: the frame range is empty")
    if window is None or window >= frames:
        return [(0, frames)]
    window, overlap = int(window), int(overlap)
    if window < 1:
        raise PreviewError(f"The window must be at least 1 frame, got {window}")
    if not 0 <= overlap < window:
        raise PreviewError(f"The overlap must be 0 to {window - 1} frames for windows of {window}, got {overlap}")
    step = window - overlap
    starts = list(range(0, frames - window, step))
    starts.append(frames - window)
    return [(s, s + window) for s in starts]


def _blend_weights(n: int, n_in: int, n_out: int) -> np.ndarray:
    """``(n,)`` linear cross-fade weights of a window sharing ``n_in`` frames with the window before
    and ``n_out`` with the one after: ``(i + 1) / (n_in + 1)`` rising, ``(j + 1) / (n_out + 1)``
    falling, so two windows' weights sum to 1 on their shared frames."""
    i = np.arange(n, dtype=np.float32)
    w = np.ones(n, np.float32)
    if n_in > 0:
        w = np.minimum(w, (i + 1) / (n_in + 1))
    if n_out > 0:
        w = np.minimum(w, (n - i) / (n_out + 1))
    return w


def _check_images(ref_rgb, ref_labels, labels, parts: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref_rgb, ref_labels, labels = np.asarray(ref_rgb), np.asarray(ref_labels), np.asarray(labels)
    if ref_rgb.ndim != 3 or ref_rgb.shape[-1] != 3 or ref_rgb.dtype != np.uint8:
        raise PreviewError(f"The reference image must be (H, W, 3) uint8, got {ref_rgb.dtype} {ref_rgb.shape}")
    H, W = ref_rgb.shape[:2]
    if H % factor or W % factor or H < factor or W < factor:
        raise PreviewError(f"The preview size {W}x{H} must be a multiple of {factor} (at least {factor}) in both directions")
    if labels.ndim != 3 or len(labels) == 0:
        raise PreviewError("No frames to render: the frame range is empty" if labels.ndim == 3 else
                           f"The label maps must be (frames, H, W), got {labels.shape}")
    for what, a, shape in (("reference label map", ref_labels, (H, W)), ("label maps", labels, (len(labels), H, W))):
        if a.shape != shape:
            raise PreviewError(f"The {what} must be {shape} like the reference image, got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise PreviewError(f"The {what} must hold integer part ids, got {a.dtype}")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > parts:
            raise PreviewError(f"The {what} hold part ids {lo}..{hi}; the preview model knows 0..{parts}")
    return ref_rgb, ref_labels.astype(np.uint8), labels.astype(np.uint8)


def render_preview(model, ref_rgb, ref_labels, labels, window: int | None = DEFAULT_WINDOW,
                   overlap: int = DEFAULT_OVERLAP, progress: Callable[[float, str], None] | None = None,
                   check_cancel: Callable[[], object] | None = None, keep_background: bool = True,
                   background=None) -> np.ndarray:
    """Render the reference character in the pose of every label map (DMM, arXiv 2307.07754).

    With ``keep_background`` the pixels that are background in both the frame's and the
    reference's label maps (grown by :data:`BACKGROUND_MARGIN` pixels) are copied from the
    reference image: the preview's background is the reference's, and copying it exactly beats
    the network's near-copy (the camera is assumed still; the network cannot know the background
    behind a moving camera either).

    Args:
        model: a :class:`~poseforge.backend.models.dmm.DMM` (it runs on the model's device).
        ref_rgb: ``(H, W, 3)`` uint8 sRGB reference image of the character.
        ref_labels: ``(H, W)`` integer label map of the reference's pose (0 = background,
            ``1..K`` body parts; ``K = model.config.parts``).
        labels: ``(T, H, W)`` integer label maps of the frames to render, ``T >= 1``.
        window: frames per network pass (``None``: all frames at once).  Each window is a
            bidirectional recurrent pass of its own.
        overlap: frames shared by consecutive windows, cross-faded linearly
            (see :func:`plan_windows`, :func:`_blend_weights`).
        progress: ``progress(fraction, message)`` after each window (fraction of frames done).
        keep_background: copy the shared background from the reference (above).
        background: optional ``(H, W, 3)`` uint8 background plate (the reference's background
            without the character, known when the add-on rendered the reference itself): with
            ``keep_background`` every pixel away from the frame's own figure comes from it, so
            the place where the reference's figure stood shows the background, not a smudge.
        check_cancel: called before each window; stops the render by raising
            (e.g. :meth:`JobContext.check_cancel`) or by returning ``True`` (then
            :class:`~poseforge.backend.service.JobCancelled` is raised).
    Returns:
        ``(T, H, W, 3)`` uint8 sRGB frames.
    Raises:
        PreviewError: wrong shapes or dtypes, label ids above ``K``, sizes not divisible by
            ``2 ** (levels - 1)`` (4 for the shipped model), a bad window or overlap.
        JobCancelled: cancel was asked between two windows.
    """
    import torch

    from ..models.dmm import one_hot_labels

    cfg = model.config
    ref_rgb, ref_labels, labels = _check_images(ref_rgb, ref_labels, labels, cfg.parts, 2 ** (cfg.levels - 1))
    T, H, W = labels.shape
    if background is not None:
        background = np.asarray(background)
        if background.dtype != np.uint8 or background.shape != (H, W, 3):
            raise PreviewError(f"The background plate must be ({H}, {W}, 3) uint8 like the reference, got "
                               f"{background.dtype} {background.shape}")
    spans = plan_windows(T, window, overlap)
    dev = next(model.parameters()).device
    out = np.empty((T, H, W, 3), np.uint8)
    with torch.no_grad():
        ref = torch.from_numpy(np.ascontiguousarray(ref_rgb)).to(dev).float().div(127.5).sub(1.0)
        ref = ref.permute(2, 0, 1)[None].contiguous()
        ref_cond = one_hot_labels(torch.from_numpy(ref_labels).to(dev), cfg.parts)[None]
        buf_start, buf, wsum = 0, np.zeros((0, H, W, 3), np.float32), np.zeros(0, np.float32)
        for k, (s, e) in enumerate(spans):
            if check_cancel is not None and check_cancel():
                raise JobCancelled()
            cond = one_hot_labels(torch.from_numpy(labels[s:e]).to(dev), cfg.parts)[None]
            pred = model(ref, ref_cond, cond)[0]                          # (n, 3, H, W) in [-1, 1]
            pred = ((pred.permute(0, 2, 3, 1) + 1.0) * 127.5).float().cpu().numpy()
            n_in = spans[k - 1][1] - s if k > 0 else 0
            n_out = e - spans[k + 1][0] if k + 1 < len(spans) else 0
            w = _blend_weights(e - s, max(n_in, 0), max(n_out, 0))
            if e - buf_start > len(buf):                                  # grow the pending buffer
                extra = e - buf_start - len(buf)
                buf = np.concatenate([buf, np.zeros((extra, H, W, 3), np.float32)])
                wsum = np.concatenate([wsum, np.zeros(extra, np.float32)])
            buf[s - buf_start:e - buf_start] += pred * w[:, None, None, None]
            wsum[s - buf_start:e - buf_start] += w
            done = spans[k + 1][0] if k + 1 < len(spans) else e          # no later window touches these
            m = done - buf_start
            out[buf_start:done] = np.clip(np.rint(buf[:m] / wsum[:m, None, None, None]), 0, 255).astype(np.uint8)
            buf, wsum, buf_start = buf[m:], wsum[m:], done
            if progress is not None:
                progress(e / T, f"Rendered frames {s + 1}-{e} of {T}")
    if keep_background:
        if background is None:
            away = ~character_region(labels, ref_labels)
            out[away] = np.broadcast_to(ref_rgb, out.shape)[away]
        else:
            away = ~character_region(labels, np.zeros_like(ref_labels))
            out[away] = np.broadcast_to(background, out.shape)[away]
    return out


#: Pixels by which the character's region is grown before the background is copied.
BACKGROUND_MARGIN = 3


def character_region(labels: np.ndarray, ref_labels: np.ndarray, margin: int = BACKGROUND_MARGIN) -> np.ndarray:
    """Where a frame may differ from the reference: ``(T, H, W)`` bool, the body parts of the frame
    or of the reference (``labels (T, H, W)``, ``ref_labels (H, W)``, id > 0) grown by ``margin``
    pixels (a square of side ``2 margin + 1``)."""
    from scipy.ndimage import maximum_filter

    fg = (np.asarray(labels) > 0) | (np.asarray(ref_labels) > 0)[None]
    if margin > 0:
        fg = maximum_filter(fg, size=(1, 2 * margin + 1, 2 * margin + 1), mode="constant", cval=False)
    return fg


# --- mp4 -----------------------------------------------------------------------------------------

def frame_rate(fps: float) -> Fraction:
    """The exact frame rate of ``fps`` frames per second: NTSC rates (23.976, 29.97, 59.94... =
    ``n * 1000 / 1001``) to within 0.0005 become ``n * 1000 / 1001``, others the nearest fraction
    with a denominator up to 1001.

    Raises:
        PreviewError: ``fps`` not a positive finite number (or above 1000).
    """
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise PreviewError(f"The frame rate must be a number, got {fps!r}") from None
    if not math.isfinite(fps) or not 0 < fps <= 1000:
        raise PreviewError(f"The frame rate must be between 0 and 1000 frames per second, got {fps}")
    n = round(fps * 1.001)
    if abs(fps - round(fps)) > 1e-6 and n > 0 and abs(fps - n / 1.001) < 5e-4:
        return Fraction(n * 1000, 1001)
    rate = Fraction(fps).limit_denominator(1001)
    return rate if rate > 0 else Fraction(1, 1001)


def write_mp4(frames, path, fps: float, progress: Callable[[float, str], None] | None = None,
              check_cancel: Callable[[], object] | None = None) -> Path:
    """Write frames to an H.264 mp4 (PyAV: libx264, yuv420p, CRF 18) at ``fps``.

    The file is written under a temporary name in the same folder and moved onto ``path`` only
    when complete (``os.replace``); on any error or cancel the temporary file is removed, so no
    partial file is left under either name and an existing ``path`` is kept.

    Args:
        frames: ``(T, H, W, 3)`` uint8 sRGB, ``T >= 1``.  Odd sizes are padded by repeating the
            last row / column (yuv420p needs even sizes).
        path: the ``.mp4`` to write (its folder must exist).
        fps: frames per second (:func:`frame_rate`: 23.976 and 29.97 are stored exactly as
            24000/1001 and 30000/1001).
        progress: ``progress(fraction, message)`` every few frames; check_cancel: as in
            :func:`render_preview`, called every few frames.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        PreviewError: bad frames, frame rate or folder, or the encoder failed (the message names
            the file).
        JobCancelled: cancel was asked.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PreviewError(f"Frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise PreviewError("No frames to write: the frame range is empty")
    rate = frame_rate(fps)
    path = Path(path)
    if not path.parent.is_dir():
        raise PreviewError(f"The output folder {path.parent.name or path.parent} does not exist")
    T, H, W = frames.shape[:3]
    ph, pw = H % 2, W % 2
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part.mp4")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = W + pw, H + ph
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(CRF)}
            every = max(1, T // 20)
            for t in range(T):
                if t % every == 0:
                    if check_cancel is not None and check_cancel():
                        raise JobCancelled()
                    if progress is not None:
                        progress(t / T, f"Encoding frame {t + 1} of {T}")
                img = frames[t]
                if ph or pw:
                    img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except (JobCancelled, PreviewError):
        tmp.unlink(missing_ok=True)
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise PreviewError(f"Cannot write the video {path.name}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(1.0, f"Wrote {path.name}")
    return path


# --- the "preview" job ---------------------------------------------------------------------------

def check_output_path(out) -> Path:
    """The mp4 path of a preview, checked: absolute, in an existing folder, not a folder itself,
    not inside the extension's folder (it would be lost on the next update).

    Raises:
        PreviewError: no path, a missing folder, a folder given as the file, or a path inside
            the extension.
    """
    if not out:
        raise PreviewError("No output path for the preview", hint="Choose an output .mp4 path")
    path = Path(os.path.expanduser(str(out))).resolve()
    try:
        path.relative_to(PACKAGE_ROOT)
        inside = True
    except ValueError:
        inside = False
    if inside:
        raise PreviewError("The output path is inside the PoseForge extension folder",
                           hint="Choose a folder of your own (next to the .blend, for example)")
    if path.is_dir():
        raise PreviewError(f"The output path {path.name} is a folder, not a file", hint="Name an .mp4 file")
    if not path.parent.is_dir():
        raise PreviewError(f"The output folder {path.parent.name} does not exist",
                           hint="Create it or choose another output path")
    return path


def read_inputs(path) -> dict[str, np.ndarray]:
    """The arrays of a preview request's ``.npz``: ``ref_rgb (H, W, 3)`` uint8, ``ref_labels
    (H, W)`` and ``labels (T, H, W)`` integer part ids, and optionally ``background (H, W, 3)``
    uint8 (the plate of :func:`render_preview`).

    Raises:
        PreviewError: no such file, not a readable npz (pickled objects are refused), or an
            array missing.
    """
    if not path:
        raise PreviewError("The request names no inputs file")
    p = Path(str(path))
    if not p.is_file():
        raise PreviewError(f"Cannot read the preview inputs {p.name}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, ValueError (pickled object), OSError, EOFError...
        raise PreviewError(f"Cannot read the preview inputs {p.name}: {exc}") from exc
    missing = [k for k in ("ref_rgb", "ref_labels", "labels") if k not in arrays]
    if missing:
        raise PreviewError(f"The preview inputs {p.name} lack {', '.join(missing)} "
                           f"(have {', '.join(sorted(arrays)) or 'nothing'})")
    return {k: arrays[k] for k in ("ref_rgb", "ref_labels", "labels", "background") if k in arrays}


def _window_args(request: dict) -> tuple[int | None, int]:
    window = request.get("window", DEFAULT_WINDOW)
    overlap = request.get("overlap", DEFAULT_OVERLAP)
    try:
        window = None if window is None else int(window)
        overlap = int(overlap)
    except (TypeError, ValueError):
        raise PreviewError(f"window and overlap must be whole numbers of frames, got {window!r}, {overlap!r}") from None
    return window, overlap


def preview(request: dict, ctx: JobContext) -> dict:
    """Job ``preview``: render the textured preview of a frame range and write it to mp4.

    Request: ``inputs`` (path of an ``.npz`` with ``ref_rgb``, ``ref_labels``, ``labels`` and
    optionally ``background``, see :func:`read_inputs`), ``out`` (the ``.mp4``), ``fps`` (default 24), ``weights_dir``
    (optional), ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; default the job's), ``window``
    (default 16, ``None`` = all frames at once), ``overlap`` (default 4).

    Progress: loading, the network windows (to 85 %), then the encoding.  Cancel is honoured
    between windows and while encoding; nothing is left on disk then.

    Result: ``{"path": out, "frames": T, "seconds": wall time, "device", "width", "height", "fps"}``.
    Raises:
        PreviewError: unreadable or malformed inputs, an empty frame range, label ids above
            ``K``, sizes not divisible by 4, a bad output path (missing folder, inside the
            extension folder), a bad frame rate or missing weights.
    """
    from .jobs import resolve_device

    t0 = time.time()
    out = check_output_path(request.get("out"))
    rate = frame_rate(request.get("fps", 24.0))
    window, overlap = _window_args(request)
    arrays = read_inputs(request.get("inputs"))
    labels = arrays["labels"]
    if labels.ndim == 3:
        plan_windows(len(labels), window, overlap)                       # empty range, bad window: now
    device = resolve_device(request.get("device") or ctx.device)
    ctx.progress(0.02, "Loading the preview model")
    model = load_preview_model(request.get("weights_dir") or None, device=device)
    ctx.check_cancel()

    def net_progress(f: float, msg: str) -> None:
        ctx.progress(round(0.05 + 0.8 * f, 4), msg)

    def enc_progress(f: float, msg: str) -> None:
        ctx.progress(round(0.85 + 0.15 * f, 4), msg)

    frames = render_preview(model, arrays["ref_rgb"], arrays["ref_labels"], labels, window, overlap,
                            progress=net_progress, check_cancel=ctx.check_cancel,
                            background=arrays.get("background"))
    write_mp4(frames, out, float(rate), progress=enc_progress, check_cancel=ctx.check_cancel)
    return {"path": str(out), "frames": int(len(frames)), "seconds": round(time.time() - t0, 3),
            "device": device, "width": int(frames.shape[2]), "height": int(frames.shape[1]),
            "fps": float(rate)}
