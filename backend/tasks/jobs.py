"""Service tasks: plain-data requests -> arrays -> the inference procedures -> plain-data results.

Poses cross the service as canonical data: ``rotations`` ``(T, 22, 4)`` local quaternions
``(w, x, y, z)`` relative to the rest T-pose, ``root`` ``(T, 3)`` pelvis positions in metres
(Y up).  Every task checks its input first and raises :class:`~..service.JobError` with a
message an animator can act on; nothing is computed from bad input.
"""
from __future__ import annotations

import math
import threading

from ..service import JobContext, JobError

#: Longest action a single job accepts; longer ones must be split by the caller.
MAX_FRAMES = 20000

_models: dict = {}
_models_lock = threading.Lock()


def ping(request: dict, ctx: JobContext) -> dict:
    """Health check: echoes ``request["echo"]``, reports the torch version and devices.

    ``steps`` / ``delay`` (seconds per step) make it a slow job, to check progress and cancel.
    """
    import time

    import torch

    steps = int(request.get("steps", 1))
    for i in range(steps):
        ctx.progress((i + 1) / steps, f"ping {i + 1}/{steps}")
        time.sleep(float(request.get("delay", 0.0)))
    return {"echo": request.get("echo"), "torch": torch.__version__, "device": resolve_device(ctx.device),
            "cuda": torch.cuda.is_available()}


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; others unchanged (checked)."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise JobError("The CUDA device was chosen but no GPU is usable here",
                       hint="Set the device to Auto or CPU in the PoseForge preferences")
    if device not in ("cpu", "cuda"):
        raise JobError(f"Unknown device '{device}' (auto, cpu or cuda)")
    return device


def load_prior(weights_dir: str | None, device: str):
    """The shipped (or user-trained) DPoser prior, loaded once per process and device."""
    from ..models.dposer import DPoser
    from ..weights import WeightsError, load_model

    key = (weights_dir or "", device)
    with _models_lock:
        if key not in _models:
            try:
                model = load_model("dposer", DPoser, weights_dir=weights_dir, device=device)
            except WeightsError as exc:
                raise JobError(str(exc), hint="Check the weights folder in the PoseForge preferences") from exc
            model.eval()
            _models[key] = model
        return _models[key]


def poses_from_request(request: dict):
    """Check and convert a request's poses.

    Returns:
        ``(local (T, 22, 3, 3) float32 tensor, root (T, 3) tensor)``.
    Raises:
        JobError: missing or empty poses, wrong shapes, NaN / infinite values (frame and joint
            named), zero quaternions, or more than :data:`MAX_FRAMES` frames.
    """
    import numpy as np
    import torch

    from ..rotations import quat_to_matrix
    from ..skeleton import JOINT_NAMES

    rots = request.get("rotations")
    if rots is None or len(rots) == 0:
        raise JobError("No frames to work on: the frame range is empty")
    try:
        q = np.asarray(rots, dtype=np.float64)
        root = np.asarray(request.get("root", np.zeros((len(q), 3))), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise JobError(f"Malformed poses: {exc}") from exc
    if q.ndim != 3 or q.shape[1:] != (22, 4):
        raise JobError(f"Poses must be (frames, 22, 4) quaternions, got {q.shape}")
    if root.shape != (len(q), 3):
        raise JobError(f"Root positions must be ({len(q)}, 3), got {root.shape}")
    if len(q) > MAX_FRAMES:
        raise JobError(f"{len(q)} frames is more than one job takes ({MAX_FRAMES})",
                       hint="Choose a shorter frame range")
    bad = ~np.isfinite(q).all(-1)
    if bad.any():
        t, j = map(int, np.argwhere(bad)[0])
        raise JobError(f"Rotation of '{JOINT_NAMES[j]}' at frame index {t} is not a number (NaN or infinite)")
    if (~np.isfinite(root)).any():
        t = int(np.argwhere(~np.isfinite(root).all(-1))[0][0])
        raise JobError(f"Root position at frame index {t} is not a number (NaN or infinite)")
    if (np.linalg.norm(q, axis=-1) < 1e-6).any():
        t, j = map(int, np.argwhere(np.linalg.norm(q, axis=-1) < 1e-6)[0])
        raise JobError(f"Rotation of '{JOINT_NAMES[j]}' at frame index {t} is a zero quaternion")
    local = quat_to_matrix(torch.as_tensor(q, dtype=torch.float32))
    return local, torch.as_tensor(root, dtype=torch.float32)


def _pinned(request: dict, frames: int):
    import numpy as np
    import torch

    pinned = request.get("pinned")
    if pinned is None:
        return torch.zeros(frames, 22, dtype=torch.bool)
    p = np.asarray(pinned, dtype=bool)
    if p.shape == (22,):
        p = np.repeat(p[None], frames, axis=0)
    if p.shape != (frames, 22):
        raise JobError(f"Pinned bones must be (22,) or ({frames}, 22), got {p.shape}")
    return torch.as_tensor(np.array(p, dtype=bool))


def _offsets(request: dict, frames: int):
    """The rig's own joint offsets, ``(22, 3)`` or ``(T, 22, 3)`` metres, as ``(T, 22, 3)``, or ``None``."""
    import numpy as np

    off = request.get("offsets")
    if off is None:
        return None
    try:
        arr = np.asarray(off, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise JobError(f"Malformed rig offsets: {exc}") from exc
    if arr.shape == (22, 3):
        arr = np.repeat(arr[None], frames, axis=0)
    if arr.shape != (frames, 22, 3) or not np.isfinite(arr).all():
        raise JobError(f"Rig offsets must be (22, 3) or ({frames}, 22, 3) finite numbers, got {arr.shape}")
    return arr


def _quats(local):
    from ..rotations import matrix_to_quat
    return matrix_to_quat(local.detach().double().cpu()).tolist()


def snap(request: dict, ctx: JobContext) -> dict:
    """Snap poses onto the DPoser prior, keeping pinned bones in place (DPoser arXiv 2312.05541, sec. 3.3).

    Request: ``rotations``, ``root`` (see module doc), ``pinned`` ``(22,)`` or ``(T, 22)`` bools,
    ``strength`` in [0, 1] (default 0.5), ``iters``, ``seed``, ``weights_dir``, ``offsets``
    ``(22, 3)`` or ``(T, 22, 3)`` the rig's own joint offsets in canonical metres (pinned bones then stay put on
    that rig, not only on the canonical body).
    Result: ``rotations``, ``root``, ``moved_mm`` ``(T, 22)`` (how far each joint moved),
    ``energy_before`` / ``energy_after`` ``(T,)`` implausibility scores.
    """
    import torch

    local, root = poses_from_request(request)
    pinned = _pinned(request, len(local))
    offsets = _offsets(request, len(local))
    from .snap import snap_poses

    strength = float(request.get("strength", 0.5))
    if not 0.0 <= strength <= 1.0 or math.isnan(strength):
        raise JobError(f"Strength must be between 0 and 1, got {strength}")
    device = resolve_device(ctx.device)
    ctx.progress(0.02, "Loading the DPoser prior")
    prior = load_prior(request.get("weights_dir"), device)
    gen = torch.Generator(device=device).manual_seed(int(request.get("seed", 0)))
    kwargs = {"iters": int(request["iters"])} if request.get("iters") is not None else {}
    res = snap_poses(local.to(device), root.to(device), pinned.to(device), prior=prior, strength=strength,
                     progress=lambda f, m="": ctx.progress(0.05 + 0.95 * f, m or "Snapping"),
                     cancelled=ctx.cancelled, generator=gen, offsets=offsets, **kwargs)
    return {"rotations": _quats(res.local), "root": res.root.detach().cpu().tolist(),
            "moved_mm": res.moved_mm.detach().cpu().tolist(),
            "energy_before": res.energy_before.detach().cpu().tolist(),
            "energy_after": res.energy_after.detach().cpu().tolist()}


def score_keys(request: dict, ctx: JobContext) -> dict:
    """Implausibility score of each pose under the prior (higher = less plausible).

    Request: ``rotations``, ``weights_dir``. Result: ``scores`` ``(T,)``.
    """
    local, _ = poses_from_request(request)
    from .snap import score_keys as _score

    device = resolve_device(ctx.device)
    ctx.progress(0.1, "Loading the DPoser prior")
    prior = load_prior(request.get("weights_dir"), device)
    ctx.progress(0.3, "Scoring keys")
    return {"scores": _score(local.to(device), prior).detach().cpu().tolist()}


def fix_keys(request: dict, ctx: JobContext) -> dict:
    """Snap only the keys whose implausibility score is above ``threshold``.

    Request: ``rotations``, ``root``, ``threshold``, ``pinned``, ``strength``, ``weights_dir``.
    Result: ``scores`` ``(T,)``, ``fixed`` (frame indices that changed), ``rotations`` / ``root``
    of those frames only, ``scores_after`` of those frames.
    """
    import torch

    local, root = poses_from_request(request)
    pinned = _pinned(request, len(local))
    offsets = _offsets(request, len(local))
    from .snap import score_keys as _score
    from .snap import snap_poses

    threshold = float(request.get("threshold", 0.0))
    strength = float(request.get("strength", 0.5))
    if math.isnan(threshold):
        raise JobError("The threshold is not a number")
    if not 0.0 <= strength <= 1.0 or math.isnan(strength):
        raise JobError(f"Strength must be between 0 and 1, got {strength}")
    device = resolve_device(ctx.device)
    ctx.progress(0.02, "Loading the DPoser prior")
    prior = load_prior(request.get("weights_dir"), device)
    scores = _score(local.to(device), prior).detach().cpu()
    idx = torch.nonzero(scores > threshold).flatten()
    if len(idx) == 0:
        return {"scores": scores.tolist(), "fixed": [], "rotations": [], "root": [], "scores_after": []}
    gen = torch.Generator(device=device).manual_seed(int(request.get("seed", 0)))
    res = snap_poses(local[idx].to(device), root[idx].to(device), pinned[idx].to(device), prior=prior,
                     offsets=None if offsets is None else offsets[idx.numpy()],
                     strength=strength,
                     progress=lambda f, m="": ctx.progress(0.1 + 0.9 * f, m or f"Fixing {len(idx)} keys"),
                     cancelled=ctx.cancelled, generator=gen)
    return {"scores": scores.tolist(), "fixed": idx.tolist(), "rotations": _quats(res.local),
            "root": res.root.detach().cpu().tolist(),
            "scores_after": _score(res.local, prior).detach().cpu().tolist()}
