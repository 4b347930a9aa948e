"""Image and video metrics of the textured preview benchmark (issue 5): PSNR, SSIM, L1 and temporal
flicker, between rendered frames and the ground-truth render.

Frames are torch tensors or numpy arrays laid out ``(…, C, H, W)`` (channels first, any leading
dimensions), float values on a scale whose full range is ``data_range`` (1.0 for images in
``[0, 1]``, 2.0 for images in ``[-1, 1]``).  A video is ``(…, T, C, H, W)``.

SSIM is Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity",
IEEE TIP 2004: an 11x11 Gaussian window (sigma 1.5) per channel, K1 = 0.01, K2 = 0.03, over the
valid region (no padding), averaged over pixels and channels.  :func:`ssim_map` is differentiable
and is also the SSIM training loss of ``poseforge train dmm``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class MetricError(ValueError):
    """Predicted and reference frames cannot be compared (shapes differ, too few frames or pixels)."""


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(pred).to(torch.float64) if not torch.is_tensor(pred) else pred
    t = torch.as_tensor(target).to(torch.float64) if not torch.is_tensor(target) else target
    if p.shape != t.shape:
        raise MetricError(f"prediction {tuple(p.shape)} and reference {tuple(t.shape)} differ in shape")
    if p.dim() < 3:
        raise MetricError(f"frames must be (..., C, H, W), got {tuple(p.shape)}")
    if not p.is_floating_point():
        p = p.double()
    if not t.is_floating_point():
        t = t.double()
    return p, t.to(p.dtype)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(size,)`` normalised 1-D Gaussian (the separable SSIM window)."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, size: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel, per-channel SSIM (differentiable).

    Args:
        pred, target: ``(…, C, H, W)`` with ``H, W >= size``.
        data_range: full value range of the images (1.0 for ``[0, 1]``).
    Returns:
        ``(N, C, H - size + 1, W - size + 1)`` with ``N`` the product of the leading dimensions.
    Raises:
        MetricError: shapes differ or the frames are smaller than the window.
    """
    p, t = _pair(pred, target)
    C, H, W = p.shape[-3:]
    if H < size or W < size:
        raise MetricError(f"frames of {W}x{H} are smaller than the {size}x{size} SSIM window")
    p, t = p.reshape(-1, C, H, W), t.reshape(-1, C, H, W)
    g = gaussian_window(size, sigma, p.dtype, p.device)
    gx = g.view(1, 1, 1, size).expand(C, 1, 1, size)
    gy = g.view(1, 1, size, 1).expand(C, 1, size, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, gx, groups=C), gy, groups=C)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p ** 2
    var_t = blur(t * t) - mu_t ** 2
    cov = blur(p * t) - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))


def ssim(pred, target, data_range: float = 1.0) -> float:
    """Mean SSIM over frames, channels and pixels (1.0 for identical frames). See :func:`ssim_map`."""
    with torch.no_grad():
        return float(ssim_map(pred, target, data_range).mean())


def l1(pred, target) -> float:
    """Mean absolute error over every value (in the units of the frames)."""
    p, t = _pair(pred, target)
    with torch.no_grad():
        return float((p - t).abs().mean())


def psnr(pred, target, data_range: float = 1.0, per_frame: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    By default the MSE is pooled over every frame (the PSNR of the whole video: one exactly
    reproduced frame does not make the result infinite); with ``per_frame`` the PSNR of each frame
    ``(C, H, W)`` is averaged (``inf`` as soon as one frame is reproduced exactly).  ``inf`` when
    everything is reproduced exactly.
    """
    p, t = _pair(pred, target)
    with torch.no_grad():
        mse = (p - t).pow(2).flatten(-3).mean(-1).reshape(-1)
        if not per_frame:
            mse = mse.mean().reshape(1)
        vals = [math.inf if float(m) == 0.0 else 10.0 * math.log10(data_range ** 2 / float(m)) for m in mse]
    return float(sum(vals) / len(vals))


def flicker(pred, target) -> float:
    """Temporal flicker: mean absolute frame-to-frame change of the error ``e_t = pred_t - target_t``,
    ``mean |e_{t+1} - e_t|`` over ``t``, channels and pixels.  A constant error (a static offset,
    a fixed blur) gives 0; an error that changes from frame to frame does not.

    Args:
        pred, target: ``(…, T, C, H, W)`` videos with ``T >= 2``.
    Raises:
        MetricError: shapes differ or fewer than 2 frames.
    """
    p, t = _pair(pred, target)
    if p.dim() < 4 or p.shape[-4] < 2:
        raise MetricError(f"flicker needs videos (..., T, C, H, W) with T >= 2 frames, got {tuple(p.shape)}")
    with torch.no_grad():
        e = p - t
        return float((e.narrow(-4, 1, e.shape[-4] - 1) - e.narrow(-4, 0, e.shape[-4] - 1)).abs().mean())


def all_metrics(pred, target, data_range: float = 1.0) -> dict:
    """``{"psnr", "ssim", "l1", "flicker"}`` of videos ``(…, T, C, H, W)`` (see each function)."""
    return {"psnr": psnr(pred, target, data_range), "ssim": ssim(pred, target, data_range),
            "l1": l1(pred, target), "flicker": flicker(pred, target)}


# --- metrics on the character region ---------------------------------------------------------------

def character_mask(labels, dilate: int = 2) -> torch.Tensor:
    """Where the character is: pixels of a label map that show a body part (id > 0), dilated by
    ``dilate`` pixels (a ``(2 dilate + 1)`` square: every pixel within ``dilate`` pixels in x and y
    of a body-part pixel), so the silhouette's edge and a slightly misplaced limb count.

    Args:
        labels: ``(…, H, W)`` integer label maps (0 = background).
        dilate: pixels (>= 0).
    Returns:
        ``(…, H, W)`` bool tensor.
    """
    lab = torch.as_tensor(labels)
    if lab.dim() < 2:
        raise MetricError(f"label maps must be (..., H, W), got {tuple(lab.shape)}")
    fg = (lab > 0).to(torch.float32)
    if dilate > 0:
        H, W = fg.shape[-2:]
        flat = fg.reshape(-1, 1, H, W)
        flat = F.max_pool2d(flat, 2 * dilate + 1, stride=1, padding=dilate)
        fg = flat.reshape(fg.shape)
    return fg > 0


def _masked(pred, target, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p, t = _pair(pred, target)
    m = torch.as_tensor(mask).to(device=p.device)
    want = tuple(p.shape[:-3]) + tuple(p.shape[-2:])
    if tuple(m.shape) != want:
        raise MetricError(f"mask {tuple(m.shape)} does not match the frames {tuple(p.shape)}: expected {want}")
    m = m.bool()
    if not bool(m.any()):
        raise MetricError("the mask selects no pixel (no character in the ground-truth frames)")
    return p, t, m.unsqueeze(-3).to(p.dtype)                             # (…, 1, H, W)


def masked_l1(pred, target, mask) -> float:
    """Mean absolute error over the masked pixels (all channels).

    Args:
        pred, target: ``(…, C, H, W)``; mask: ``(…, H, W)`` bool (as :func:`character_mask`).
    Raises:
        MetricError: shapes differ or the mask is empty.
    """
    p, t, m = _masked(pred, target, mask)
    with torch.no_grad():
        return float(((p - t).abs() * m).sum() / (m.sum() * p.shape[-3]))


def masked_psnr(pred, target, mask, data_range: float = 1.0) -> float:
    """PSNR (dB) of the MSE pooled over the masked pixels of every frame (``inf`` when they are
    reproduced exactly).  See :func:`psnr` and :func:`masked_l1` for the arguments."""
    p, t, m = _masked(pred, target, mask)
    with torch.no_grad():
        mse = float(((p - t).pow(2) * m).sum() / (m.sum() * p.shape[-3]))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range ** 2 / mse)


def masked_ssim(pred, target, mask, data_range: float = 1.0, size: int = 11) -> float:
    """Mean SSIM (:func:`ssim_map`) over the masked pixels: the SSIM of the window centred on each
    pixel of the mask (pixels closer than ``size // 2`` to the border have no window and are left
    out), averaged over them and the channels.

    Raises:
        MetricError: shapes differ, frames smaller than the window, or no masked pixel away from
            the border.
    """
    p, t, m = _masked(pred, target, mask)
    smap = ssim_map(p, t, data_range, size)                               # (N, C, H-s+1, W-s+1)
    r = size // 2
    H, W = p.shape[-2:]
    mc = m.reshape(-1, 1, H, W)[:, :, r:H - r, r:W - r]
    if not bool(mc.any()):
        raise MetricError("the mask selects no pixel away from the frame border (SSIM window)")
    with torch.no_grad():
        return float((smap * mc).sum() / (mc.sum() * smap.shape[1]))


def masked_flicker(pred, target, mask) -> float:
    """Temporal flicker (:func:`flicker`) on the masked region: ``|e_{t+1} - e_t|`` averaged over
    the pixels in the mask of frame ``t`` or of frame ``t + 1`` (the union: the character moves)
    and the channels, pooled over every pair of consecutive frames.

    Args:
        pred, target: ``(…, T, C, H, W)``, ``T >= 2``; mask: ``(…, T, H, W)`` bool.
    Raises:
        MetricError: shapes differ, fewer than 2 frames, or an empty mask.
    """
    p, t, m = _masked(pred, target, mask)
    if p.dim() < 4 or p.shape[-4] < 2:
        raise MetricError(f"flicker needs videos (..., T, C, H, W) with T >= 2 frames, got {tuple(p.shape)}")
    with torch.no_grad():
        e = p - t
        n = e.shape[-4] - 1
        d = (e.narrow(-4, 1, n) - e.narrow(-4, 0, n)).abs()
        u = torch.maximum(m.narrow(-4, 1, n), m.narrow(-4, 0, n))
        return float((d * u).sum() / (u.sum() * p.shape[-3]))


def masked_metrics(pred, target, mask, data_range: float = 1.0) -> dict:
    """``{"psnr", "ssim", "l1", "flicker"}`` of videos ``(…, T, C, H, W)`` on the masked pixels
    ``(…, T, H, W)`` (see each ``masked_*`` function)."""
    return {"psnr": masked_psnr(pred, target, mask, data_range), "ssim": masked_ssim(pred, target, mask, data_range),
            "l1": masked_l1(pred, target, mask), "flicker": masked_flicker(pred, target, mask)}
