"""In-betweening core: key interpolation, window frame, fill_motion contracts, the "inbetween" job,
and (with the shipped weights and the mocap) a measured margin over interpolation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from poseforge.backend import service
from poseforge.backend.models.gfpose import GFPose, GFPoseConfig
from poseforge.backend.rotations import quat_to_matrix
from poseforge.backend.skeleton import NUM_JOINTS, forward_kinematics_np
from poseforge.backend.tasks.inbetween import (InbetweenError, fill_motion, from_window, interpolate_keys,
                                               plan_gaps, to_window, window_frame)
from poseforge.backend.weights import default_weights_dir, save_model

TINY = GFPoseConfig(width=32, layers=1, heads=2)


def _random_quats(rng, shape):
    q = rng.normal(size=shape + (4,)).astype(np.float32)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _yaw(angle):
    return np.array([np.cos(angle / 2), 0, np.sin(angle / 2), 0], np.float32)


def _qmul(a, b):
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _motion(rng, T):
    """A smooth synthetic motion: slow random joint swings, the root walking forward."""
    t = np.linspace(0, 1, T)[:, None, None]
    axes = rng.normal(size=(1, NUM_JOINTS, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    ang = 0.6 * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5, size=(1, NUM_JOINTS, 1)))
    q = np.concatenate([np.cos(ang / 2), np.sin(ang / 2) * axes], -1).astype(np.float32)
    root = np.stack([0.1 * np.sin(3 * t[:, 0, 0]), 0.9 + 0 * t[:, 0, 0], 1.2 * t[:, 0, 0]], -1).astype(np.float32)
    return q, root


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("gfpose_tiny")
    torch.manual_seed(0)
    model = GFPose(TINY)
    torch.nn.init.normal_(model.out.weight, std=0.2)     # the output layer starts at zero: make it do something
    save_model("gfpose", model, TINY, {"model": "tiny random GFPose for tests"}, d)
    return d


def _ctx():
    events = []
    return service.JobContext("t", events.append), events


def test_interpolation_hits_keys_and_halfway_is_slerp():
    rng = np.random.default_rng(0)
    q = _random_quats(rng, (11, NUM_JOINTS))
    root = rng.normal(size=(11, 3)).astype(np.float32)
    known = np.zeros((11, NUM_JOINTS), bool)
    known[[0, 10]] = True
    iq, ir = interpolate_keys(q, root, known, known.all(-1))
    np.testing.assert_allclose(np.abs((iq[[0, 10]] * q[[0, 10]]).sum(-1)), 1, atol=1e-5)
    np.testing.assert_allclose(ir[5], 0.5 * (root[0] + root[10]), atol=1e-6)
    # halfway SLERP of a and b (shorter arc) is normalise(a + b)
    a, b = q[0], np.where((q[0] * q[10]).sum(-1, keepdims=True) < 0, -q[10], q[10])
    mid = (a + b) / np.linalg.norm(a + b, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.abs((iq[5] * mid).sum(-1)), 1, atol=1e-5)
    # a joint keyed on a middle frame only there: held before and after
    known2 = np.zeros((11, NUM_JOINTS), bool)
    known2[4, 3] = True
    iq2, _ = interpolate_keys(q, root, known2, known2.all(-1))
    np.testing.assert_allclose(np.abs((iq2[:, 3] * q[4, 3]).sum(-1)), 1, atol=1e-5)
    # joints never keyed keep the given values
    np.testing.assert_array_equal(iq2[:, 5], q[:, 5])


def test_window_frame_round_trip_and_facing():
    rng = np.random.default_rng(1)
    q, root = _motion(rng, 20)
    turn = _yaw(1.1)
    q[:, 0] = _qmul(turn, q[:, 0])
    known = np.zeros((20, NUM_JOINTS), bool)
    known[[3, 19]] = True
    tq, tr, tk = torch.from_numpy(q)[None], torch.from_numpy(root)[None], torch.from_numpy(known)[None]
    centre, yaw = window_frame(tq, tr, tk, tk.all(-1))
    wq, wr = to_window(tq, tr, centre, yaw)
    # facing +Z at the first keyed frame, root XZ centred on the keyed frames
    fwd = quat_to_matrix(wq[0, 3, 0]).numpy() @ np.array([0, 0, 1.0])
    assert abs(fwd[0]) < 1e-5 and fwd[2] > 0
    np.testing.assert_allclose(wr[0, [3, 19]][:, [0, 2]].mean(0).numpy(), 0, atol=1e-5)
    bq, br = from_window(wq, wr, centre, yaw)
    np.testing.assert_allclose(np.abs((bq[0] * tq[0]).sum(-1)).numpy(), 1, atol=1e-5)
    np.testing.assert_allclose(br[0].numpy(), root, atol=1e-5)


def test_fill_motion_keeps_keys_and_returns_hypotheses(tiny_weights):
    from poseforge.backend.tasks.inbetween import load_gfpose
    model = load_gfpose(tiny_weights)
    rng = np.random.default_rng(2)
    q, root = _motion(rng, 31)
    known = np.zeros((31, NUM_JOINTS), bool)
    known[:5] = True
    known[30] = True
    known[15, [16, 18, 20]] = True                        # a partial key: left arm only
    out = fill_motion(model, q, root, known, hypotheses=2, seed=3)
    assert out["rotations"].shape == (3, 31, NUM_JOINTS, 4) and out["root"].shape == (3, 31, 3)
    for h in range(3):
        np.testing.assert_array_equal(out["rotations"][h][known], q[known])
        np.testing.assert_array_equal(out["root"][h][[0, 1, 2, 3, 4, 30]], root[[0, 1, 2, 3, 4, 30]])
    assert not np.allclose(out["rotations"][1], out["rotations"][2])      # stochastic hypotheses differ
    again = fill_motion(model, q, root, known, hypotheses=2, seed=3)
    np.testing.assert_array_equal(again["rotations"], out["rotations"])   # seeded
    with pytest.raises(InbetweenError, match="longer than the model"):
        fill_motion(model, np.repeat(q, 3, 0), np.repeat(root, 3, 0), np.repeat(known, 3, 0))
    bad = q.copy()
    bad[0, 4] = np.nan
    with pytest.raises(InbetweenError, match="NaN"):
        fill_motion(model, bad, root, known)


def test_plan_gaps_messages():
    T = 100
    known = np.zeros((T, NUM_JOINTS), bool)
    kr = np.zeros(T, bool)
    fill = np.ones(T, bool)
    known[10] = kr[10] = True
    with pytest.raises(InbetweenError, match="at least two frames"):
        plan_gaps(known, kr, fill, 65)
    known[90] = kr[90] = True
    with pytest.raises(InbetweenError, match=r"frames 11 and 91 is 79 frames.*at most 63"):
        plan_gaps(known, kr, fill, 65, frame_start=1)
    known[50] = kr[50] = True
    assert plan_gaps(known, kr, fill, 65) == [(10, 50), (50, 90)]
    fill[:] = False
    fill[60] = True
    assert plan_gaps(known, kr, fill, 65) == [(50, 90)]
    fill[:] = False
    with pytest.raises(InbetweenError, match="Nothing to fill"):
        plan_gaps(known, kr, fill, 65)


def test_inbetween_job_writes_only_unkeyed_entries(tiny_weights):
    rng = np.random.default_rng(4)
    q, root = _motion(rng, 50)
    known = np.zeros((50, NUM_JOINTS), bool)
    known[[0, 20, 49]] = True
    known[35, [17, 19, 21]] = True                        # right arm keyed on frame 35
    fill = np.ones(50, bool)
    fill[40:] = False                                     # the animator's range ends at frame 39
    req = {"rotations": q.tolist(), "root": root.tolist(), "known": known.tolist(), "fill": fill.tolist(),
           "hypotheses": 2, "seed": 1, "weights_dir": str(tiny_weights)}
    ctx, events = _ctx()
    res = service.resolve_task("inbetween")(req, ctx)
    rq, rr = np.asarray(res["rotations"], np.float32), np.asarray(res["root"], np.float32)
    filled = np.asarray(res["filled"])
    assert res["hypotheses"] == 3 and rq.shape == (3, 50, NUM_JOINTS, 4)
    assert res["gaps"] == [[0, 20], [20, 49]]
    assert not filled[known].any() and not filled[40:].any() and filled[1:20].all()
    assert filled[35, 0] and not filled[35, 17]
    for h in range(3):
        np.testing.assert_allclose(rq[h][~filled], q[~filled], atol=1e-6)   # everything else as sent
        np.testing.assert_allclose(rr[h][40:], root[40:], atol=1e-6)
    assert not np.allclose(rq[0][filled], q[filled], atol=1e-3)            # something was filled
    assert any(e.kind == "progress" for e in events)


def test_inbetween_job_rejects_bad_input(tiny_weights):
    rng = np.random.default_rng(5)
    q, root = _motion(rng, 30)
    known = np.zeros((30, NUM_JOINTS), bool)
    known[0] = True
    base = {"rotations": q.tolist(), "root": root.tolist(), "weights_dir": str(tiny_weights)}
    ctx, _ = _ctx()
    task = service.resolve_task("inbetween")
    with pytest.raises(service.JobError, match="at least two frames"):
        task(dict(base, known=known.tolist()), ctx)
    known[29] = True
    with pytest.raises(service.JobError, match="Hypotheses"):
        task(dict(base, known=known.tolist(), hypotheses=20), ctx)
    with pytest.raises(service.JobError, match=r"\(30, 22\)"):
        task(dict(base, known=known[:5].tolist()), ctx)
    bad = q.copy()
    bad[3, 2] = np.nan
    with pytest.raises(service.JobError, match="not a number"):
        task(dict(base, rotations=bad.tolist(), known=known.tolist()), ctx)
    with pytest.raises(service.JobError, match="No GFPose|gfpose"):
        task(dict(base, known=known.tolist(), weights_dir=str(Path(tiny_weights) / "missing")), ctx)


# --- shipped weights on real mocap -----------------------------------------------------------------

@pytest.fixture(scope="module")
def bandai_test_clips(bandai_dir):
    """Bandai-2 test-split clips (take divisible by 5), two of each content, on the canonical body."""
    from poseforge.backend.data.dataset import split_of
    from poseforge.backend.data.mocap import load_canonical_motion

    files = sorted(p for p in (bandai_dir / "data").glob("*.bvh") if split_of(p.stem) == "test")
    by_content: dict = {}
    for p in files:
        by_content.setdefault(p.stem.split("_")[1], []).append(p)
    picked = [p for ps in by_content.values() for p in ps[:: max(1, len(ps) // 2)][:2]]
    return [load_canonical_motion(p) for p in picked]


def _shipped():
    if not (default_weights_dir() / "gfpose.safetensors").is_file():
        pytest.skip("no shipped GFPose weights (backend/weights/gfpose.safetensors)")
    from poseforge.backend.tasks.inbetween import load_gfpose
    return load_gfpose()


def test_shipped_weights_beat_interpolation_on_test_clips(bandai_test_clips):
    """On Bandai-2 test windows (10 context frames + 1 target key, 15- and 30-frame gaps) the
    deterministic answer's joint-position error is well under interpolation's (measured ratios in
    the model card; asserted with margin)."""
    model = _shipped()
    qs, rs = [], []
    for c in bandai_test_clips:
        for s in range(0, c.num_frames - 65, 40):
            qs.append(c.rotations[s:s + 41])
            rs.append(c.root[s:s + 41])
    q, r = np.stack(qs[:96]), np.stack(rs[:96])
    known = np.zeros(q.shape[:3], bool)
    known[:, :10] = True
    known[:, 40] = True
    out = fill_motion(model, q, r, known)
    iq, ir = interpolate_keys(q, r, known, known.all(-1))

    def err(a, b):
        pa, _ = forward_kinematics_np(_mats(a), b)
        pg, _ = forward_kinematics_np(_mats(q), r)
        return float(np.linalg.norm(pa - pg, axis=-1)[:, 10:40].mean())
    e_model, e_interp = err(out["rotations"][0], out["root"][0]), err(iq, ir)
    assert e_model < 0.7 * e_interp, (e_model, e_interp)


def _mats(q):
    return quat_to_matrix(torch.from_numpy(np.ascontiguousarray(q, np.float32))).numpy().astype(np.float64)


def test_model_card_matches_weights():
    _shipped()
    card = json.loads((default_weights_dir() / "gfpose.json").read_text())
    assert "CC BY-NC" in card["licence"] and card["data"]["data_hash"]
    assert card["metrics"]["validation"]["30"]["ratio"] < 1.0
