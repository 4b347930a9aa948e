"""Fitting canonical poses to sparse targets under a pose prior (the optimiser behind Snap,
Fix implausible keys and the pose-prior benchmark).

The pose is optimised as the axis-angle vector of each of the 22 local joint rotations (radians,
relative to the rest T-pose), as DPoser optimises SMPL body pose (Lu et al., "DPoser: Diffusion
Model as Robust 3D Human Pose Prior", arXiv 2312.05541, sec. 3.3), with Adam and a cosine
learning-rate decay. The loss per pose is

    sum_j pos_weight[j] * |p_j - target_pos[j]|^2          (world joint positions, metres)
  + sum_j rot_weight[j] * |G_j - target_rot[j]|_F^2        (global rotation matrices)
  + keep_weight * sum_{j unconstrained} |a_j - a_j^init|^2 (axis-angle, radians)
  + prior_weight * prior.energy(a_1..21, progress)

with positions and global rotations from :func:`poseforge.backend.skeleton.forward_kinematics`
(canonical body, metres, Y up). A joint is *constrained* when its position or rotation weight is
positive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..models.prior import rodrigues
from ..service import JobCancelled, JobError
from ..skeleton import NUM_JOINTS, PARENTS, REST_OFFSETS


def _levels() -> list[list[int]]:
    depth = [0] * NUM_JOINTS
    for j in range(1, NUM_JOINTS):
        depth[j] = depth[PARENTS[j]] + 1
    return [[j for j in range(NUM_JOINTS) if depth[j] == d] for d in range(1, max(depth) + 1)]


_LEVELS = _levels()
_ORDER = [0] + [j for lev in _LEVELS for j in lev]          # processing order of the joints
_UNDO = [_ORDER.index(j) for j in range(NUM_JOINTS)]      # back to SMPL order


def fast_forward_kinematics(local: torch.Tensor, root: torch.Tensor,
                            offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`poseforge.backend.skeleton.forward_kinematics` batched by tree depth (7 steps
    instead of 21), the same result; used inside the optimisation loop where speed matters.

    Args:
        local: ``(B, 22, 3, 3)`` local rotations; root: ``(B, 3)`` pelvis position, metres.
        offsets: ``(22, 3)`` or ``(B, 22, 3)`` rest offsets of the skeleton (default: the
            canonical body's; a rig's own come from ``retarget.Reference.offsets``).
    Returns:
        ``(positions (B, 22, 3), global rotations (B, 22, 3, 3))``, Y up.
    """
    off = torch.as_tensor(REST_OFFSETS.copy() if offsets is None else offsets, dtype=local.dtype,
                          device=local.device)
    if off.ndim == 2:
        off = off.expand(local.shape[0], NUM_JOINTS, 3)
    glob, pos = local[:, :1], root[:, None, :]
    where = {0: 0}
    for lev in _LEVELS:
        par = [where[PARENTS[j]] for j in lev]
        gp = glob[:, par]
        pos = torch.cat([pos, pos[:, par] + (gp @ off[:, lev, :, None])[..., 0]], dim=1)
        glob = torch.cat([glob, gp @ local[:, lev]], dim=1)
        for j in lev:
            where[j] = len(where)
    return pos[:, _UNDO], glob[:, _UNDO]


class Cancelled(JobCancelled):
    """The caller asked to stop (``cancelled()`` returned true between two optimisation steps);
    a :class:`~..service.JobCancelled`, so a job that stops here ends as cancelled."""


class FitError(JobError, ValueError):
    """Inputs of :func:`fit_poses` have wrong shapes or non-finite values (message says which);
    a :class:`~..service.JobError`, so a job reports it to the animator as it is."""


@dataclass
class FitResult:
    """Result of :func:`fit_poses`.

    Attributes:
        local: ``(B, 22, 3, 3)`` fitted local rotations (relative to the rest T-pose).
        root: ``(B, 3)`` fitted root (pelvis) translation, metres, Y up.
        history: one dict per step: ``{"step", "loss", "data", "prior"}`` (batch sums).
    """
    local: torch.Tensor
    root: torch.Tensor
    history: list[dict] = field(default_factory=list)


def _as_tensor(x, name: str, shape: tuple, dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype)
    if tuple(t.shape[1:]) != shape[1:] or (shape[0] is not None and t.shape[0] != shape[0]):
        want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
        raise FitError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise FitError(f"{name} contains NaN or infinite values")
    return t


def _polish(body, root_aa, root_t, optimise_root, target_pos, pos_weight, target_rot, rot_weight,
            use_pos, use_rot, iters, offsets=None):
    """Project the Adam result back onto the targets with damped Gauss-Newton (Levenberg-
    Marquardt) in float64 on the weighted data residuals ``sqrt(w) (p - p*)``,
    ``sqrt(w) (G - G*)``: each step ``d = -(J^T J + lam I)^-1 J^T r`` is the smallest change of
    the body axis-angle that closes the residual, so joints no target depends on do not move.
    Adam with a stochastic prior stops millimetres from hard targets; a few such steps bring
    them to sub-millimetre. The root stays as it is. Updates ``body`` in place."""
    from torch.func import jacrev, vmap

    d = torch.float64
    r_aa, r_t = root_aa.detach().to(d), root_t.detach().to(d)
    tp = target_pos.to(d) if use_pos else None
    tr = target_rot.to(d) if use_rot else None
    sp, sr = pos_weight.to(d).clamp_min(0).sqrt(), rot_weight.to(d).clamp_min(0).sqrt()

    off = None if offsets is None else torch.as_tensor(offsets, dtype=d)
    if off is not None and off.ndim == 2:
        off = off.expand(body.shape[0], NUM_JOINTS, 3)

    def residual(x, raa, rt, tp_i, tr_i, sp_i, sr_i, off_i):
        aa = torch.cat([raa, x.reshape(NUM_JOINTS - 1, 3)], dim=0)[None]
        pos, glob = fast_forward_kinematics(rodrigues(aa), rt[None], None if off_i is None else off_i[None])
        parts = []
        if use_pos:
            parts.append((sp_i[:, None] * (pos[0] - tp_i)).reshape(-1))
        if use_rot:
            parts.append((sr_i[:, None, None] * (glob[0] - tr_i)).reshape(-1))
        return torch.cat(parts)

    b = body.shape[0]
    x = body.detach().to(d).reshape(b, -1)
    tp_ = tp if use_pos else torch.zeros(b, NUM_JOINTS, 3, dtype=d, device=body.device)
    tr_ = tr if use_rot else torch.zeros(b, NUM_JOINTS, 3, 3, dtype=d, device=body.device)
    args = (r_aa, r_t, tp_, tr_, sp, sr, off)
    dims = (0, 0, 0, 0, 0, 0, 0, None if off is None else 0)
    jac = vmap(jacrev(residual), in_dims=dims)
    res = vmap(residual, in_dims=dims)
    eye = torch.eye(x.shape[1], dtype=d, device=body.device)
    for _ in range(iters):
        r = res(x, *args)                                   # (B, R)
        if float(r.abs().max()) < 1e-5:
            break
        j = jac(x, *args)                                   # (B, R, P)
        jtj = j.transpose(1, 2) @ j
        lam = 1e-6 * jtj.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-12)[:, None, None]
        step = torch.linalg.solve(jtj + lam * eye, (j.transpose(1, 2) @ r[..., None]))[..., 0]
        x = x - step
    with torch.no_grad():
        body.copy_(x.reshape_as(body).to(body.dtype))


def fit_poses(init_local, init_root, *, target_pos=None, pos_weight=None, target_rot=None,
              rot_weight=None, prior=None, prior_weight: float = 1.0, keep_weight: float = 0.0,
              iters: int = 100, lr: float = 0.05, optimise_root: bool = False,
              generator: torch.Generator | None = None,
              progress: Callable[[float, str], None] | None = None,
              cancelled: Callable[[], bool] | None = None, polish_iters: int = 0,
              offsets=None, energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> FitResult:
    """Optimise poses so chosen joints meet world-space targets while a prior keeps them plausible.

    Args:
        init_local: ``(B, 22, 3, 3)`` initial local rotations (also the "keep" reference).
        init_root: ``(B, 3)`` initial root translation, metres, Y up.
        target_pos: ``(B, 22, 3)`` world joint positions to reach (metres), or ``None``.
        pos_weight: ``(B, 22)`` weight per joint of ``target_pos`` (0 = free; default 1 where a
            target is given).
        target_rot: ``(B, 22, 3, 3)`` global rotations to reach, or ``None``.
        rot_weight: ``(B, 22)`` weight per joint of ``target_rot`` (default 1 where given).
        prior: a :class:`~poseforge.backend.models.prior.PosePrior` on the 21 non-root joints,
            or ``None`` (no prior term).
        prior_weight: weight of ``prior.energy``.
        keep_weight: weight pulling the axis-angle of unconstrained joints to their initial value.
        iters: Adam steps (0 returns the initial pose).
        lr: Adam learning rate (cosine-decayed to 1 % over the run).
        optimise_root: also optimise the root orientation (joint 0) and translation; otherwise
            both stay exactly at their initial values.
        generator: randomness of a stochastic prior (DPoser noises the pose each step).
        progress: called as ``progress(fraction_done, message)`` about every 10 steps.
        cancelled: polled before each step; when it returns true, :class:`Cancelled` is raised.
        polish_iters: Gauss-Newton (Levenberg-Marquardt) steps after Adam on the data terms
            alone, each the smallest change that closes the residual, so constrained joints land
            on their targets (sub-millimetre) without undoing what the prior did. Use it for
            hard targets (pinned bones); leave it at 0 (default) for noisy targets, which it
            would fit exactly.
        offsets: ``(22, 3)`` / ``(B, 22, 3)`` rest offsets of the skeleton the targets were
            measured on (default: the canonical body), so world targets of a rig with other
            proportions are met on that rig.
        energy: an extra data term ``energy(positions (B, 22, 3), global rotations (B, 22, 3, 3))
            -> (B,)`` on the posed skeleton (e.g. posecode constraints,
            :func:`poseforge.backend.text.constraints.violation`); not part of the polish steps.
    Returns:
        :class:`FitResult` (detached tensors, float32, on the CPU of the inputs).
    Raises:
        FitError: bad shapes, non-finite values, or no term to optimise.
        Cancelled: ``cancelled()`` returned true.
    """
    init_local = _as_tensor(init_local, "init_local", (None, NUM_JOINTS, 3, 3))
    batch = init_local.shape[0]
    dev = init_local.device
    init_root = _as_tensor(init_root, "init_root", (batch, 3))
    if target_pos is not None:
        target_pos = _as_tensor(target_pos, "target_pos", (batch, NUM_JOINTS, 3))
        pos_weight = (torch.ones(batch, NUM_JOINTS, device=dev) if pos_weight is None
                      else _as_tensor(pos_weight, "pos_weight", (batch, NUM_JOINTS)))
    else:
        pos_weight = torch.zeros(batch, NUM_JOINTS, device=dev)
    if target_rot is not None:
        target_rot = _as_tensor(target_rot, "target_rot", (batch, NUM_JOINTS, 3, 3))
        rot_weight = (torch.ones(batch, NUM_JOINTS, device=dev) if rot_weight is None
                      else _as_tensor(rot_weight, "rot_weight", (batch, NUM_JOINTS)))
    else:
        rot_weight = torch.zeros(batch, NUM_JOINTS, device=dev)
    if iters < 0:
        raise FitError(f"iters must be >= 0, got {iters}")

    init_aa = matrix_to_axis_angle(init_local).detach()
    free = ((pos_weight <= 0) & (rot_weight <= 0)).float()  # (B, 22) unconstrained joints
    body = init_aa[:, 1:].clone().requires_grad_(True)
    params = [body]
    root_aa = init_aa[:, :1].clone()
    root_t = init_root.clone()
    if optimise_root:
        root_aa.requires_grad_(True)
        root_t.requires_grad_(True)
        params += [root_aa, root_t]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)
    use_pos = target_pos is not None and bool((pos_weight > 0).any())
    use_rot = target_rot is not None and bool((rot_weight > 0).any())
    history: list[dict] = []

    for step in range(iters):
        if cancelled is not None and cancelled():
            raise Cancelled(f"fit cancelled at step {step} of {iters}")
        frac = step / max(iters - 1, 1)
        for group in opt.param_groups:  # cosine decay from lr to 1 % of lr
            group["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
        aa = torch.cat([root_aa, body], dim=1)
        data = aa.new_zeros(batch)
        if use_pos or use_rot or energy is not None:
            pos, glob = fast_forward_kinematics(rodrigues(aa), root_t, offsets)
            if energy is not None:
                data = data + energy(pos, glob)
            if use_pos:
                data = data + (pos_weight * ((pos - target_pos) ** 2).sum(-1)).sum(-1)
            if use_rot:
                data = data + (rot_weight * ((glob - target_rot) ** 2).sum((-1, -2))).sum(-1)
        if keep_weight > 0:
            data = data + keep_weight * (free * ((aa - init_aa) ** 2).sum(-1)).sum(-1)
        prior_e = (prior_weight * prior.energy(body, progress=frac, generator=generator)
                   if prior is not None and prior_weight > 0 else aa.new_zeros(batch))
        loss = (data + prior_e).sum()
        if not loss.requires_grad:
            raise FitError("nothing to optimise: give targets, a keep weight or a prior")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step, "loss": float(loss.detach()), "data": float(data.detach().sum()),
                        "prior": float(prior_e.detach().sum())})
        if progress is not None and (step % 10 == 0 or step == iters - 1):
            progress((step + 1) / iters, f"fitting: step {step + 1}/{iters}")

    if polish_iters > 0 and (use_pos or use_rot):
        _polish(body, root_aa, root_t, optimise_root, target_pos, pos_weight, target_rot, rot_weight,
                use_pos, use_rot, polish_iters, offsets)

    with torch.no_grad():
        aa = torch.cat([root_aa, body], dim=1)
        local = axis_angle_to_matrix(aa)
        if not optimise_root:  # keep the root rotation bit-exact
            local[:, 0] = init_local[:, 0]
        return FitResult(local=local.detach(), root=root_t.detach().clone(), history=history)
