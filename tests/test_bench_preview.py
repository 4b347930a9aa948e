"""``poseforge bench preview`` (issue 5): metrics on the character region on hand-computed cases, the
"ahead" table, and the command end to end on a tiny synthetic preview set with tiny weights."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from poseforge.backend import cli
from poseforge.backend.bench import preview as bp
from poseforge.backend.bench.preview_metrics import (MetricError, character_mask, masked_flicker, masked_l1,
                                                     masked_metrics, masked_psnr, masked_ssim, ssim)
from poseforge.backend.models.dmm import DMM, DMMConfig
from poseforge.backend.weights import save_model

K = 15
TINY = DMMConfig(base=8, max_channels=16, style_dim=16, groups=2)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda k: None)   # the command asks for 2
    yield
    monkeypatch.undo()
    torch.set_num_threads(n)


# --- masked metrics ----------------------------------------------------------------------------------

def test_character_mask_dilates_by_two_pixels():
    lab = np.zeros((2, 16, 16), np.uint8)
    lab[0, 8, 8] = 3
    lab[1, 0, 15] = 1                                  # at the corner: clipped by the frame
    m = character_mask(lab)
    assert m.dtype == torch.bool and m.shape == (2, 16, 16)
    assert int(m[0].sum()) == 25 and bool(m[0, 6:11, 6:11].all()) and not bool(m[0, 5, 8]) and not bool(m[0, 8, 11])
    assert int(m[1].sum()) == 9 and bool(m[1, 0:3, 13:16].all())
    assert int(character_mask(lab, dilate=0).sum()) == 2


def test_masked_metrics_hand_computed():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 0.8, size=(3, 3, 24, 24))
    mask = np.zeros((3, 24, 24), bool)
    mask[:, 6:18, 6:18] = True
    # an error only outside the mask does not count
    off = gt.copy()
    off[:, :, :1, :] += 0.3                           # SSIM windows of the region reach row 1
    assert masked_l1(off, gt, mask) == 0 and masked_psnr(off, gt, mask) == math.inf
    assert masked_ssim(off, gt, mask) == pytest.approx(1.0) and ssim(off, gt) < 1 - 1e-5
    # an error of 0.1 inside: L1 0.1, PSNR 20 dB whatever happens outside
    inside = off.copy()
    inside[:, :, 6:18, 6:18] += 0.1
    assert masked_l1(inside, gt, mask) == pytest.approx(0.1)
    assert masked_psnr(inside, gt, mask) == pytest.approx(20.0)
    assert masked_psnr(inside * 2, gt * 2, mask, data_range=2.0) == pytest.approx(20.0)
    # flicker over the union of consecutive masks: frame 0 has the character in the left half,
    # frame 1 in the right half; the error changes by 0.2 only in the left half
    g = np.zeros((2, 1, 4, 4))
    p = g.copy()
    p[0, :, :, :2] = 0.2
    m2 = np.zeros((2, 4, 4), bool)
    m2[0, :, :2] = True
    m2[1, :, 2:] = True
    # union = every pixel; |e1 - e0| = 0.2 on half of them
    assert masked_flicker(p, g, m2) == pytest.approx(0.1)
    m3 = np.zeros((2, 4, 4), bool)
    m3[:, :, :2] = True
    assert masked_flicker(p, g, m3) == pytest.approx(0.2)
    # SSIM on the region: two flat images, as in the SSIM formula
    c1 = 0.01 ** 2
    x, y = np.full((1, 3, 16, 16), 0.3), np.full((1, 3, 16, 16), 0.6)
    mk = np.zeros((1, 16, 16), bool)
    mk[0, 7, 7] = True
    assert masked_ssim(x, y, mk) == pytest.approx((2 * 0.3 * 0.6 + c1) / (0.09 + 0.36 + c1))
    res = masked_metrics(inside, gt, mask)
    assert set(res) == {"psnr", "ssim", "l1", "flicker"} and res["flicker"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(MetricError, match="no pixel"):
        masked_l1(gt, gt, np.zeros((3, 24, 24), bool))
    with pytest.raises(MetricError, match="border"):
        masked_ssim(x, y, np.pad(np.ones((1, 1, 16), bool), ((0, 0), (0, 15), (0, 0))))
    with pytest.raises(MetricError, match="does not match"):
        masked_l1(gt, gt, mask[:2])


def test_ahead_compares_in_the_right_direction():
    def row(psnr, ssim_, l1, fl):
        r = {"psnr": psnr, "ssim": ssim_, "l1": l1, "flicker": fl}
        return {"full": r, "character": dict(r)}
    rows = {"dmm": row(25, 0.9, 0.05, 0.01), "conv": row(24, 0.91, 0.06, 0.01),
            "copy_reference": row(30, 0.95, 0.01, 0.0)}
    ah = bp.ahead(rows)
    assert set(ah) == {"conv", "copy_reference"}
    assert ah["conv"]["full"] == {"psnr": True, "ssim": False, "l1": True, "flicker": False}   # a tie is not ahead
    assert not any(ah["copy_reference"]["character"].values())


# --- the command on a tiny synthetic preview set -------------------------------------------------------

def _clip(R, T, x0, seed):
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 120, 3)
    skin = rng.integers(120, 255, 3)
    rgb = np.empty((T + 1, R, R, 3), np.uint8)
    lab = np.zeros((T + 1, R, R), np.uint8)
    for t in range(T + 1):
        x = x0 + 2 * t
        rgb[t] = bg
        rgb[t, 8:22, x:x + 6] = skin
        lab[t, 8:22, x:x + 6] = 2
        lab[t, 4:8, x + 1:x + 5] = 1
        rgb[t, 4:8, x + 1:x + 5] = 230
    return {"rgb": rgb[1:], "labels": lab[1:], "ref_rgb": rgb[0], "ref_labels": lab[0]}


def _dataset(path, R=32, T=5):
    path.mkdir(parents=True)
    entries = []
    for i, split in enumerate(["train", "test", "test"]):
        name = f"{split}_{i:04d}"
        np.savez(path / f"{name}.npz", **_clip(R, T, 4 + i, i))
        entries.append({"name": name, "character": "synthetic", "motion": f"m{i}", "frames": T, "split": split})
    (path / "index.json").write_text(json.dumps({"version": 1, "resolution": R, "fps": 30, "parts": K,
                                                 "command": "synthetic", "clips": entries}))
    return path


def _weights(folder, *variants):
    for i, (name, cfg) in enumerate({"dmm": TINY, "dmm_forward": DMMConfig(**{**TINY.__dict__, "propagation": "forward"}),
                                     "dmm_conv": DMMConfig(**{**TINY.__dict__, "modulation": "conv"})}.items()):
        if name in variants:
            torch.manual_seed(i)
            save_model(name, DMM(cfg), cfg, {"variant": name, "training": {"steps_done": 0}}, folder)
    return folder


def test_bench_end_to_end(tmp_path, capsys):
    data = _dataset(tmp_path / "previewset")
    w = _weights(tmp_path / "w", "dmm", "dmm_forward")          # no conv ablation: its row is left out
    out, strip = tmp_path / "res" / "bench.json", tmp_path / "strip.png"
    assert cli.main(["bench", "preview", "--out", str(out), "--data", str(data), "--weights", str(w),
                     "--strip", str(strip), "--latency-frames", "7", "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    text = out.read_text()
    assert str(tmp_path) not in text                          # no machine paths in the JSON
    res = json.loads(text)
    assert res["data"] == "previewset" and res["clips"] == 2 and res["frames"] == 10
    assert res["clip_names"] == ["test_0001", "test_0002"]   # the test split only
    assert list(res["rows"]) == ["dmm", "forward", "copy_reference"]
    assert any("'conv' left out" in n and "dmm_conv.safetensors" in n for n in res["notes"])
    assert "conv" in cap.err
    for row in res["rows"].values():
        for r in (row["full"], row["character"], row["one_pass"]["full"], row["one_pass"]["character"]):
            assert set(r) == {"psnr", "ssim", "l1", "flicker"} and all(math.isfinite(v) for v in r.values())
        assert row["one_pass"]["full"] == row["full"]            # 5-frame clips fit one window
    # copy-reference: every frame is the reference; its L1 is the mean |reference - frame|
    want = np.mean([np.abs(c["ref_rgb"][None].astype(float) - c["rgb"]).mean() / 255
                    for c in (_clip(32, 5, 5, 1), _clip(32, 5, 6, 2))])
    assert res["rows"]["copy_reference"]["full"]["l1"] == pytest.approx(want, rel=1e-4)
    assert set(res["ahead"]) == {"forward", "copy_reference"} and res["dmm_ahead_everywhere"] is False
    lat = res["latency"]
    assert lat["frames"] == 7 and lat["size"] == [32, 32] and len(lat["runs_s"]) == 3
    assert res["latency_s"] == lat["median_s"] > 0 and lat["load_weights_s"] > 0
    assert res["torch"] == torch.__version__ and res["device"] == "cpu"
    assert "| dmm |" in cap.out and "| copy_reference |" in cap.out
    # the strip: reference column + 5 frames; rows ground truth, dmm, forward, copy, label map
    img = np.asarray(Image.open(strip))
    assert img.shape[0] > 5 * 32 and img.shape[1] > 6 * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previewset", "res", "strip.png", "w"]


def test_bench_refuses_missing_data_and_weights(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli.main(["bench", "preview", "--out", str(out), "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "poseforge data preview-set --out" in err and len(err.strip().splitlines()) == 1
    data = _dataset(tmp_path / "set")
    assert cli.main(["bench", "preview", "--out", str(out), "--data", str(data),
                     "--weights", str(tmp_path / "empty")]) == 2
    assert "No preview weights dmm.safetensors" in capsys.readouterr().err
    assert cli.main(["bench", "preview", "--out", str(out), "--data", str(data), "--clips", "0"]) == 2
    assert "--clips" in capsys.readouterr().err
    assert not out.exists()
