"""`poseforge bench inbetween`: the LaFAN1 metrics on hand-computed cases, window centring and
facing, the baselines on real test clips, and the command end to end on a tiny random model."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from poseforge.backend.bench import inbetween as bench
from poseforge.backend.rotations import axis_angle_to_quat, quat_to_matrix
from poseforge.backend.skeleton import NUM_JOINTS, forward_kinematics_np, rest_joint_positions


def identity_motion(frames: int, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rot = np.zeros((batch, frames, NUM_JOINTS, 4))
    rot[..., 0] = 1.0
    root = np.zeros((batch, frames, 3))
    root[..., 1] = 0.93
    return rot, root


def flat_stats(std: float) -> bench.PositionStats:
    return bench.PositionStats(mean=np.zeros(NUM_JOINTS * 3), std=np.full(NUM_JOINTS * 3, std), windows=1)


def random_motion(frames: int, seed: int, walk: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random local quaternions (T, 22, 4) and a root walking and turning (T, 3)."""
    g = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, frames)[:, None, None]
    aa = g.normal(0, 0.3, (1, NUM_JOINTS, 3)) + 0.4 * np.sin(t * g.uniform(0.5, 2, (1, NUM_JOINTS, 3))
                                                               + g.uniform(0, 6, (1, NUM_JOINTS, 3)))
    aa[:, 0] = 0.0
    aa[:, 0, 1] = g.uniform(-np.pi, np.pi) + 1.5 * np.sin(t[:, 0, 0] * 0.5)  # pelvis yaw (turning)
    aa[:, 0, 0] = 0.2 * np.sin(t[:, 0, 0])                                   # some pitch
    quats = axis_angle_to_quat(torch.as_tensor(aa, dtype=torch.float32)).numpy().astype(np.float64)
    root = np.stack([walk * np.cumsum(np.cos(t[:, 0, 0])) / 30 + g.normal(),
                     0.9 + 0.05 * np.sin(3 * t[:, 0, 0]),
                     walk * np.linspace(0, 2, frames) + g.normal()], 1)
    return quats, root


# ----------------------------------------------------------------------------------------------
# metrics on hand-computed cases
# ----------------------------------------------------------------------------------------------

def test_l2q_and_l2p_of_a_two_frame_transition_match_the_hand_computation():
    # 1 context frame (frame 0), 2 transition frames, the target; ground truth: rest pose throughout
    gt_rot, gt_root = identity_motion(4)
    pr_rot, pr_root = gt_rot.copy(), gt_root.copy()
    c = math.cos(math.pi / 4)
    pr_rot[0, 1, 0] = [c, 0.0, c, 0.0]       # frame 1: pelvis turned 90 degrees about +Y
    pr_root[0, 2, 0] += 0.3                   # frame 2: whole body 0.3 m to the side
    errs = bench.transition_errors(gt_rot, gt_root, pr_rot, pr_root, flat_stats(0.5), n_past=1)

    # L2Q: every global quaternion is (c, 0, c, 0) on frame 1 -> |q - 1|^2 = (1 - c)^2 + c^2 each
    q1 = math.sqrt(NUM_JOINTS * ((1 - c) ** 2 + c ** 2))
    assert errs["L2Q"][0] == pytest.approx((q1 + 0.0) / 2, rel=1e-9)
    # L2P: a joint at (x, y, z) from the pelvis goes to (z, y, -x): squared error 2 (x^2 + z^2);
    # frame 2: 22 joints moved by 0.3 m; both divided by the std 0.5
    rel = rest_joint_positions() - rest_joint_positions()[0]
    p1 = math.sqrt(np.sum(2 * (rel[:, 0] ** 2 + rel[:, 2] ** 2))) / 0.5
    p2 = math.sqrt(NUM_JOINTS * 0.3 ** 2) / 0.5
    assert errs["L2P"][0] == pytest.approx((p1 + p2) / 2, rel=1e-9)


def test_a_sign_flipped_quaternion_costs_nothing_after_the_continuity_step():
    rot, root = random_motion(30, seed=3)
    gt_rot, gt_root = rot[None], root[None]
    pr_rot, pr_root = bench.interpolation(gt_rot, gt_root, n_past=10)
    flipped = pr_rot.copy()
    flipped[0, 14, 5] *= -1          # one predicted local quaternion (right knee) negated
    flipped[0, 20, 0] *= -1          # and the pelvis on another frame (flips every global quat)
    stats = flat_stats(1.0)
    a = bench.transition_errors(gt_rot, gt_root, pr_rot, pr_root, stats)
    b = bench.transition_errors(gt_rot, gt_root, flipped, pr_root, stats)
    for key in ("L2Q", "L2P", "npss_num"):
        assert b[key][0] == pytest.approx(a[key][0], rel=1e-9, abs=1e-12)
    # without the continuity step the flip would have counted
    gq, _ = bench.global_quats_positions(pr_rot[0, 10:29], pr_root[0, 10:29])
    fq, _ = bench.global_quats_positions(flipped[0, 10:29], pr_root[0, 10:29])
    assert np.abs(gq - fq).max() > 1.0
    # and the continuity step changes no rotation
    cont = bench.sign_continuous(fq[None], axis=-3)[0]
    assert np.allclose(np.abs(np.sum(cont * fq, -1)), 1.0)


def test_npss_is_zero_for_identical_sequences_and_known_for_simple_ones():
    g = np.random.default_rng(0)
    seq = g.normal(size=(3, 12, 8))
    assert bench.npss(seq, seq.copy()) == 0.0
    # one dimension, two frames: gt [1, 0] has FFT (1, 1), power (1, 1), cdf (0.5, 1);
    # pred [1, 1] has FFT (2, 0), power (4, 0), cdf (1, 1): EMD 0.5
    assert bench.npss(np.array([[[1.0], [0.0]]]), np.array([[[1.0], [1.0]]])) == pytest.approx(0.5)
    # a second dimension predicted exactly, with total power 16 (FFT of [2, 2] is (4, 0)):
    # the average is weighted by the ground truth's power: (0.5 * 2 + 0 * 16) / (2 + 16)
    gt = np.array([[[1.0, 2.0], [0.0, 2.0]]])
    pred = np.array([[[1.0, 2.0], [1.0, 2.0]]])
    assert bench.npss(gt, pred) == pytest.approx(1.0 / 18.0)
    # per-sequence terms combine into the NPSS of the whole set
    other = g.normal(size=(3, 12, 8))
    num, den = bench.npss_terms(seq, other)
    assert num.shape == den.shape == (3,)
    assert bench.npss(seq, other) == pytest.approx(num.sum() / den.sum())


def test_quaternion_forward_kinematics_matches_the_skeleton():
    rot, root = random_motion(5, seed=1)
    gq, gp = bench.global_quats_positions(rot, root)
    mats = quat_to_matrix(torch.as_tensor(rot)).numpy()
    pos, glob = forward_kinematics_np(mats, root)
    assert np.allclose(gp, pos, atol=1e-9)
    assert np.allclose(quat_to_matrix(torch.as_tensor(gq)).numpy(), glob, atol=1e-9)


def test_zero_velocity_holds_and_interpolation_reaches_the_target():
    rot, root = random_motion(26, seed=2)
    zr, zp = bench.zero_velocity(rot[None], root[None])
    assert np.array_equal(zr[0, 10:25], np.repeat(rot[9:10], 15, 0))
    assert np.array_equal(zp[0, 10:25], np.repeat(root[9:10], 15, 0))
    ir, ip = bench.interpolation(rot[None], root[None])
    assert np.allclose(ip[0, 17], root[9] + (root[25] - root[9]) * 8 / 16)
    assert np.array_equal(ir[0, :10], rot[:10]) and np.array_equal(ir[0, 25], rot[25])
    # SLERP: equal angular steps from frame 9 to the target
    d = np.abs(np.sum(ir[0, 9:25] * ir[0, 10:26], -1))
    angles = 2 * np.arccos(np.clip(d, -1, 1))
    assert np.allclose(angles, angles[:1], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# windows
# ----------------------------------------------------------------------------------------------

def test_window_starts_follow_the_lafan1_rule():
    assert bench.window_starts(65) == []
    assert bench.window_starts(66) == [0]
    assert bench.window_starts(150) == [0, 40, 80]
    assert bench.window_starts(160, 50, 20) == [0, 20, 40, 60, 80, 100]


def test_windows_are_centred_turned_to_face_z_and_otherwise_rigid():
    clips = []
    for seed in range(3):
        rot, root = random_motion(150, seed=seed)
        clips.append(type("Clip", (), {"rotations": rot, "root": root, "source": f"c{seed}"})())
    win_rot, win_root, names = bench.extract_windows(clips)
    assert win_rot.shape == (9, 65, NUM_JOINTS, 4) and names[:3] == ["c0"] * 3
    # mean pelvis XZ at the origin
    assert np.allclose(win_root[..., [0, 2]].mean(1), 0.0, atol=1e-9)
    # frame 9: the pelvis' forward (+Z) axis points along +Z on the ground
    gq, gp = bench.global_quats_positions(win_rot[:, 9], win_root[:, 9])
    fwd = bench._qrot(gq[:, 0], np.broadcast_to([0.0, 0.0, 1.0], (9, 3)))
    assert np.allclose(fwd[:, 0], 0.0, atol=1e-9) and np.all(fwd[:, 2] > 0)
    # only a rigid motion about the vertical axis: heights, distances, non-pelvis joints kept
    for w, (clip, start) in enumerate([(0, 0), (1, 40), (2, 80)]):
        rot, root = clips[clip].rotations[start:start + 65], clips[clip].root[start:start + 65]
        _, before = bench.global_quats_positions(rot, root)
        _, after = bench.global_quats_positions(win_rot[3 * clip + start // 40], win_root[3 * clip + start // 40])
        assert np.allclose(after[..., 1], before[..., 1], atol=1e-9)
        a, b = after.reshape(-1, 3), before.reshape(-1, 3)
        da = np.linalg.norm(a[:, None] - a[None], axis=-1)
        db = np.linalg.norm(b[:, None] - b[None], axis=-1)
        assert np.allclose(da, db, atol=1e-8)
        assert np.allclose(win_rot[3 * clip + start // 40][:, 1:], rot[:, 1:])


# ----------------------------------------------------------------------------------------------
# a synthetic cache: the benchmark's rows, best-of and mean-of, the command
# ----------------------------------------------------------------------------------------------

def write_motion_cache(folder: Path, frames: int = 150) -> Path:
    """A canonical cache in the format of ``poseforge data build``: 3 train and 2 test clips of
    smooth random walking and turning motion."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = {}
    for i, split in enumerate(["train", "train", "train", "test", "test"]):
        rot, root = random_motion(frames, seed=10 + i)
        name = f"clip_{i:03d}"
        np.savez(folder / f"{name}.npz", rotations=rot.astype(np.float32), root=root.astype(np.float32), fps=30.0)
        clips[name] = {"file": f"{name}.npz", "source": f"synthetic/{name}.bvh", "preset": "test",
                       "frames": frames, "split": split, "labels": {}}
    index = {"version": 1, "fps": 30, "command": "synthetic", "data_hash": "synthetic-inbetween",
             "clips": clips, "skipped": {}, "frames": {"train": 3 * frames, "test": 2 * frames}}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def stand_in_fill(model, rotations, root, known, known_root, *, hypotheses=0, seed=0):
    """fill_motion's contract with known answers: index 0 and odd hypotheses interpolate the keys,
    even hypotheses hold the last context frame (what the request carries)."""
    single = rotations.ndim == 3
    if single:  # the latency runs: one window, no batch axis
        rotations, root, known, known_root = rotations[None], root[None], known[None], known_root[None]
    assert known.shape == rotations.shape[:3] and known_root.shape == rotations.shape[:2]
    assert known[:, :10].all() and known[:, -1].all() and not known[:, 10:-1].any()
    interp = bench.interpolation(rotations, root)
    rot = np.stack([rotations if h and h % 2 == 0 else interp[0] for h in range(1 + hypotheses)])
    pos = np.stack([root if h and h % 2 == 0 else interp[1] for h in range(1 + hypotheses)])
    if single:
        rot, pos = rot[:, 0], pos[:, 0]
    return {"rotations": rot.astype(np.float32), "root": pos.astype(np.float32)}


def test_rows_of_the_benchmark_with_a_stand_in_model(tmp_path):
    cache = write_motion_cache(tmp_path / "cache")
    result = bench.run_bench(cache, "test", hypotheses=2, model=object(), fill=stand_in_fill,
                             latency_runs=1, batch=2, log=lambda *_: None)
    json.dumps(result)
    assert result["lengths"] == [5, 15, 30, 45] and result["windows"] == 6
    rows = result["methods"]
    assert list(rows) == ["zero_velocity", "interpolation", "gfpose", "gfpose_best_of_2", "gfpose_mean_of_2"]
    zero, interp = rows["zero_velocity"], rows["interpolation"]
    for m in ("L2Q", "L2P", "NPSS"):
        assert rows["gfpose"][m] == pytest.approx(interp[m], abs=2e-4)
        # mean of 2 hypotheses: each metric computed per hypothesis over all windows, then averaged
        assert rows["gfpose_mean_of_2"][m] == pytest.approx(
            [(a + b) / 2 for a, b in zip(interp[m], zero[m])], abs=2e-4)
    for m in ("L2Q", "L2P"):
        assert all(z > i for z, i in zip(zero[m], interp[m]))
    # best of 2 by L2P per window: never worse than either hypothesis on L2P
    assert all(b <= min(i, z) + 1e-4 for b, i, z in zip(rows["gfpose_best_of_2"]["L2P"], interp["L2P"], zero["L2P"]))
    assert set(result["latency_ms"]) >= {"fill_30_ms", "fill_30_2_hypotheses_ms", "torch_threads", "device"}
    assert result["protocol"]["stats_windows"] == 3 * len(bench.window_starts(150, 50, 20))
    # the statistics are cached in the cache folder, keyed by its data hash
    assert (cache / bench.STATS_FILE).is_file()
    stats = bench.training_stats(cache, log=lambda *_: None)
    with np.load(cache / bench.STATS_FILE) as z:
        assert str(z["key"]).startswith("synthetic-inbetween|") and np.array_equal(z["mean"], stats.mean)


def test_quick_command_end_to_end_on_a_tiny_random_model(tmp_path, capsys):
    from poseforge.backend.cli import main
    from poseforge.backend.models.gfpose import GFPose, GFPoseConfig
    from poseforge.backend.weights import save_model

    torch.manual_seed(0)
    cache = write_motion_cache(tmp_path / "cache")
    config = GFPoseConfig(width=32, layers=1, heads=2)
    weights = tmp_path / "weights"
    save_model("gfpose", GFPose(config), config, {"data_hash": "tiny", "steps": 0}, out_dir=weights)
    out = tmp_path / "out" / "inbetween.json"
    rc = main(["bench", "inbetween", "--data", str(cache), "--out", str(out), "--weights-dir", str(weights),
               "--device", "cpu", "--quick"])
    assert rc == 0
    text = out.read_text()
    result = json.loads(text)
    assert result["lengths"] == [5, 15, 30, 45] and result["windows"] == 6 and result["quick"] is True
    assert set(result["methods"]) == {"zero_velocity", "interpolation", "gfpose", "gfpose_best_of_2",
                                      "gfpose_mean_of_2"}
    for row in result["methods"].values():
        for m in ("L2Q", "L2P", "NPSS"):
            assert len(row[m]) == 4 and all(math.isfinite(v) and v >= 0 for v in row[m])
    assert result["latency_ms"]["fill_30_ms"] > 0 and result["latency_ms"]["device"] == "cpu"
    assert result["weights"] == {"data_hash": "tiny", "steps": 0}
    assert str(tmp_path) not in text
    printed = capsys.readouterr().out
    assert "=== Global position loss (L2P) ===" in printed and "gfpose_best_of_2" in printed


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    from poseforge.backend.cli import main

    cache = write_motion_cache(tmp_path / "cache")
    bvh = tmp_path / "bvh"
    bvh.mkdir()
    (bvh / "clip.bvh").write_text("HIERARCHY\n")
    out = tmp_path / "out.json"
    assert main(["bench", "inbetween", "--data", str(bvh), "--out", str(out)]) == 2
    assert "poseforge data build" in capsys.readouterr().err
    assert main(["bench", "inbetween", "--data", str(cache), "--out", str(out),
                 "--weights-dir", str(tmp_path / "none"), "--device", "cpu"]) == 2
    assert "gfpose" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(bench.BenchError, match="split"):
        bench.run_bench(cache, "train", baselines_only=True)


# ----------------------------------------------------------------------------------------------
# real clips
# ----------------------------------------------------------------------------------------------

REAL_CLIPS = {"train": ["walk_normal_001", "walk_normal_002", "wave-both-hands_normal_001",
                        "walk-turn-left_normal_001"],
              "test": ["walk_normal_005", "walk_normal_010", "wave-both-hands_normal_005",
                       "walk-turn-left_normal_005"]}


def test_zero_velocity_is_worse_than_interpolation_on_real_test_windows(bandai_dir, tmp_path):
    """The sanity check of the metric code: as on LaFAN1, zero-velocity is worse than
    interpolation at every transition length on Bandai-2 test clips."""
    from poseforge.backend.data.dataset import build_cache

    src = tmp_path / "bvh"
    src.mkdir()
    for stem in REAL_CLIPS["train"] + REAL_CLIPS["test"]:
        for ext in (".bvh", ".json"):
            f = bandai_dir / "data" / f"dataset-2_{stem}{ext}"
            if f.is_file():
                shutil.copy(f, src / f.name)
    cache = tmp_path / "cache"
    build_cache([src], cache, workers=1, command="test")
    result = bench.run_bench(cache, "test", baselines_only=True, log=lambda *_: None)
    assert result["windows"] >= 10
    zero, interp = result["methods"]["zero_velocity"], result["methods"]["interpolation"]
    for m in ("L2Q", "L2P"):
        assert all(z > i > 0 for z, i in zip(zero[m], interp[m])), (m, zero[m], interp[m])
    # NPSS: only the short transitions (on LaFAN1 interpolation's NPSS overtakes at 45 frames)
    assert zero["NPSS"][0] > 1.5 * interp["NPSS"][0] and zero["NPSS"][1] > interp["NPSS"][1]
    # holding a pose drifts further from the motion the longer the gap
    assert zero["L2P"] == sorted(zero["L2P"])
