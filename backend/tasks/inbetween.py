"""In-betweening with the GFPose-style window model: interpolation of keys, window frames,
features, sampling, and the ``inbetween`` job.

Every array here lives on the canonical body (DESIGN.md): local quaternions ``(w, x, y, z)``
relative to the T-pose, SMPL joint order; root = pelvis position in metres, Y up.

Method (see :mod:`poseforge.backend.models.gfpose`): the keys are interpolated (per joint SLERP of
the local rotation between the nearest keyed frames, root LERP), the window is put in its own
frame (root XZ centred, turned to face +Z), and the model predicts the residual over the
interpolation.  One deterministic answer is the model's x0 prediction at ``t = 1`` (Tweedie's
estimate of the conditional mean, one network pass, averaged with the answer for the mirrored
window); stochastic hypotheses are drawn from prior noise by a few ancestral steps on the sub-VP
SDE's marginals (Song et al. 2021; DDPM / DDIM steps with the x0 prediction).  Keyed values are
put back exactly at the end.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..rotations import matrix_to_quat, matrix_to_rot6d, quat_mul, quat_slerp, quat_to_matrix, rot6d_to_matrix
from ..service import JobCancelled, JobContext, JobError
from ..skeleton import MIRROR, NUM_JOINTS


class InbetweenError(JobError):
    """The keys cannot be in-betweened as asked (too few keys, gap too long, bad values)."""


# --- interpolation -------------------------------------------------------------------------------

def _neighbour_keys(known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``known (..., T)`` bool: index of the keyed frame at or before / at or after each frame
    (``-1`` / ``T`` when there is none) and the interpolation weight of the later key."""
    T = known.shape[-1]
    ar = torch.arange(T, device=known.device).expand(known.shape)
    prev = torch.where(known, ar, torch.full_like(ar, -1)).cummax(-1).values
    nxt = torch.where(known, ar, torch.full_like(ar, T)).flip(-1).cummin(-1).values.flip(-1)
    has_p, has_n = prev >= 0, nxt < T
    p = torch.where(has_p, prev, torch.where(has_n, nxt, ar))
    n = torch.where(has_n, nxt, p)
    span = (n - p).clamp_min(1)
    w = ((ar - p).to(torch.float32) / span).clamp(0, 1)
    w = torch.where(n == p, torch.zeros_like(w), w)
    return p, n, w


def interpolate_keys_torch(rotations: torch.Tensor, root: torch.Tensor, known: torch.Tensor,
                           known_root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of :func:`interpolate_keys` (same shapes, differentiable in the keys)."""
    kj = known.transpose(-1, -2)                                   # (..., 22, T)
    p, n, w = _neighbour_keys(kj)
    q = rotations.transpose(-3, -2)                                # (..., 22, T, 4)
    qa = torch.gather(q, -2, p[..., None].expand(*p.shape, 4))
    qb = torch.gather(q, -2, n[..., None].expand(*n.shape, 4))
    qi = torch.where((n == p)[..., None], qa, quat_slerp(qa, qb, w[..., None])).transpose(-3, -2)
    pr, nr, wr = _neighbour_keys(known_root)
    ra = torch.gather(root, -2, pr[..., None].expand(*pr.shape, 3))
    rb = torch.gather(root, -2, nr[..., None].expand(*nr.shape, 3))
    ri = ra + (rb - ra) * wr[..., None]
    return qi, ri


def interpolate_keys(rotations, root, known, known_root) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate keyed joint rotations and root positions over the frames between keys.

    Per joint: SLERP (shorter arc) of the local quaternion between the nearest keyed frames
    before and after; before the first / after the last key the nearest key is held; a joint
    never keyed keeps the values given.  Root: LERP the same way over ``known_root`` frames.
    This is the "interpolation" baseline of the LaFAN1 benchmark (Harvey et al. 2020) when the
    keys are the context frames and the target frame.

    Args:
        rotations: ``(..., T, 22, 4)`` local quaternions ``(w, x, y, z)``.
        root: ``(..., T, 3)`` metres, Y up.
        known: ``(..., T, 22)`` bool, joint keyed on the frame.
        known_root: ``(..., T)`` bool, root position keyed on the frame.
    Returns:
        ``(rotations, root)`` float32 numpy arrays of the input shapes; keyed and held values
        exactly as given.
    """
    q, r = interpolate_keys_torch(torch.as_tensor(np.asarray(rotations, np.float32)),
                                  torch.as_tensor(np.asarray(root, np.float32)),
                                  torch.as_tensor(np.asarray(known, bool)),
                                  torch.as_tensor(np.asarray(known_root, bool)))
    return q.numpy(), r.numpy()


# --- window frame --------------------------------------------------------------------------------

def _yaw_quat(angle: torch.Tensor) -> torch.Tensor:
    """Quaternion of a rotation by ``angle (...)`` radians about +Y."""
    z = torch.zeros_like(angle)
    return torch.stack([torch.cos(angle / 2), z, torch.sin(angle / 2), z], -1)


def _rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)``."""
    return (quat_to_matrix(q) @ v[..., None])[..., 0]


def window_frame(rotations: torch.Tensor, root: torch.Tensor, known: torch.Tensor,
                 known_root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The window's own frame, from keyed data only.

    Centre: mean root XZ over the ``known_root`` frames (zero when none).  Heading: the pelvis'
    forward axis (+Z of the canonical body) projected on XZ at the first frame whose pelvis is
    keyed; the window is turned about Y so it faces +Z (as the LaFAN1 benchmark unifies facing on
    the last context frame).

    Returns:
        ``(centre (B, 3) with Y = 0, yaw (B,) radians)``: world = R_y(yaw) window + centre.
    """
    kr = known_root.to(root.dtype)[..., None]
    centre = (root * kr).sum(-2) / kr.sum(-2).clamp_min(1)
    centre = centre * torch.tensor([1.0, 0.0, 1.0], dtype=root.dtype, device=root.device)
    kp = known[..., 0]
    first = torch.where(kp.any(-1), kp.to(torch.int64).argmax(-1), torch.zeros_like(kp[..., 0], dtype=torch.int64))
    q0 = torch.gather(rotations[..., 0, :], -2, first[..., None, None].expand(*first.shape, 1, 4))[..., 0, :]
    fwd = _rotate(q0, torch.tensor([0.0, 0.0, 1.0], dtype=root.dtype, device=root.device).expand_as(q0[..., :3]))
    yaw = torch.atan2(fwd[..., 0], fwd[..., 2])
    return centre, yaw


def to_window(rotations, root, centre, yaw):
    """World -> window frame: root ``R_y(-yaw) (root - centre)``, pelvis ``R_y(-yaw) q``."""
    inv = _yaw_quat(-yaw)
    root = _rotate(inv[..., None, :], root - centre[..., None, :])
    pelvis = quat_mul(inv[..., None, :], rotations[..., 0, :])
    return torch.cat([pelvis[..., None, :], rotations[..., 1:, :]], -2), root


def from_window(rotations, root, centre, yaw):
    """Window -> world frame (inverse of :func:`to_window`)."""
    q = _yaw_quat(yaw)
    root = _rotate(q[..., None, :], root) + centre[..., None, :]
    pelvis = quat_mul(q[..., None, :], rotations[..., 0, :])
    return torch.cat([pelvis[..., None, :], rotations[..., 1:, :]], -2), root


def to_features(rotations: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """``(..., T, 22, 4)``, ``(..., T, 3)`` -> ``(..., T, 135)``: root + 6D of each joint."""
    d6 = matrix_to_rot6d(quat_to_matrix(rotations))
    return torch.cat([root, d6.flatten(-2)], -1)


def from_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`to_features`: ``(..., T, 135)`` -> rotation matrices ``(..., T, 22, 3, 3)``
    (Gram-Schmidt of the 6D, Zhou et al. 2019) and root ``(..., T, 3)``."""
    return rot6d_to_matrix(x[..., 3:].unflatten(-1, (NUM_JOINTS, 6))), x[..., :3]


# --- model ---------------------------------------------------------------------------------------

_models: dict = {}
_models_lock = threading.Lock()


def load_gfpose(weights_dir=None, device: str = "cpu"):
    """The shipped (or user-trained) GFPose window model, loaded once per folder and device.

    Raises:
        poseforge.backend.weights.WeightsError: no ``gfpose.safetensors`` in the folder.
    """
    from ..models.gfpose import GFPose
    from ..weights import load_model

    key = (str(weights_dir or ""), device)
    with _models_lock:
        if key not in _models:
            model = load_model("gfpose", GFPose, weights_dir, device)
            model.eval()
            _models[key] = model
        return _models[key]


def _randn(shape, generator, dev):
    if generator is None or generator.device == torch.device(dev):
        return torch.randn(shape, generator=generator, device=dev)
    return torch.randn(shape, generator=generator).to(dev)


@torch.no_grad()
def _ancestral_sample(model, cond, steps: int, generator, dev, cancel, eta: float = 1.0) -> torch.Tensor:
    """Sample the clean residual from prior noise by ancestral steps on the sub-VP marginals.

    The sub-VP SDE (Song et al. 2021, eq. 29) has Gaussian marginals ``x_t = a_t x0 + s_t z``
    and Gaussian transitions, so, as in DDPM / DDIM (Ho et al. 2020 eq. 7; Song, Meng and Ermon
    2021 eq. 12), one step from ``t`` to ``u < t`` draws from ``q(x_u | x_t, x0 = x0_hat)``:
    with ``r = a_t / a_u`` and the transition variance ``v = s_t^2 - r^2 s_u^2``,
    mean ``r s_u^2 / s_t^2 x_t + a_u v / s_t^2 x0_hat`` and variance ``eta^2 v s_u^2 / s_t^2``
    (``eta < 1`` moves the rest of the noise into the DDIM direction).  Steps are uniform in t
    from 1 to 0.002; the last one returns ``x0_hat``.

    Args:
        cond: ``(interp, known, known_root)`` of the windows, as :class:`GFPose` takes them.
    Returns:
        ``(B, T, 135)`` normalised residual.
    """
    interp = cond[0]
    B = interp.shape[0]
    sde = model.sde
    x = _randn(interp.shape, generator, dev)
    ts = torch.linspace(1.0, 2e-3, steps, device=dev)
    x0 = None
    for i in range(steps):
        if cancel is not None and cancel():
            raise JobCancelled()
        t = ts[i].expand(B)
        x0 = model(x, t, *cond)
        if i == steps - 1:
            break
        a_t, s_t = sde.marginal_coeffs(ts[i])
        a_u, s_u = sde.marginal_coeffs(ts[i + 1])
        r = a_t / a_u
        v = (s_t ** 2 - r ** 2 * s_u ** 2).clamp_min(0)
        var = eta ** 2 * v * s_u ** 2 / s_t ** 2
        eps = (x - a_t * x0) / s_t
        # DDIM form: a_u x0 + sqrt(s_u^2 - var) eps + sqrt(var) z  (= the posterior mean at eta = 1)
        x = a_u * x0 + (s_u ** 2 - var).clamp_min(0).sqrt() * eps + var.sqrt() * _randn(x.shape, generator, dev)
    return x0


def mirror_motion(rotations: torch.Tensor, root: torch.Tensor, known: torch.Tensor | None = None):
    """Left/right mirror of canonical motion about the body's X = 0 plane: joints swap sides
    (:data:`~poseforge.backend.skeleton.MIRROR`), quaternions ``(w, x, y, z) -> (w, x, -y, -z)``,
    root ``x -> -x``.  Its own inverse.  Shapes ``(..., 22, 4)``, ``(..., 3)``, ``(..., 22)``."""
    perm = list(MIRROR)
    q = rotations[..., perm, :] * rotations.new_tensor([1.0, 1.0, -1.0, -1.0])
    r = root * root.new_tensor([-1.0, 1.0, 1.0])
    return q, r, (None if known is None else known[..., perm])


def _decode(model, interp, x0, centre, yaw):
    feats = interp + x0 * model.residual_scale
    mats, wroot = from_features(feats)
    return from_window(matrix_to_quat(mats), wroot, centre, yaw)


@torch.no_grad()
def sample_windows(model, rotations: torch.Tensor, root: torch.Tensor, known: torch.Tensor,
                   known_root: torch.Tensor, stochastic: torch.Tensor | None = None, *, steps: int = 10,
                   eta: float = 1.0, mirror_average: bool = True, generator: torch.Generator | None = None,
                   cancel=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill a batch of windows (world frame in, world frame out).

    Args:
        model: a :class:`~poseforge.backend.models.gfpose.GFPose`.
        rotations: ``(B, T, 22, 4)`` local quaternions (values on un-keyed entries are ignored).
        root: ``(B, T, 3)`` metres.
        known: ``(B, T, 22)`` bool; known_root: ``(B, T)`` bool.
        stochastic: ``(B,)`` bool; those windows are sampled from noise by ancestral steps
            (:func:`_ancestral_sample`), the others get the deterministic one-step answer.
        steps: steps of the stochastic samples.
        eta: noise of the stochastic steps (1 = ancestral / DDPM posterior, 0 = DDIM, deterministic
            given the start noise).
        mirror_average: the deterministic answer averages the model's answers for the window and
            for its left/right mirror image (test-time augmentation by the body's symmetry; on
            validation windows 3-5 % lower joint-position error than one pass).
        cancel: callable, True to stop (raises :class:`JobCancelled` between steps).
    Returns:
        ``(rotations (B, T, 22, 4), root (B, T, 3))``, keyed entries exactly as given.
    """
    dev = next(model.parameters()).device
    rotations, root = rotations.to(dev, torch.float32), root.to(dev, torch.float32)
    known, known_root = known.to(dev), known_root.to(dev)
    B = rotations.shape[0]
    rotations = rotations / rotations.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    stochastic = torch.zeros(B, dtype=torch.bool, device=dev) if stochastic is None else stochastic.to(dev)
    out_q, out_r = rotations.clone(), root.clone()

    def prepare(q, r, k, kr):
        centre, yaw = window_frame(q, r, k, kr)
        wq, wr = to_window(q, r, centre, yaw)
        iq, ir = interpolate_keys_torch(wq, wr, k, kr)
        return to_features(iq, ir), centre, yaw

    det = torch.nonzero(~stochastic).flatten()
    if len(det):
        q, r, k, kr = rotations[det], root[det], known[det], known_root[det]
        if mirror_average:
            mq, mr, mk = mirror_motion(q, r, k)
            q, r, k, kr = torch.cat([q, mq]), torch.cat([r, mr]), torch.cat([k, mk]), torch.cat([kr, kr])
        interp, centre, yaw = prepare(q, r, k, kr)
        x0 = model(torch.zeros_like(interp), torch.ones(len(q), device=dev), interp, k, kr)
        dq, dr = _decode(model, interp, x0, centre, yaw)
        if mirror_average:
            n = len(det)
            bq, br, _ = mirror_motion(dq[n:], dr[n:])
            aq = dq[:n]
            bq = torch.where((aq * bq).sum(-1, keepdim=True) < 0, -bq, bq)
            dq = aq + bq
            dq = dq / dq.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            dr = 0.5 * (dr[:n] + br)
        out_q[det], out_r[det] = dq, dr
    sto = torch.nonzero(stochastic).flatten()
    if len(sto):
        q, r, k, kr = rotations[sto], root[sto], known[sto], known_root[sto]
        interp, centre, yaw = prepare(q, r, k, kr)
        x0 = _ancestral_sample(model, (interp, k, kr), steps, generator, dev, cancel, eta)
        out_q[sto], out_r[sto] = _decode(model, interp, x0, centre, yaw)
    out_q = torch.where(known[..., None], rotations, out_q)
    out_r = torch.where(known_root[..., None], root, out_r)
    return out_q, out_r


def fill_motion(model, rotations, root, known, known_root=None, *, hypotheses: int = 0, seed: int = 0,
                steps: int = 10, progress=None, cancel=None) -> dict:
    """Fill the un-keyed frames and joints of motion windows.

    Args:
        model: a GFPose model (:func:`load_gfpose`).
        rotations: ``(B, T, 22, 4)`` or ``(T, 22, 4)`` local quaternions ``(w, x, y, z)``,
            world frame (values of un-keyed entries are ignored).
        root: ``(B, T, 3)`` or ``(T, 3)`` pelvis positions, metres, Y up.
        known: ``(B, T, 22)`` or ``(T, 22)`` bool, the keyed joint rotations.
        known_root: ``(B, T)`` or ``(T,)`` bool, the keyed root positions (default: frames whose
            joints are all keyed).
        hypotheses: number of extra stochastic hypotheses per window.
        seed: seed of the stochastic hypotheses.
        steps: reverse-SDE steps of the stochastic hypotheses.
        progress: ``progress(fraction, message)``; cancel: callable, True to stop.
    Returns:
        ``{"rotations": (1 + hypotheses, B, T, 22, 4), "root": (1 + hypotheses, B, T, 3)}``
        float32 numpy (no ``B`` axis if the input had none); index 0 is the deterministic
        answer.  Keyed entries are returned exactly as given.
    Raises:
        InbetweenError: shapes disagree, the window is longer than the model's, a keyed value
            is not finite, or no frame is keyed.
        JobCancelled: ``cancel()`` returned True.
    """
    q = np.asarray(rotations, np.float32)
    single = q.ndim == 3
    if single:
        q, root, known = q[None], np.asarray(root)[None], np.asarray(known)[None]
        known_root = None if known_root is None else np.asarray(known_root)[None]
    r = np.asarray(root, np.float32)
    k = np.asarray(known, bool)
    if q.ndim != 4 or q.shape[2:] != (NUM_JOINTS, 4) or r.shape != q.shape[:2] + (3,) or k.shape != q.shape[:3]:
        raise InbetweenError(f"expected rotations (B, T, 22, 4), root (B, T, 3), known (B, T, 22); got "
                             f"{q.shape}, {r.shape}, {k.shape}")
    kr = k.all(-1) if known_root is None else np.asarray(known_root, bool)
    if kr.shape != q.shape[:2]:
        raise InbetweenError(f"known_root must be (B, T) = {q.shape[:2]}, got {kr.shape}")
    B, T = q.shape[:2]
    if T > model.window:
        raise InbetweenError(f"a window of {T} frames is longer than the model's {model.window}")
    if not k.any(axis=(1, 2)).all():
        raise InbetweenError("a window has no keyed frame")
    if not np.isfinite(q[k]).all() or not np.isfinite(r[kr]).all():
        raise InbetweenError("a keyed rotation or root position is NaN or infinite")
    H = 1 + int(hypotheses)
    gen = torch.Generator().manual_seed(int(seed))
    qs = torch.from_numpy(q).repeat(H, 1, 1, 1)
    rs = torch.from_numpy(r).repeat(H, 1, 1)
    ks, krs = torch.from_numpy(k).repeat(H, 1, 1), torch.from_numpy(kr).repeat(H, 1)
    stoch = torch.arange(H * B) >= B
    out_q, out_r = [], []
    chunk = 256
    for s in range(0, H * B, chunk):
        if cancel is not None and cancel():
            raise JobCancelled()
        a, b = sample_windows(model, qs[s:s + chunk], rs[s:s + chunk], ks[s:s + chunk], krs[s:s + chunk],
                              stoch[s:s + chunk], steps=steps, generator=gen, cancel=cancel)
        out_q.append(a.cpu())
        out_r.append(b.cpu())
        if progress is not None:
            progress(min(1.0, (s + chunk) / (H * B)), "filling")
    oq = torch.cat(out_q).reshape(H, B, T, NUM_JOINTS, 4).numpy()
    orr = torch.cat(out_r).reshape(H, B, T, 3).numpy()
    # keyed entries bit-exact (float32 of the input)
    oq = np.where(k[None, ..., None], q[None], oq)
    orr = np.where(kr[None, ..., None], r[None], orr)
    if single:
        oq, orr = oq[:, 0], orr[:, 0]
    return {"rotations": oq.astype(np.float32), "root": orr.astype(np.float32)}


# --- the "inbetween" job -------------------------------------------------------------------------

#: Most hypotheses one job returns (the deterministic answer included).
MAX_HYPOTHESES = 9
#: Frames before a gap given to the model as context (the LaFAN1 protocol's 10).
CONTEXT_FRAMES = 10


def plan_gaps(known: np.ndarray, known_root: np.ndarray, fill: np.ndarray, window: int,
              frame_start: int = 0) -> list[tuple[int, int]]:
    """The gaps to fill: pairs of consecutive fully keyed frames ``(a, b)`` with un-keyed frames
    between them, some of which the animator asked to fill.

    A frame is fully keyed when every joint and the root are keyed; partially keyed frames lie
    inside gaps and constrain only their keyed joints.

    Args:
        known: ``(T, 22)`` bool; known_root: ``(T,)`` bool; fill: ``(T,)`` bool.
        window: the model's window in frames (a gap needs ``b - a + 1 <= window``).
        frame_start: scene frame of index 0, for messages.
    Returns:
        list of ``(a, b)`` frame indices.
    Raises:
        InbetweenError: fewer than two fully keyed frames, a gap longer than the window (names
            its keys and the limit), or nothing to fill.
    """
    anchors = np.flatnonzero(known.all(-1) & known_root)
    if len(anchors) < 2:
        partial = int((known.any(-1) & ~(known.all(-1) & known_root)).sum())
        extra = f" ({partial} frame(s) key only some bones)" if partial else ""
        raise InbetweenError(f"Need at least two frames where every mapped bone is keyed; found {len(anchors)}{extra}")
    gaps = []
    for a, b in zip(anchors[:-1], anchors[1:]):
        a, b = int(a), int(b)
        if b - a < 2 or not fill[a + 1:b].any():
            continue
        if b - a + 1 > window:
            raise InbetweenError(
                f"The gap between the keys on frames {frame_start + a} and {frame_start + b} is {b - a - 1} frames; "
                f"the model fills at most {window - 2} frames between two keys: add a key in between")
        gaps.append((a, b))
    if not gaps:
        raise InbetweenError("Nothing to fill: no un-keyed frames between two keys in the frame range")
    return gaps


def _bools(request: dict, key: str, shape, default):
    val = request.get(key)
    if val is None:
        return default
    try:
        arr = np.asarray(val, dtype=bool)
    except (TypeError, ValueError) as exc:
        raise InbetweenError(f"Malformed '{key}': {exc}") from exc
    if arr.shape != tuple(shape):
        raise InbetweenError(f"'{key}' must be {tuple(shape)} booleans, got {arr.shape}")
    return arr


def inbetween(request: dict, ctx: JobContext) -> dict:
    """Fill the frames between keys (the job behind "Fill Keyframe Gaps" and ``poseforge inbetween``).

    Request: ``rotations`` ``(T, 22, 4)`` and ``root`` ``(T, 3)`` of every frame of the range (as the
    rig shows them), ``known`` ``(T, 22)`` bools (joint keyed on the frame), ``known_root`` ``(T,)``
    (root keyed; default: frames with every joint keyed), ``keep_root`` (the root is not animated
    by keys: returned as sent and given to the model as known), ``fill`` ``(T,)`` (frames the
    animator wants filled; default all), ``hypotheses`` extra stochastic answers (0-8), ``seed``,
    ``foot_contact`` (keep feet planted while in contact), ``frame_start`` (scene frame of index 0,
    for messages), ``weights_dir``.

    Each gap between two fully keyed frames gets a window from up to 10 frames before its first
    key to its last key; gaps are filled left to right, so earlier filled frames are the context
    of later gaps (per hypothesis).

    Result: ``rotations`` ``(H, T, 22, 4)``, ``root`` ``(H, T, 3)``, ``hypotheses`` ``H``, ``gaps``
    ``[[a, b], ...]`` (indices of each filled gap's keys), ``filled`` ``(T, 22)`` and
    ``filled_root`` ``(T,)`` bools (what was written; everything else is returned as sent).
    Raises:
        JobError: bad input (see :func:`plan_gaps`, shapes, NaN) or missing weights.
    """
    from .jobs import MAX_FRAMES, poses_from_request, resolve_device

    local, root_t = poses_from_request(request)
    T = len(local)
    rotations = np.asarray(request["rotations"], np.float32)
    rotations = rotations / np.linalg.norm(rotations, axis=-1, keepdims=True)
    root = root_t.numpy().astype(np.float32)
    known = _bools(request, "known", (T, NUM_JOINTS), None)
    if known is None:
        raise InbetweenError("The request names no keyed frames ('known')")
    keep_root = bool(request.get("keep_root", False))
    known_root = _bools(request, "known_root", (T,), known.all(-1))
    if keep_root:
        known_root = np.ones(T, bool)
    fill = _bools(request, "fill", (T,), np.ones(T, bool))
    H = 1 + int(request.get("hypotheses", 0))
    if not 1 <= H <= MAX_HYPOTHESES:
        raise InbetweenError(f"Hypotheses must be between 0 and {MAX_HYPOTHESES - 1} extra ones, got {H - 1}")
    assert T <= MAX_FRAMES
    device = resolve_device(ctx.device)
    ctx.progress(0.02, "Loading the in-between model")
    from ..weights import WeightsError
    try:
        model = load_gfpose(request.get("weights_dir"), device)
    except WeightsError as exc:
        raise InbetweenError(str(exc), hint="Check the weights folder (PoseForge preferences in Blender, --weights-dir on the command line)") from exc
    gaps = plan_gaps(known, known_root, fill, model.window, int(request.get("frame_start", 0)))
    out_q = np.repeat(rotations[None], H, 0)
    out_r = np.repeat(root[None], H, 0)
    filled = np.zeros((T, NUM_JOINTS), bool)
    gen = torch.Generator().manual_seed(int(request.get("seed", 0)))
    stochastic = torch.arange(H) > 0
    for g, (a, b) in enumerate(gaps):
        ctx.check_cancel()
        s = max(0, a - CONTEXT_FRAMES, b - model.window + 1)
        k = known[s:b + 1].copy()
        kr = known_root[s:b + 1].copy()
        k[:a - s] = True               # context before the first key: as shown (or as filled)
        kr[:a - s] = True
        q, r = sample_windows(model, torch.from_numpy(out_q[:, s:b + 1]), torch.from_numpy(out_r[:, s:b + 1]),
                              torch.from_numpy(k).expand(H, -1, -1), torch.from_numpy(kr).expand(H, -1),
                              stochastic, generator=gen, cancel=ctx.cancelled)
        q, r = q.cpu().numpy(), r.cpu().numpy()
        inner = np.zeros(b + 1 - s, bool)
        inner[a - s + 1:b - s] = fill[a + 1:b]
        write = inner[:, None] & ~known[s:b + 1]
        out_q[:, s:b + 1] = np.where(write[None, ..., None], q, out_q[:, s:b + 1])
        if not keep_root:
            wr = inner & ~known_root[s:b + 1]
            out_r[:, s:b + 1] = np.where(wr[None, :, None], r, out_r[:, s:b + 1])
        filled[s:b + 1] |= write
        ctx.progress(0.05 + 0.85 * (g + 1) / len(gaps), f"Filled gap {g + 1} of {len(gaps)}")
    filled_root = filled.any(-1) & ~known_root if not keep_root else np.zeros(T, bool)
    if request.get("foot_contact"):
        from .contact import fix_foot_sliding
        ctx.progress(0.92, "Keeping feet planted")
        for h in range(H):
            fixed, _ = fix_foot_sliding(out_q[h], out_r[h], keep=~filled.any(-1))
            out_q[h] = np.where(filled[..., None], fixed, out_q[h])   # keyed joints stay as keyed
    if not (np.isfinite(out_q).all() and np.isfinite(out_r).all()):
        raise InbetweenError("The model produced invalid values (NaN); nothing was changed")
    return {"rotations": out_q.tolist(), "root": out_r.tolist(), "hypotheses": H,
            "gaps": [[a, b] for a, b in gaps], "filled": filled.tolist(), "filled_root": filled_root.tolist()}
