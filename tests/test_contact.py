"""Foot contacts and foot-sliding clean-up (backend/tasks/contact.py)."""
from __future__ import annotations

import numpy as np
import pytest

from poseforge.backend.retarget import np_axis_angle_to_matrix, np_matrix_to_quat, np_quat_to_matrix
from poseforge.backend.skeleton import JOINT_INDEX, PARENTS, REST_OFFSETS, forward_kinematics_np
from poseforge.backend.tasks.contact import (ContactError, contact_runs, fix_foot_sliding, foot_contacts,
                                             foot_sliding)

L_ANKLE, R_ANKLE = JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]
L_FOOT = JOINT_INDEX["left_foot"]


def crouched_clip(T: int, root_step=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Knees bent (thighs 25 deg forward, shanks 50 deg back, feet level), pelvis moving by
    ``root_step`` metres per frame, feet on the floor at frame 0."""
    aa = np.zeros((22, 3))
    for s in ("left", "right"):
        aa[JOINT_INDEX[f"{s}_hip"]] = [-np.deg2rad(25), 0, 0]
        aa[JOINT_INDEX[f"{s}_knee"]] = [np.deg2rad(50), 0, 0]
        aa[JOINT_INDEX[f"{s}_ankle"]] = [-np.deg2rad(25), 0, 0]
    q = np.tile(np_matrix_to_quat(np_axis_angle_to_matrix(aa)), (T, 1, 1)).astype(np.float32)
    root = np.zeros((T, 3))
    root[:, 1] = 0.93
    pos, _ = forward_kinematics_np(np_quat_to_matrix(q[:1]), root[:1])
    root[:, 1] -= pos[0, [L_ANKLE, L_FOOT], 1].min()
    root += np.arange(T)[:, None] * np.asarray(root_step)
    return q, root.astype(np.float32)


def positions(rot, root):
    return forward_kinematics_np(np_quat_to_matrix(rot), root)[0]


def bone_lengths(pos):
    return np.linalg.norm(pos[:, 1:] - pos[:, list(PARENTS[1:])], axis=-1)


def test_standing_still_is_contact_and_a_moving_lifted_foot_is_not():
    rot, root = crouched_clip(20)
    assert foot_contacts(rot, root).all()
    # lift the left foot 20 cm and swing it: the thigh turns a little more every frame
    rot = rot.copy()
    for t in range(20):
        aa = np.array([-np.deg2rad(60 + 3 * t), 0, 0])
        rot[t, JOINT_INDEX["left_hip"]] = np_matrix_to_quat(np_axis_angle_to_matrix(aa))
    c = foot_contacts(rot, root)
    assert not c[:, 0].any() and c[:, 1].all()


def test_a_still_foot_high_above_the_floor_is_not_in_contact():
    rot, root = crouched_clip(10)
    rot = rot.copy()
    rot[:, JOINT_INDEX["left_hip"]] = np_matrix_to_quat(np_axis_angle_to_matrix(np.array([-1.2, 0, 0])))
    c = foot_contacts(rot, root)
    assert not c[:, 0].any() and c[:, 1].all()


def test_sliding_foot_is_locked_bones_keep_length_and_keys_stay():
    T = 40
    rot, root = crouched_clip(T, root_step=(0.004, 0.0, 0.006))  # both feet slide 7 mm/frame
    contacts = np.zeros((T, 2), dtype=bool)
    contacts[8:30, 0] = True   # left foot planted on frames 8..29
    contacts[12:20, 1] = True
    keep = np.zeros(T, dtype=bool)
    keep[[0, 20, 39]] = True
    before = positions(rot, root)
    new_rot, new_root = fix_foot_sliding(rot, root, contacts=contacts, keep=keep)
    after = positions(new_rot, new_root)
    assert np.isfinite(new_rot).all() and new_rot.dtype == rot.dtype
    drift = np.linalg.norm(np.diff(before[8:30, L_ANKLE][:, [0, 2]], axis=0), axis=-1).sum()
    assert drift > 0.1  # the test clip really slides (15 cm)
    # the planted ankle stays where it is on the kept frame 20 (mm tolerance)
    locked = after[8:30, L_ANKLE]
    assert np.abs(locked - before[20, L_ANKLE]).max() < 1e-3
    r = after[12:20, R_ANKLE]
    assert np.abs(r - r[0]).max() < 1e-3
    assert np.allclose(bone_lengths(after), np.linalg.norm(REST_OFFSETS[1:], axis=-1), atol=1e-5)
    assert np.array_equal(new_rot[keep], rot[keep])
    assert np.array_equal(new_root, root)
    # the foot keeps its orientation (global rotation of the ankle joint)
    _, g0 = forward_kinematics_np(np_quat_to_matrix(rot), root)
    _, g1 = forward_kinematics_np(np_quat_to_matrix(new_rot), new_root)
    assert np.allclose(g0[:, [L_ANKLE, L_FOOT]], g1[:, [L_ANKLE, L_FOOT]], atol=1e-5)
    # only leg joints change; frames far from every run are untouched
    legs = [JOINT_INDEX[f"{s}_{j}"] for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    others = [j for j in range(22) if j not in legs]
    assert np.array_equal(new_rot[:, others], rot[:, others])
    assert np.array_equal(new_rot[:3], rot[:3]) and np.array_equal(new_rot[35:], rot[35:])
    # the correction fades in and out: the ankle never jumps as it would without the fade
    step = np.linalg.norm(np.diff(after[:, L_ANKLE], axis=0), axis=-1).max()
    hard = positions(fix_foot_sliding(rot, root, contacts=contacts, keep=keep, blend=0)[0], root)
    hard_step = np.linalg.norm(np.diff(hard[:, L_ANKLE], axis=0), axis=-1).max()
    assert hard_step > 0.06 and step < 0.5 * hard_step
    # the measure agrees: far less sliding on the contact frames
    assert foot_sliding(new_rot, new_root, contacts)[0] < 0.05 * foot_sliding(rot, root, contacts)[0]


def test_out_of_reach_target_gives_a_straight_leg_not_nan():
    T = 30
    rot, root = crouched_clip(T, root_step=(0.0, 0.03, 0.0))  # pelvis rises 3 cm per frame
    contacts = np.zeros((T, 2), dtype=bool)
    contacts[:, 0] = True
    new_rot, _ = fix_foot_sliding(rot, root, contacts=contacts)
    after = positions(new_rot, root)
    assert np.isfinite(new_rot).all()
    assert np.allclose(bone_lengths(after), np.linalg.norm(REST_OFFSETS[1:], axis=-1), atol=1e-5)


def test_no_contact_returns_the_motion_unchanged():
    rot, root = crouched_clip(25, root_step=(0.0, 0.05, 0.0))  # flying up 5 cm/frame: no contact
    assert not foot_contacts(rot, root).any()
    new_rot, new_root = fix_foot_sliding(rot, root)
    assert np.array_equal(new_rot, rot) and np.array_equal(new_root, root)


def test_contact_runs_and_bad_input():
    assert contact_runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]
    assert contact_runs(np.zeros(3, bool)) == []
    rot, root = crouched_clip(5)
    with pytest.raises(ContactError, match="rotations"):
        foot_contacts(rot[:, :21], root)
    with pytest.raises(ContactError, match="contacts"):
        fix_foot_sliding(rot, root, contacts=np.ones((4, 2), bool))
    bad = rot.copy()
    bad[2, 3, 0] = np.nan
    with pytest.raises(ContactError, match="NaN"):
        fix_foot_sliding(bad, root)


def test_bandai_walk_contacts_alternate(bandai_dir):
    from poseforge.backend.data.mocap import load_canonical_motion

    clip = bandai_dir / "data" / "dataset-2_walk_normal_005.bvh"
    m = load_canonical_motion(clip)
    c = foot_contacts(m.rotations, m.root)
    frac = c.mean(0)
    assert ((frac > 0.3) & (frac < 0.6)).all(), frac
    runs = sorted((s, side) for side in (0, 1) for s, _ in contact_runs(c[:, side]))
    assert len(runs) >= 6
    switches = np.mean([a[1] != b[1] for a, b in zip(runs[:-1], runs[1:])])
    assert switches > 0.8  # left, right, left, ...
    # keys every 10th frame, linear in between: the clean-up leaves the keys bit-identical
    T = m.num_frames
    keep = np.zeros(T, bool)
    keep[::10] = True
    rot, root = m.rotations.copy(), m.root.copy()
    for a, b in zip(np.flatnonzero(keep)[:-1], np.flatnonzero(keep)[1:]):
        w = np.linspace(0, 1, b - a + 1)[1:-1, None, None]
        q = (1 - w) * rot[a] + w * np.where((rot[a] * rot[b]).sum(-1, keepdims=True) < 0, -rot[b], rot[b])
        rot[a + 1:b] = q / np.linalg.norm(q, axis=-1, keepdims=True)
        root[a + 1:b] = (1 - w[..., 0]) * root[a] + w[..., 0] * root[b]
    fixed, _ = fix_foot_sliding(rot, root, contacts=c, keep=keep)
    assert np.array_equal(fixed[keep], m.rotations[keep])
    assert np.nanmean(foot_sliding(fixed, root, c)) < 0.6 * np.nanmean(foot_sliding(rot, root, c))


def test_planting_feet_on_real_walk_keeps_knees_hinges_and_the_pose_plausible(bandai_dir):
    """On a real walk the clean-up halves foot sliding without turning a knee off its hinge
    (a knee twisted sideways is what the DPoser prior, and an animator, reads as broken)."""
    from poseforge.backend.data.mocap import load_canonical_motion
    from poseforge.backend.retarget import np_matrix_to_axis_angle, np_quat_to_matrix
    from poseforge.backend.skeleton import JOINT_INDEX

    m = load_canonical_motion(bandai_dir / "data" / "dataset-2_walk_normal_005.bvh")
    fixed, _ = fix_foot_sliding(m.rotations, m.root)
    assert np.nanmean(foot_sliding(fixed, m.root)) < 0.5 * np.nanmean(foot_sliding(m.rotations, m.root))
    for knee in ("left_knee", "right_knee"):
        j = JOINT_INDEX[knee]
        old, new = np_quat_to_matrix(m.rotations[:, j].astype(np.float64)), np_quat_to_matrix(fixed[:, j].astype(np.float64))
        change = np_matrix_to_axis_angle(new @ np.swapaxes(old, -1, -2))     # in the hip's frame
        moved = np.linalg.norm(change, axis=-1) > np.deg2rad(0.5)
        assert moved.any()
        # the change is a rotation about the knee's hinge (+X): no sideways or twisting part
        assert np.abs(change[moved][:, 1:]).max() < 1e-6
