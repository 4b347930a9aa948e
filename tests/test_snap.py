"""Snap to plausible pose / Fix implausible keys: pinned bones stay, broken poses get fixed."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from poseforge.backend.models.dposer import DPoser, DPoserConfig
from poseforge.backend.rotations import axis_angle_to_matrix
from poseforge.backend.skeleton import JOINT_INDEX, forward_kinematics
from poseforge.backend.tasks.snap import Cancelled, SnapError, fix_keys, score_keys, snap_poses
from poseforge.backend.weights import default_weights_dir, load_model

torch.set_num_threads(2)

PINS = ["pelvis", "head", "left_wrist", "right_wrist", "left_ankle", "right_ankle"]


def tiny() -> DPoser:
    torch.manual_seed(0)
    m = DPoser(DPoserConfig(hidden=32, blocks=1, time_dim=16, dropout=0.0))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


@pytest.fixture(scope="module")
def shipped() -> DPoser:
    if not (default_weights_dir() / "dposer.safetensors").is_file():
        pytest.skip("no shipped DPoser weights in backend/weights (train them with `poseforge train dposer`)")
    return load_model("dposer", DPoser)


def poses(n, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    local = axis_angle_to_matrix(scale * torch.randn(n, 22, 3, generator=g))
    root = torch.tensor([0.2, 0.95, -0.4]).repeat(n, 1)
    return local, root


def pinned_mask(n):
    m = torch.zeros(n, 22, dtype=torch.bool)
    m[:, [JOINT_INDEX[j] for j in PINS]] = True
    return m


def test_snap_keeps_pinned_bones_and_the_root_in_world_space():
    local, root = poses(3)
    pin = pinned_mask(3)
    res = snap_poses(local, root, pin, prior=tiny(), strength=1.0, iters=60,
                     generator=torch.Generator().manual_seed(0))
    p0, g0 = forward_kinematics(local, root)
    p1, g1 = forward_kinematics(res.local, res.root)
    assert (p1 - p0).norm(dim=-1)[pin].max() * 1000 < 1.0
    assert (g1 - g0)[pin].abs().max() < 1e-2  # pinned bones also keep their world rotation
    assert torch.equal(res.root, root) and torch.equal(res.local[:, 0], local[:, 0])
    assert res.moved_mm.shape == (3, 22) and res.moved_mm[~pin].max() > 1.0
    assert torch.allclose(res.moved_mm, (p1 - p0).norm(dim=-1) * 1000, atol=1e-3)


def test_snap_accepts_numpy_and_a_single_pin_mask():
    local, root = poses(2)
    pin = np.zeros(22, bool)
    pin[JOINT_INDEX["left_wrist"]] = True
    res = snap_poses(local.numpy(), root.numpy(), pin, prior=tiny(), iters=20)
    assert res.local.shape == (2, 22, 3, 3) and res.moved_mm[:, JOINT_INDEX["left_wrist"]].max() < 1.0


def test_snap_cancel_and_bad_input():
    local, root = poses(2)
    with pytest.raises(Cancelled):
        snap_poses(local, root, pinned_mask(2), prior=tiny(), cancelled=lambda: True)
    bad = local.clone()
    bad[1, 5, 0, 0] = float("nan")
    with pytest.raises(SnapError, match="NaN"):
        snap_poses(bad, root, pinned_mask(2), prior=tiny())
    with pytest.raises(SnapError, match="empty"):
        snap_poses(local[:0], root[:0], pinned_mask(0), prior=tiny())
    with pytest.raises(SnapError, match="strength"):
        snap_poses(local, root, pinned_mask(2), prior=tiny(), strength=1.5)
    with pytest.raises(SnapError, match="pinned"):
        snap_poses(local, root, torch.zeros(2, 21, dtype=torch.bool), prior=tiny())


def _broken(model: DPoser):
    """The prior's mean pose, and the same pose with the left knee bent 90 degrees backwards
    and the right elbow hyper-extended by 100 degrees (as a hurried animator might leave it)."""
    body = model.decode(torch.zeros(1, model.config.dim))[0]           # (21, 3) mean pose
    good = torch.cat([torch.zeros(1, 3), body])
    bad = good.clone()
    knee, elbow = JOINT_INDEX["left_knee"], JOINT_INDEX["right_elbow"]
    bad[knee] = torch.tensor([-math.pi / 2, 0.0, 0.0])                 # canonical knees flex about +X
    flex = good[elbow] / good[elbow].norm().clamp_min(1e-6)
    if good[elbow].norm() < 0.1:
        flex = torch.tensor([0.0, 1.0, 0.0])
    bad[elbow] = -flex * math.radians(100)
    return axis_angle_to_matrix(good)[None], axis_angle_to_matrix(bad)[None]


def test_shipped_prior_scores_a_broken_pose_worse_and_snap_fixes_it(shipped):
    good, bad = _broken(shipped)
    s_good, s_bad = score_keys(good, shipped).item(), score_keys(bad, shipped).item()
    assert s_bad > 2.0 * s_good, (s_good, s_bad)
    root = torch.tensor([[0.0, 0.95, 0.0]])
    pin = torch.zeros(1, 22, dtype=torch.bool)
    pin[0, [JOINT_INDEX["pelvis"], JOINT_INDEX["head"]]] = True
    res = snap_poses(bad, root, pin, prior=shipped, strength=1.0, generator=torch.Generator().manual_seed(0))
    after = res.energy_after.item()
    assert res.energy_before.item() == pytest.approx(s_bad, rel=1e-5)
    # measured margin: snapping closes at least half of the gap between the broken pose and
    # the prior's mean pose (shipped weights: see the model card for the measured values)
    assert after < s_bad - 0.5 * (s_bad - s_good), (s_good, s_bad, after)
    assert res.moved_mm[0, JOINT_INDEX["left_ankle"]] > 50  # the foot really moved


def test_fix_keys_fixes_only_frames_above_the_threshold(shipped):
    good, bad = _broken(shipped)
    local = torch.cat([good, bad, good, bad])
    root = torch.tensor([[0.0, 0.95, 0.0]]).repeat(4, 1)
    scores = score_keys(local, shipped)
    threshold = float(scores.min() + scores.max()) / 2
    idx, res = fix_keys(local, root, shipped, threshold, strength=1.0, generator=torch.Generator().manual_seed(0))
    assert idx.tolist() == [1, 3]
    assert (res.energy_after < threshold).all()
    idx2, res2 = fix_keys(local, root, shipped, float(scores.max()) + 1.0)
    assert len(idx2) == 0 and res2 is None


def test_snap_of_one_pose_is_interactive():
    """One pose with the shipped architecture (trained or not: the cost is the same) on 2 threads."""
    wdir = default_weights_dir() / "dposer.safetensors"
    model = load_model("dposer", DPoser) if wdir.is_file() else DPoser(DPoserConfig()).eval()
    local, root = poses(1, scale=0.2)
    snap_poses(local, root, pinned_mask(1), prior=model, iters=10)  # warm-up
    wall, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        snap_poses(local, root, pinned_mask(1), prior=model, generator=torch.Generator().manual_seed(0))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # Target: 0.3 s on this 2-core CPU. The CI machine is shared by parallel jobs, so the check is
    # on the CPU time this process used (what the wall time is on an idle machine), with 1.5x
    # headroom for cache contention; the wall time is reported on failure.
    assert min(cpu) < 0.45, {"cpu_s": cpu, "wall_s": wall}
