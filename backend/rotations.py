"""Rotation conversions in torch, batched over any leading shape and differentiable.

Conventions: quaternions are ``(w, x, y, z)`` (Blender's order); rotation matrices act on column
vectors (``v' = R @ v``); axis-angle is the rotation vector ``angle * unit_axis`` in radians; the
6D representation is the first two columns of the matrix, concatenated (Zhou et al. 2019, "On the
Continuity of Rotation Representations in Neural Networks", section 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` (normalised here) -> ``(..., 3, 3)`` matrices."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation matrices -> ``(..., 4)`` unit quaternions ``(w, x, y, z)``, w >= 0.

    Uses the numerically stable branch on the largest of the four squared components.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                      1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    root = torch.sqrt(sq.clamp_min(1e-12))  # 2 * |component|; the floor keeps the gradient finite
    cand = torch.stack([
        torch.stack([root[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1) / (2 * root[..., 0, None]),
        torch.stack([m21 - m12, root[..., 1] ** 2, m10 + m01, m02 + m20], -1) / (2 * root[..., 1, None]),
        torch.stack([m02 - m20, m10 + m01, root[..., 2] ** 2, m12 + m21], -1) / (2 * root[..., 2, None]),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, root[..., 3] ** 2], -1) / (2 * root[..., 3, None]),
    ], dim=-2)  # (..., 4 candidates, 4)
    best = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` rotation vectors (radians) -> ``(..., 3, 3)`` via Rodrigues' formula."""
    angle = aa.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(half)/angle, with its Taylor series near zero so the gradient stays finite.
    small = angle < 1e-4
    k = torch.where(small, 0.5 - angle ** 2 / 48.0, torch.sin(half) / angle.clamp_min(1e-12))
    q = torch.cat([torch.cos(half), aa * k], dim=-1)
    return quat_to_matrix(q)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 3)`` rotation vectors with angle in ``[0, pi]``."""
    return quat_to_axis_angle(matrix_to_quat(m))


def quat_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` -> ``(..., 3)`` rotation vectors, angle in ``[0, pi]``."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    q = torch.where(q[..., :1] < 0, -q, q)
    xyz = q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    small = s < 1e-6
    k = torch.where(small, 2.0 / q[..., :1].clamp_min(_EPS), angle / s.clamp_min(1e-12))
    return xyz * k


def axis_angle_to_quat(aa: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` rotation vectors -> ``(..., 4)`` quaternions ``(w, x, y, z)``."""
    return matrix_to_quat(axis_angle_to_matrix(aa))


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``: the first two columns (Zhou et al. 2019)."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` -> ``(..., 3, 3)`` by Gram-Schmidt (Zhou et al. 2019, section 4 / appendix B)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1, eps=_EPS)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=_EPS)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of ``(..., 4)`` quaternions ``(w, x, y, z)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical linear interpolation of ``(..., 4)`` unit quaternions along the shorter arc.

    ``t`` broadcasts against ``a[..., :1]``; ``t=0`` gives ``a``, ``t=1`` gives ``b`` (up to sign).
    """
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    dot = (a * b).sum(-1, keepdim=True)
    b = torch.where(dot < 0, -b, b)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    near = sin < 1e-6
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / sin.clamp_min(1e-12))
    wb = torch.where(near, t, torch.sin(t * theta) / sin.clamp_min(1e-12))
    q = wa * a + wb * b
    return q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def quat_continuity(q: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Flip signs of ``(..., 4)`` quaternions along ``dim`` (time) so neighbours have a positive
    dot product, as the LaFAN1 benchmark does before its L2Q metric."""
    q = q.clone()
    n = q.shape[dim]
    for i in range(1, n):
        prev = q.select(dim, i - 1)
        cur = q.select(dim, i)
        flip = (prev * cur).sum(-1, keepdim=True) < 0
        q.select(dim, i).copy_(torch.where(flip, -cur, cur))
    return q


def rotation_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shortest-arc rotation matrices taking unit vectors ``u`` to ``v`` (both ``(..., 3)``).

    Antiparallel inputs rotate by pi about an axis perpendicular to ``u``.
    Returns ``(..., 3, 3)``.
    """
    u = F.normalize(u, dim=-1, eps=_EPS)
    v = F.normalize(v, dim=-1, eps=_EPS)
    w = 1 + (u * v).sum(-1, keepdim=True)
    xyz = torch.cross(u, v, dim=-1)
    anti = w[..., 0] < 1e-6
    if anti.any():
        ex = torch.tensor([1.0, 0.0, 0.0], dtype=u.dtype, device=u.device).expand_as(u)
        ey = torch.tensor([0.0, 1.0, 0.0], dtype=u.dtype, device=u.device).expand_as(u)
        alt = torch.where((u[..., :1].abs() < 0.9), ex, ey)
        perp = F.normalize(torch.cross(u, alt, dim=-1), dim=-1)
        xyz = torch.where(anti[..., None], perp, xyz)
        w = torch.where(anti[..., None], torch.zeros_like(w), w)
    return quat_to_matrix(torch.cat([w, xyz], dim=-1))


def orthonormalize(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation to ``(..., 3, 3)`` matrices (SVD projection, determinant +1)."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    fix = torch.ones_like(m[..., 0, :])
    fix[..., -1] = d
    return (u * fix[..., None, :]) @ vh


def euler_to_matrix(angles: torch.Tensor, order: str) -> torch.Tensor:
    """Intrinsic Euler angles to matrices, as BVH channels compose them.

    Args:
        angles: ``(..., 3)`` radians, in the order of ``order``.
        order: three letters of ``"XYZ"`` in channel order, e.g. ``"ZXY"``; the result is
            ``R = R_order[0] @ R_order[1] @ R_order[2]``.
    Returns:
        ``(..., 3, 3)``.
    """
    mats = []
    for k, axis in enumerate(order.upper()):
        a = angles[..., k]
        c, s = torch.cos(a), torch.sin(a)
        o, z = torch.ones_like(a), torch.zeros_like(a)
        if axis == "X":
            m = [o, z, z, z, c, -s, z, s, c]
        elif axis == "Y":
            m = [c, z, s, z, o, z, -s, z, c]
        elif axis == "Z":
            m = [c, -s, z, s, c, z, z, z, o]
        else:
            raise ValueError(f"bad Euler order {order!r}")
        mats.append(torch.stack(m, -1).reshape(*a.shape, 3, 3))
    return mats[0] @ mats[1] @ mats[2]
