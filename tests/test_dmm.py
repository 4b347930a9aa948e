"""DMM textured preview (issue 5): the network and its ablations, the deformable sampler, the
losses and metrics on hand-computed cases, and ``poseforge train dmm`` on a tiny synthetic dataset
in the preview-set format."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from poseforge.backend import cli
from poseforge.backend.bench.preview_metrics import MetricError, flicker, l1, psnr, ssim
from poseforge.backend.models.dmm import (DMM, DMMConfig, DMMError, DeformModConv, copy_reference,
                                          deform_sample, one_hot_labels, part_flow)
from poseforge.backend.train.dmm import gradient_loss
from poseforge.backend.weights import load_card, load_model

K = 15
TINY = DMMConfig(base=8, max_channels=16, style_dim=16, groups=2)
TINY_JSON = {"base": 8, "max_channels": 16, "style_dim": 16, "groups": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- a synthetic "character": a striped torso and a head moving across the frame ------------------

def _render(R: int, cx: int, cy: int, phase: int = 0):
    """One frame: (R, R, 3) uint8 image and (R, R) uint8 labels of a 2-part body at (cx, cy)."""
    img = np.full((R, R, 3), 90, np.uint8)
    lab = np.zeros((R, R), np.uint8)
    y, x = np.mgrid[0:R, 0:R]
    torso = (abs(x - cx) <= 4) & (y >= cy) & (y < cy + 12)
    head = (abs(x - cx) <= 2) & (y >= cy - 5) & (y < cy)
    stripes = ((y - cy + phase) // 2) % 2 == 0
    img[torso & stripes] = (230, 40, 40)
    img[torso & ~stripes] = (40, 40, 230)
    img[head] = (240, 200, 150)
    lab[torso] = 2
    lab[head] = 1
    return img, lab


def _clip(R: int, T: int, x0: int, dx: int, ref_x: int):
    frames = [_render(R, x0 + dx * t, 12) for t in range(T)]
    ref_img, ref_lab = _render(R, ref_x, 12)
    return {"rgb": np.stack([f[0] for f in frames]), "labels": np.stack([f[1] for f in frames]),
            "ref_rgb": ref_img, "ref_labels": ref_lab}


def _tensors(clip):
    def img(a):
        return torch.from_numpy(a).float().div(127.5).sub(1).movedim(-1, -3)
    return (img(clip["ref_rgb"])[None], one_hot_labels(clip["ref_labels"], K)[None],
            one_hot_labels(clip["labels"], K)[None], img(clip["rgb"])[None])


def _make_dataset(path, R=32, T=6, clips=2):
    path.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(clips):
        name = f"clip{i:03d}"
        np.savez(path / f"{name}.npz", **_clip(R, T, 8 + i, 2, 20 - i))
        entries.append({"name": name, "character": "synthetic", "motion": f"walk{i}", "frames": T,
                        "split": "train", "texture": {"seed": i}, "camera": {"distance": 3.0}})
    (path / "index.json").write_text(json.dumps({"version": 1, "resolution": R, "fps": 30, "parts": K,
                                                 "command": "synthetic test data", "clips": entries}))
    return path


# --- network ---------------------------------------------------------------------------------------

def test_output_shape_range_and_input_errors():
    torch.manual_seed(0)
    ref, rc, cond, _ = _tensors(_clip(32, 3, 8, 2, 20))
    model = DMM(TINY)
    out = model(ref.repeat(2, 1, 1, 1), rc.repeat(2, 1, 1, 1), cond.repeat(2, 1, 1, 1, 1))
    assert out.shape == (2, 3, 3, 32, 32)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    with pytest.raises(DMMError, match="cond must be"):
        model(ref, rc, cond[:, :, :5])
    with pytest.raises(DMMError, match="divisible by 4"):
        model(ref[..., :30, :30], rc[..., :30, :30], cond[..., :30, :30])
    with pytest.raises(DMMError, match="expected 0..15"):
        one_hot_labels(np.full((4, 4), 16, np.uint8), K)
    with pytest.raises(DMMError, match="modulation"):
        DMMConfig(modulation="attention")


def test_ablations_build_and_differ():
    ref, rc, cond, _ = _tensors(_clip(32, 3, 8, 2, 20))
    full, conv, fwd = DMM(TINY), DMM(DMMConfig(**TINY_JSON, modulation="conv")), \
        DMM(DMMConfig(**TINY_JSON, propagation="forward"))
    for m in (full, conv, fwd):
        assert m(ref, rc, cond).shape == (1, 3, 3, 32, 32)
    assert fwd.bwd_block is None and full.bwd_block is not None
    assert not hasattr(conv.fwd_block, "offset_head") and isinstance(conv.fwd_block.conv, torch.nn.Conv2d)
    assert isinstance(full.fwd_block.conv, DeformModConv)
    # forward-only: a frame's output does not depend on later frames; bidirectional: it does
    cond2 = cond.clone()
    cond2[:, 2] = cond[:, 0]
    with torch.no_grad():
        assert torch.allclose(fwd(ref, rc, cond)[:, 0], fwd(ref, rc, cond2)[:, 0])
        assert not torch.allclose(full(ref, rc, cond)[:, 0], full(ref, rc, cond2)[:, 0])


def test_style_modulation_changes_output():
    torch.manual_seed(1)
    ref, rc, cond, _ = _tensors(_clip(32, 2, 8, 2, 20))
    s1, s2 = torch.randn(1, TINY.style_dim), torch.randn(1, TINY.style_dim)
    full, conv = DMM(TINY).eval(), DMM(DMMConfig(**TINY_JSON, modulation="conv")).eval()
    with torch.no_grad():
        d_full = (full(ref, rc, cond, style=s1) - full(ref, rc, cond, style=s2)).abs().max()
        d_conv = (conv(ref, rc, cond, style=s1) - conv(ref, rc, cond, style=s2)).abs().max()
    assert d_full > 1e-6
    assert d_conv == 0          # the plain-conv ablation has no style modulation
    # in the DMM operation itself another style changes the features by a large share
    x = torch.randn(1, 32, 8, 8)
    off, mask = torch.randn(1, 36, 8, 8), torch.rand(1, 18, 8, 8)
    op = full.fwd_block.conv
    with torch.no_grad():
        y1, y2 = op(x, off, mask, s1), op(x, off, mask, s2)
    assert float((y1 - y2).norm() / y1.norm()) > 0.1


def test_deformable_sampler_shifts_by_constant_offset():
    torch.manual_seed(2)
    x = torch.randn(1, 4, 16, 20)
    dx, dy = 3.0, -2.0
    off = torch.zeros(1, 2 * 9 * 2, 16, 20)
    off.view(1, 2, 9, 2, 16, 20)[:, :, :, 0] = dx
    off.view(1, 2, 9, 2, 16, 20)[:, :, :, 1] = dy
    cols = deform_sample(x, off, groups=2)
    assert cols.shape == (1, 4, 9, 16, 20)
    centre = cols[:, :, 4]                                   # tap (0, 0)
    # output pixel (y, x) reads input (y + dy, x + dx): the image moves 3 px left and 2 px down
    assert torch.allclose(centre[..., 2:, :-3], x[..., :-2, 3:], atol=1e-5)
    # tap (ky, kx) = (1, -1) reads (y + 1 + dy, x - 1 + dx)
    assert torch.allclose(cols[:, :, 6][..., 1:, :-2], x[..., :-1, 2:], atol=1e-5)
    # the whole modulated deformable conv with an identity centre tap shifts the feature map
    conv = DeformModConv(4, 4, style_dim=3, groups=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 4] = torch.eye(4)
        conv.affine.weight.zero_()
    y = conv(x, off, torch.ones(1, 18, 16, 20), torch.randn(1, 3))
    assert torch.allclose(y[..., 2:, :-3], x[..., :-2, 3:], atol=1e-5)
    # half-pixel offsets interpolate bilinearly
    off.fill_(0.5)
    half = deform_sample(x, off, groups=2)[:, :, 4]
    want = (x[..., :-1, :-1] + x[..., 1:, :-1] + x[..., :-1, 1:] + x[..., 1:, 1:]) / 4
    assert torch.allclose(half[..., :-1, :-1], want, atol=1e-5)


def test_offsets_learn():
    torch.manual_seed(3)
    ref, rc, cond, rgb = _tensors(_clip(32, 3, 8, 2, 20))
    model = DMM(DMMConfig(**TINY_JSON, flow_prior=False))
    out = model(ref, rc, cond)
    (out - rgb).abs().mean().backward()
    for blk in (model.fwd_block, model.bwd_block):
        assert blk.offset_head.weight.grad is not None and blk.offset_head.weight.grad.abs().sum() > 0
        assert blk.mask_head.weight.grad.abs().sum() > 0
    assert float(model.fwd_block.last_offset.abs().max()) == 0.0           # zero-initialised head
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        opt.zero_grad()
        (model(ref, rc, cond) - rgb).abs().mean().backward()
        opt.step()
    assert float(model.fwd_block.last_offset.abs().max()) > 1e-3


def test_overfit_beats_copy_reference():
    torch.manual_seed(4)
    ref, rc, cond, rgb = _tensors(_clip(32, 4, 6, 3, 22))
    model = DMM(TINY)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(50):
        opt.zero_grad()
        loss = (model(ref, rc, cond) - rgb).abs().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err_model = float((model(ref, rc, cond) - rgb).abs().mean())
    err_copy = float((copy_reference(ref, 4) - rgb).abs().mean())
    assert copy_reference(ref, 4).shape == rgb.shape
    assert err_model < 0.8 * err_copy, (err_model, err_copy)


def test_part_flow_prior():
    R = 32
    _, lab_ref = _render(R, 20, 12)
    _, lab_dst = _render(R, 12, 12)
    src, dst = one_hot_labels(lab_ref, K)[None], one_hot_labels(lab_dst, K)[None]
    flow = part_flow(src, dst)
    body = torch.from_numpy(lab_dst > 0)
    assert torch.allclose(flow[0, 0][body], torch.tensor(8.0)) and float(flow[0, 1].abs().max()) < 1e-5
    assert float(flow[0, :, ~body].abs().max()) == 0.0
    coarse = part_flow(src, dst, factor=4)                   # 8 px at full size = 2 cells of 4 px
    assert coarse.shape == (1, 2, 8, 8)
    assert torch.allclose(coarse[0, 0][coarse[0, 0] != 0], torch.tensor(2.0))
    # a model with the prior starts out aligned: offsets of the reference groups equal the flow
    model = DMM(TINY)
    ref, rc, cond, _ = _tensors(_clip(R, 2, 12, 0, 20))
    with torch.no_grad():
        model(ref, rc, cond)
    off = model.fwd_block.last_offset.view(1, TINY.groups, 9, 2, 8, 8)
    assert torch.allclose(off[0, 0, 4], coarse[0]) and float(off[0, -1].abs().max()) == 0.0


# --- metrics and losses on hand-computed cases ------------------------------------------------------

def test_metrics_hand_computed():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.8, size=(5, 3, 16, 16))
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert l1(a, a) == 0 and flicker(a, a) == 0
    b = a + 0.1                                             # constant offset
    assert l1(b, a) == pytest.approx(0.1)
    assert psnr(b, a) == pytest.approx(20.0)                # 10 log10(1 / 0.01)
    assert psnr(b * 2, a * 2, data_range=2.0) == pytest.approx(20.0)
    # one exact frame among errors of 0.1: pooled MSE 0.008 -> 20.97 dB; per frame: inf
    c = b.copy()
    c[0] = a[0]
    assert psnr(c, a) == pytest.approx(10 * math.log10(1 / 0.008))
    assert psnr(c, a, per_frame=True) == math.inf
    assert flicker(b, a) == pytest.approx(0.0, abs=1e-12)   # a static error does not flicker
    # error alternating +0.1 / -0.1 from frame to frame: |e_t+1 - e_t| = 0.2
    sign = np.array([1, -1, 1, -1, 1], float)[:, None, None, None]
    assert flicker(a + 0.1 * sign, a) == pytest.approx(0.2)
    assert l1(a + 0.1 * sign, a) == pytest.approx(0.1)
    # SSIM of two flat images: (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = 0.01 ** 2
    x, y = np.full((1, 3, 16, 16), 0.3), np.full((1, 3, 16, 16), 0.6)
    assert ssim(x, y) == pytest.approx((2 * 0.3 * 0.6 + c1) / (0.09 + 0.36 + c1))
    with pytest.raises(MetricError, match="T >= 2"):
        flicker(a[:1], a[:1])
    with pytest.raises(MetricError, match="differ in shape"):
        l1(a, a[:, :2])
    with pytest.raises(MetricError, match="smaller than"):
        ssim(a[..., :8, :8], a[..., :8, :8])


def test_gradient_loss_hand_computed():
    flat = torch.zeros(1, 3, 16, 16)
    assert float(gradient_loss(flat + 0.3, flat)) == 0.0
    g = 0.01
    ramp = (torch.arange(16).float() * g).expand(1, 3, 16, 16)
    # slope g per pixel at full size, 2g and 4g per pooled pixel at 1/2 and 1/4: (g + 2g + 4g) / 3
    assert float(gradient_loss(ramp, flat)) == pytest.approx(7 * g / 3, rel=1e-5)


# --- the trainer ------------------------------------------------------------------------------------

def _train(data, out, *extra, config=None):
    cfg = {**TINY_JSON, "frames": 4, "batch": 2, "threads": 1, "warmup": 1, **(config or {})}
    return cli.main(["train", "dmm", "--data", str(data), "--out", str(out), "--device", "cpu",
                     "--config", json.dumps(cfg), *extra])


def test_trainer_runs_saves_and_resumes(tmp_path, capsys):
    data = _make_dataset(tmp_path / "set")
    out = tmp_path / "w"
    assert _train(data, out, "--steps", "3") == 0
    assert (out / "dmm.safetensors").is_file() and (out / "dmm.json").is_file()
    card = load_card("dmm", out)
    assert card["training"]["steps_done"] == 3 and card["variant"] == "dmm"
    assert card["data"]["train_clips"] == 2 and card["data"]["resolution"] == 32
    assert "2307.07754" in card["paper"]
    model = load_model("dmm", DMM, out)
    assert model.config == DMMConfig(**TINY_JSON)
    capsys.readouterr()
    assert _train(data, out, "--steps", "5", "--resume") == 0
    assert "resumed from dmm.ckpt.safetensors at step 3" in capsys.readouterr().out
    assert load_card("dmm", out)["training"]["steps_done"] == 5
    # an ablation is saved under its own name
    assert _train(data, out, "--steps", "1", config={"variant": "forward"}) == 0
    assert load_model("dmm_forward", DMM, out).bwd_block is None


def test_trainer_errors(tmp_path, capsys):
    out = tmp_path / "w"
    assert _train(tmp_path / "nothing", out, "--steps", "1") == 2
    assert "no preview dataset" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.json").write_text("{not json")
    assert _train(bad, out, "--steps", "1") == 2
    assert "index" in capsys.readouterr().err
    data = _make_dataset(tmp_path / "set")
    with np.load(data / "clip000.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "ref_rgb"}
    np.savez(data / "clip000.npz", **arrays)
    assert _train(data, out, "--steps", "1") == 2
    assert "ref_rgb" in capsys.readouterr().err
    data = _make_dataset(tmp_path / "set2")
    assert _train(data, out, "--steps", "1", config={"frames": 9}) == 2
    assert "9 frames" in capsys.readouterr().err
    assert _train(data, out, "--steps", "1", config={"modulation": "conv"}) == 2
    assert "variant" in capsys.readouterr().err
    assert _train(data, out, "--steps", "1", config={"colour": 1}) == 2
    assert "unknown DMM training settings" in capsys.readouterr().err
    assert not (out / "dmm.safetensors").exists()
