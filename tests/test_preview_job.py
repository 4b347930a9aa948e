"""Textured preview job (issue 5): the DMM over a frame range in cross-faded windows, the mp4 writer
and the ``preview`` job's progress, cancel and errors, with tiny random weights."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from poseforge.backend.models.dmm import DMM, DMMConfig
from poseforge.backend.service import Event, JobCancelled, JobContext, run_job
from poseforge.backend.tasks import preview as pv
from poseforge.backend.weights import save_model

K = 15
TINY = DMMConfig(base=8, max_channels=16, style_dim=16, groups=2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    save_model("dmm", DMM(TINY), TINY, {"note": "random init for tests"}, folder)
    return folder


@pytest.fixture(scope="module")
def model(weights):
    return pv.load_preview_model(weights)


def _inputs(T=6, R=32, seed=0):
    """A reference image and label maps of a 2-part figure moving right."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (R, R, 3), dtype=np.uint8)
    lab = np.zeros((T, R, R), np.uint8)
    for t in range(T):
        x = 4 + 2 * t
        lab[t, 8:20, x:x + 6] = 2
        lab[t, 4:8, x + 1:x + 5] = 1
    ref_lab = lab[0].copy()
    return ref, ref_lab, lab


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _run(request, cancel_at=None):
    events: list[Event] = []
    ctx = JobContext("j1", events.append, device="cpu")
    if cancel_at is not None:
        def emit(ev):
            events.append(ev)
            if ev.kind == "progress" and cancel_at in ev.message:
                ctx.cancel_event.set()
        ctx.emit = emit
    run_job("preview", request, ctx)
    return events


# --- render_preview --------------------------------------------------------------------------------

def test_windows_cover_the_range_and_cross_fade(model):
    assert pv.plan_windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert pv.plan_windows(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (7, 11)]   # last moved back
    assert pv.plan_windows(5, None, 4) == [(0, 5)] and pv.plan_windows(3, 16, 4) == [(0, 3)]
    w = pv._blend_weights(4, 2, 2)
    assert np.allclose(w, [1 / 3, 2 / 3, 2 / 3, 1 / 3])
    # two windows sharing n frames: their weights sum to 1 there
    a, b = pv._blend_weights(6, 0, 3), pv._blend_weights(6, 3, 0)
    assert np.allclose(a[3:] + b[:3], 1.0)

    ref, ref_lab, lab = _inputs(T=7)
    out = pv.render_preview(model, ref, ref_lab, lab, window=4, overlap=1)   # windows (0,4) (3,7)
    first = pv.render_preview(model, ref, ref_lab, lab[:4], window=None)
    second = pv.render_preview(model, ref, ref_lab, lab[3:], window=None)
    assert out.shape == (7, 32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:3], first[:3]) and np.array_equal(out[4:], second[1:])
    # the shared frame is the average of both windows' renders (weights 1/2, 1/2)
    mean = (first[3].astype(float) + second[0].astype(float)) / 2
    assert np.abs(out[3] - mean).max() <= 1.0
    assert not np.array_equal(first[3], second[0])      # the windows did disagree there


def test_background_is_the_reference_and_the_character_is_the_network(model):
    ref, ref_lab, lab = _inputs(T=5)
    out = pv.render_preview(model, ref, ref_lab, lab)
    raw = pv.render_preview(model, ref, ref_lab, lab, keep_background=False)
    region = pv.character_region(lab, ref_lab)
    assert region[:, 0, 0].sum() == 0 and region[2, 12, 9] and region[2, 12, 15]   # frame 2's body, grown
    # far from the figure in the frame and in the reference, the pixels are the reference's exactly
    assert np.array_equal(out[~region], np.broadcast_to(ref, out.shape)[~region])
    assert not np.array_equal(raw[~region], np.broadcast_to(ref, raw.shape)[~region])   # the network's are not
    assert np.array_equal(out[region], raw[region])


def test_a_background_plate_fills_where_the_reference_figure_stood(model):
    ref, ref_lab, lab = _inputs(T=5)
    plate = np.full_like(ref, 153)
    out = pv.render_preview(model, ref, ref_lab, lab, background=plate)
    own = pv.character_region(lab, np.zeros_like(ref_lab))
    assert np.array_equal(out[~own], np.broadcast_to(plate, out.shape)[~own])
    # frame 4's figure has moved 8 px right of the reference's: the reference's place shows the plate
    assert not own[4, 12, 5] and pv.character_region(lab, ref_lab)[4, 12, 5]
    assert (out[4, 12, 5] == 153).all()
    raw = pv.render_preview(model, ref, ref_lab, lab, keep_background=False)
    assert np.array_equal(out[own], raw[own])
    with pytest.raises(pv.PreviewError, match="background plate"):
        pv.render_preview(model, ref, ref_lab, lab, background=plate[:-4])


def test_single_frame_progress_and_cancel(model):
    ref, ref_lab, lab = _inputs(T=9)
    one = pv.render_preview(model, ref, ref_lab, lab[:1])
    assert one.shape == (1, 32, 32, 3)
    seen = []
    pv.render_preview(model, ref, ref_lab, lab, window=4, overlap=1, progress=lambda f, m: seen.append(f))
    assert len(seen) == len(pv.plan_windows(9, 4, 1)) and seen == sorted(seen) and seen[-1] == 1.0
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 2                        # ask to stop before the second window
    with pytest.raises(JobCancelled):
        pv.render_preview(model, ref, ref_lab, lab, window=4, overlap=1, check_cancel=cancel)
    assert len(calls) == 2


def test_render_refuses_bad_inputs_with_clear_errors(model):
    ref, ref_lab, lab = _inputs()
    with pytest.raises(pv.PreviewError, match="multiple of 4"):
        pv.render_preview(model, ref[:30, :30], ref_lab[:30, :30], lab[:, :30, :30])
    bad = lab.copy()
    bad[0, 0, 0] = K + 1
    with pytest.raises(pv.PreviewError, match=f"part ids 0..{K + 1}.*0..{K}"):
        pv.render_preview(model, ref, ref_lab, bad)
    with pytest.raises(pv.PreviewError, match="empty"):
        pv.render_preview(model, ref, ref_lab, lab[:0])
    with pytest.raises(pv.PreviewError, match="like the reference"):
        pv.render_preview(model, ref, ref_lab, lab[:, :16])
    with pytest.raises(pv.PreviewError, match="overlap"):
        pv.render_preview(model, ref, ref_lab, lab, window=4, overlap=4)
    with pytest.raises(pv.PreviewError, match="uint8"):
        pv.render_preview(model, ref.astype(np.float32), ref_lab, lab)


# --- write_mp4 -------------------------------------------------------------------------------------

def _read(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return s.average_rate, s.width, s.height, frames


def test_mp4_rate_size_and_frames(tmp_path):
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 256, (1, 33, 45, 3), dtype=np.uint8), 5, 0)
    frames[:, :, :, :] = np.linspace(0, 255, 45).astype(np.uint8)[None, None, :, None]   # smooth: codes well
    out = pv.write_mp4(frames, tmp_path / "a.mp4", 23.976)
    rate, w, h, dec = _read(out)
    assert rate == Fraction(24000, 1001) and (w, h) == (46, 34) and len(dec) == 5   # odd sizes padded
    assert np.abs(dec[2][:33, :45].astype(int) - frames[2]).mean() < 3
    assert _read(pv.write_mp4(frames[:2], tmp_path / "b.mp4", 29.97))[0] == Fraction(30000, 1001)
    assert _read(pv.write_mp4(frames[:2], tmp_path / "c.mp4", 25))[0] == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    with pytest.raises(pv.PreviewError, match="does not exist"):
        pv.write_mp4(frames, tmp_path / "nope" / "a.mp4", 24)
    with pytest.raises(pv.PreviewError, match="frame rate"):
        pv.write_mp4(frames, tmp_path / "d.mp4", 0)


def test_mp4_cancel_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"the previous preview")
    frames = np.zeros((40, 32, 32, 3), np.uint8)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3
    with pytest.raises(JobCancelled):
        pv.write_mp4(frames, out, 24, check_cancel=cancel)
    assert out.read_bytes() == b"the previous preview"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


# --- the job ---------------------------------------------------------------------------------------

def test_preview_job_writes_the_video_with_progress(tmp_path, weights):
    ref, ref_lab, lab = _inputs(T=9)
    req = {"inputs": _npz(tmp_path / "in.npz", ref_rgb=ref, ref_labels=ref_lab, labels=lab),
           "out": str(tmp_path / "shot.mp4"), "fps": 29.97, "weights_dir": str(weights), "device": "cpu",
           "window": 4, "overlap": 1}
    events = _run(req)
    assert events[-1].kind == "result", events[-1]
    res = events[-1].data
    assert res["path"] == str((tmp_path / "shot.mp4").resolve()) and res["frames"] == 9 and res["device"] == "cpu"
    assert res["seconds"] > 0
    rate, w, h, dec = _read(tmp_path / "shot.mp4")
    assert rate == Fraction(30000, 1001) and (w, h) == (32, 32) and len(dec) == 9
    prog = [e for e in events if e.kind == "progress"]
    fr = [e.fraction for e in prog]
    assert fr == sorted(fr)
    net = [e for e in prog if e.message.startswith("Rendered frames")]
    enc = [e for e in prog if e.message.startswith("Encoding")]
    assert len(net) == 3 and enc and max(e.fraction for e in net) <= min(e.fraction for e in enc)


def test_cancel_during_the_network_leaves_no_file(tmp_path, weights):
    ref, ref_lab, lab = _inputs(T=9)
    out = tmp_path / "shot.mp4"
    req = {"inputs": _npz(tmp_path / "in.npz", ref_rgb=ref, ref_labels=ref_lab, labels=lab), "out": str(out),
           "fps": 24, "weights_dir": str(weights), "window": 4, "overlap": 1}
    events = _run(req, cancel_at="Rendered frames 1-4")
    assert events[-1].kind == "cancelled"
    assert sum(e.message.startswith("Rendered") for e in events) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]
    events = _run(req, cancel_at="Encoding")
    assert events[-1].kind == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


def _error(request):
    ev = _run(request)[-1]
    assert ev.kind == "error", ev
    assert not ev.message.startswith("Internal error"), ev.detail
    return ev


def test_job_errors_name_the_problem(tmp_path, weights):
    ref, ref_lab, lab = _inputs()
    good = _npz(tmp_path / "in.npz", ref_rgb=ref, ref_labels=ref_lab, labels=lab)
    base = {"inputs": good, "out": str(tmp_path / "o.mp4"), "fps": 24, "weights_dir": str(weights)}
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert "Cannot read the preview inputs junk.npz" in _error({**base, "inputs": str(tmp_path / "junk.npz")}).message
    assert "no such file" in _error({**base, "inputs": str(tmp_path / "missing.npz")}).message
    lack = _npz(tmp_path / "lack.npz", ref_rgb=ref, labels=lab)
    assert "lack ref_labels" in _error({**base, "inputs": lack}).message
    empty = _npz(tmp_path / "empty.npz", ref_rgb=ref, ref_labels=ref_lab, labels=lab[:0])
    assert "frame range is empty" in _error({**base, "inputs": empty}).message
    high = lab.copy()
    high[2, 5, 5] = 40
    hi = _npz(tmp_path / "high.npz", ref_rgb=ref, ref_labels=ref_lab, labels=high)
    assert "part ids 0..40" in _error({**base, "inputs": hi}).message
    odd = _npz(tmp_path / "odd.npz", ref_rgb=ref[:30], ref_labels=ref_lab[:30], labels=lab[:, :30])
    assert "multiple of 4" in _error({**base, "inputs": odd}).message
    inside = pv.PACKAGE_ROOT / "preview_test_output.mp4"
    assert "inside the PoseForge extension folder" in _error({**base, "out": str(inside)}).message
    assert not inside.exists()
    assert "does not exist" in _error({**base, "out": str(tmp_path / "no_dir" / "o.mp4")}).message
    assert "is a folder" in _error({**base, "out": str(tmp_path)}).message
    ev = _error({**base, "weights_dir": str(tmp_path / "no_weights")})
    assert "No preview weights dmm.safetensors" in ev.message and "poseforge train dmm" in ev.hint
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dmm.safetensors").write_bytes(b"garbage")
    assert "No usable preview weights" in _error({**base, "weights_dir": str(tmp_path / "broken")}).message
    assert "frame rate" in _error({**base, "fps": -1}).message
    assert not (tmp_path / "o.mp4").exists()


def test_reloads_retrained_weights(tmp_path):
    torch.manual_seed(1)
    save_model("dmm", DMM(TINY), TINY, {}, tmp_path)
    a = pv.load_preview_model(tmp_path)
    assert pv.load_preview_model(tmp_path) is a                  # cached
    torch.manual_seed(2)
    path = save_model("dmm", DMM(TINY), TINY, {}, tmp_path)
    import os
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    b = pv.load_preview_model(tmp_path)
    assert b is not a
    assert not torch.equal(a.to_rgb.weight, b.to_rgb.weight)
