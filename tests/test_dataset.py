"""Mocap to the canonical body and the dataset cache: split rule, cache build and reading,
and sanity of retargeted real clips (floor contact, knee and elbow flexion, bone lengths)."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from poseforge.backend.data.bvh import read_bvh
from poseforge.backend.data.dataset import DatasetError, build_cache, load_clips, load_poses, split_of
from poseforge.backend.data.mocap import (MocapError, bvh_to_canonical, detect_preset,
                                          load_canonical_motion, resample)
from poseforge.backend.retarget import np_quat_to_axis_angle, np_quat_to_matrix
from poseforge.backend.skeleton import JOINT_INDEX, forward_kinematics_np

FEET = [JOINT_INDEX[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]


def test_split_rule():
    assert split_of("dataset-2_walk_normal_005") == "test"
    assert split_of("dataset-2_walk-turn-left_elderly_010.bvh") == "test"
    assert split_of("dataset-2_walk_normal_001") == "train"
    assert split_of("dataset-2_raise-up-both-hands_active_012") == "train"
    assert split_of("05") == "train"          # CMU clip numbers are not takes
    assert split_of("salsa__05") == "train"


def _short_copy(src, dst, frames):
    lines = src.read_bytes().decode("utf-8").splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("Frames:"))
    dst.write_text("\n".join(lines[:i] + [f"Frames: {frames}"] + lines[i + 1:i + 2 + frames]) + "\n")


def test_build_cache_on_real_clips(bandai_dir, cmu_dir, tmp_path):
    b, c = tmp_path / "bandai", tmp_path / "cmu" / "salsa"
    b.mkdir()
    c.mkdir(parents=True)
    for stem in ("dataset-2_walk_normal_001", "dataset-2_walk_normal_005", "dataset-2_wave-left-hand_youthful_010"):
        for ext in (".bvh", ".json"):
            shutil.copy(bandai_dir / "data" / (stem + ext), b / (stem + ext))
    _short_copy(cmu_dir / "salsa" / "01.bvh", c / "01.bvh", 121)  # salsa is 60 fps: 61 frames at 30 fps
    shutil.copy(cmu_dir / "standard.bvh", tmp_path / "cmu" / "standard.bvh")  # 3-frame template
    out = tmp_path / "cache"
    seen = []
    index = build_cache([b, tmp_path / "cmu"], out, progress=lambda d, t, n: seen.append((d, t)))
    assert seen[-1] == (5, 5)
    clips = index["clips"]
    assert set(clips) == {"dataset-2_walk_normal_001", "dataset-2_walk_normal_005",
                          "dataset-2_wave-left-hand_youthful_010", "salsa__01"}
    assert list(index["skipped"]) == ["cmu/standard.bvh"]
    assert clips["dataset-2_walk_normal_005"]["split"] == "test"
    assert clips["dataset-2_wave-left-hand_youthful_010"]["split"] == "test"
    assert clips["dataset-2_walk_normal_001"]["split"] == "train" and clips["salsa__01"]["split"] == "train"
    assert clips["salsa__01"]["preset"] == "cmu" and clips["salsa__01"]["frames"] == 61
    assert clips["dataset-2_walk_normal_001"]["preset"] == "bandai"
    assert clips["dataset-2_walk_normal_001"]["frames"] == read_bvh(b / "dataset-2_walk_normal_001.bvh").num_frames
    lab = clips["dataset-2_wave-left-hand_youthful_010"]["labels"]
    assert lab["content"] == "wave-left-hand" and lab["style"] == "youthful" and lab["take"] == 10
    assert lab["content_id"] == json.loads((b / "dataset-2_wave-left-hand_youthful_010.json").read_text())["content"]
    assert json.loads((out / "index.json").read_text()) == index

    rots, root = load_poses(out, "test")
    n_test = sum(c["frames"] for c in clips.values() if c["split"] == "test")
    assert rots.shape == (n_test, 22, 4) and root.shape == (n_test, 3)
    assert rots.dtype == np.float32 and root.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rots, axis=-1), 1.0, atol=1e-5)
    r2, _ = load_poses(out, "all", every=4)
    assert len(r2) == sum(-(-c["frames"] // 4) for c in clips.values())
    train = load_clips(out, "train")
    assert [m.source for m in train] == ["dataset-2_walk_normal_001", "salsa__01"]
    assert all(m.fps == 30 for m in train)

    # the data hash follows the BVH bytes, not the build
    again = build_cache([b, tmp_path / "cmu"], tmp_path / "cache2", workers=1)
    assert again["data_hash"] == index["data_hash"]
    with open(c / "01.bvh", "a") as f:
        f.write("\n")
    assert build_cache([b, tmp_path / "cmu"], tmp_path / "cache3", workers=1)["data_hash"] != index["data_hash"]

    with pytest.raises(DatasetError, match="split"):
        load_poses(out, "validation")
    with pytest.raises(DatasetError, match="index.json"):
        load_poses(tmp_path / "nothing", "train")


def test_unknown_skeleton_names_unmatched_joints(tmp_path):
    text = ("HIERARCHY\nROOT Pelvis\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition "
            "Zrotation Xrotation Yrotation\n End Site\n {\n  OFFSET 0 10 0\n }\n}\nMOTION\nFrames: 1\n"
            "Frame Time: 0.0333\n0 0 0 0 0 0\n")
    path = tmp_path / "robot.bvh"
    path.write_text(text)
    with pytest.raises(MocapError, match="robot.bvh.*needs joints"):
        load_canonical_motion(path)


@pytest.fixture(scope="module")
def bandai_walk(bandai_dir):
    return read_bvh(bandai_dir / "data" / "dataset-2_walk_normal_001.bvh")


def test_bandai_walk_on_canonical_body(bandai_walk):
    assert detect_preset(bandai_walk.names)["id"] == "bandai"
    cm = bvh_to_canonical(bandai_walk)
    assert cm.rotations.shape == (bandai_walk.num_frames, 22, 4) and cm.fps == 30
    pos = cm.joint_positions()
    # feet touch the floor: the lowest ankle/foot joint over the clip is within 3 cm of y = 0
    assert abs(pos[:, FEET, 1].min()) < 0.03
    # the pelvis stays at standing height and the head above it
    assert 0.8 < np.median(cm.root[:, 1]) < 1.05
    assert (pos[:, JOINT_INDEX["head"], 1] > pos[:, 0, 1] + 0.4).all()
    # the walk goes forward: +Z is where the body faces at the start, and it moves along it
    left = pos[0, JOINT_INDEX["left_hip"]] - pos[0, JOINT_INDEX["right_hip"]]
    facing = np.cross(left, [0.0, 1.0, 0.0])
    assert facing[2] / np.linalg.norm(facing) > 0.9
    assert cm.root[-1, 2] - cm.root[0, 2] > 5.0
    # knees flex about +X with a positive angle (the shank swings backward, to -Z)
    knees = [JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"]]
    aa = np_quat_to_axis_angle(cm.rotations[:, knees].astype(np.float64))
    bent = np.linalg.norm(aa, axis=-1) > 0.5
    assert bent.sum() > 20
    assert (aa[bent][:, 0] > 0.8 * np.linalg.norm(aa[bent], axis=-1)).all()
    shank = np_quat_to_matrix(cm.rotations[:, knees])[bent] @ np.array([0.0, -1.0, 0.0])
    assert (shank[:, 2] < 0).all()


def test_elbows_flex_forward(bandai_dir):
    cm = load_canonical_motion(bandai_dir / "data" / "dataset-2_wave-both-hands_normal_001.bvh", preset="bandai")
    R = cm.rotmats()
    for joint, out in (("left_elbow", 1.0), ("right_elbow", -1.0)):
        fore = R[:, JOINT_INDEX[joint]] @ np.array([out, 0.0, 0.0])  # forearm in the upper-arm frame
        flexed = fore[:, 0] * out < np.cos(np.radians(45))
        assert flexed.sum() > 10
        assert (fore[flexed, 2] > 0.3).all()  # palms-down T-pose: the forearm bends forward (+Z)


def test_bone_lengths_do_not_change_rotations(bandai_walk):
    """Retargeting reads bone directions, not lengths: a longer-legged actor gives the same
    canonical rotations, and canonical FK always runs on the canonical skeleton."""
    base = bvh_to_canonical(bandai_walk)
    tall = copy.deepcopy(bandai_walk)
    for name in ("LowerLeg_L", "LowerLeg_R", "Foot_L", "Foot_R", "LowerArm_L", "LowerArm_R"):
        j = tall.index(name)
        tall.offsets[j] *= 1.3
        tall.translations[:, j] *= 1.3
    other = bvh_to_canonical(tall)
    np.testing.assert_allclose(np.abs((other.rotations * base.rotations).sum(-1)), 1.0, atol=1e-4)
    # a longer leg means a smaller scale to metres, so the pelvis height stays about the same
    assert abs(np.median(other.root[:, 1]) - np.median(base.root[:, 1])) < 0.05
    pos, _ = forward_kinematics_np(other.rotmats(), other.root)
    shin = np.linalg.norm(pos[:, JOINT_INDEX["left_ankle"]] - pos[:, JOINT_INDEX["left_knee"]], axis=-1)
    np.testing.assert_allclose(shin, np.linalg.norm([0.0, -0.40, -0.03]), atol=1e-5)


def test_cmu_resampled_to_30fps(cmu_dir, tmp_path):
    _short_copy(cmu_dir / "martial" / "03.bvh", tmp_path / "m.bvh", 241)  # 120 fps, 2 s
    src = read_bvh(tmp_path / "m.bvh")
    cm = load_canonical_motion(tmp_path / "m.bvh")
    full = bvh_to_canonical(src, fps=None)
    assert full.fps == pytest.approx(120, rel=1e-3) and cm.fps == 30
    assert cm.num_frames == 61
    np.testing.assert_allclose(cm.rotations, full.rotations[::4], atol=1e-6)
    assert abs(cm.joint_positions()[:, FEET, 1].min()) < 0.01  # per-clip floor for this set


def test_resample_non_integer_ratio_slerps():
    q0 = np.array([1.0, 0, 0, 0])
    q1 = np.array([np.cos(0.5), np.sin(0.5), 0, 0])  # 1 rad about X
    rots = np.stack([q0, q1])[:, None, :]
    root = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    r, p = resample(rots, root, fps_in=25.0, fps_out=30.0)  # 0.04 s apart, samples every 1/30 s
    assert r.shape == (2, 1, 4)
    t = (1 / 30) / (1 / 25)
    np.testing.assert_allclose(r[1, 0], [np.cos(0.5 * t), np.sin(0.5 * t), 0, 0], atol=1e-9)
    np.testing.assert_allclose(p[1], [t, 0, 0], atol=1e-9)


def test_lafan1_names_detected_and_rest_tpose_round_trips(tmp_path):
    """A canonical motion written as a BVH with LaFAN1 joint names (T-pose rest, metres) comes
    back unchanged through preset detection and the rest-pose reference."""
    from poseforge.backend.data.bvh import write_bvh
    from poseforge.backend.presets import load_preset
    from poseforge.backend.retarget import np_matrix_to_quat
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    T = 4
    rots = Rotation.from_rotvec(rng.normal(scale=0.4, size=(T * 22, 3))).as_matrix().reshape(T, 22, 3, 3)
    root = np.array([[0.1, 0.9, 0.2]] * T) + rng.normal(scale=0.05, size=(T, 3))
    path = write_bvh(tmp_path / "canon.bvh", rots, root, fps=30)
    names = load_preset("lafan1")["bones"]
    text = path.read_text()
    lines = []
    for ln in text.split("\n"):
        parts = ln.split()
        if len(parts) == 2 and parts[0] in ("ROOT", "JOINT"):
            ln = ln.replace(parts[1], names[parts[1]])
        lines.append(ln)
    lafan = tmp_path / "lafan_like.bvh"
    lafan.write_text("\n".join(lines))
    cm = load_canonical_motion(lafan)
    assert detect_preset(read_bvh(lafan).names)["id"] == "lafan1"
    dots = np.abs((cm.rotations.astype(np.float64) * np_matrix_to_quat(rots)).sum(-1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-4)
    np.testing.assert_allclose(cm.root, root, atol=1e-4)
