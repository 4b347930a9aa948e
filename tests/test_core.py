"""The canonical body, rotation conversions and the retargeting core (no Blender, no data)."""
import numpy as np
import pytest
import torch

from poseforge.backend import retarget as R
from poseforge.backend import rotations as rot
from poseforge.backend import skeleton as S


def _random_rotmats(shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return rot.axis_angle_to_matrix(torch.randn(*shape, 3, generator=g, dtype=torch.float64) * scale)


def test_rotation_round_trips():
    m = _random_rotmats((64,), 2.0)
    assert torch.allclose(rot.quat_to_matrix(rot.matrix_to_quat(m)), m, atol=1e-10)
    assert torch.allclose(rot.axis_angle_to_matrix(rot.matrix_to_axis_angle(m)), m, atol=1e-10)
    assert torch.allclose(rot.rot6d_to_matrix(rot.matrix_to_rot6d(m)), m, atol=1e-10)
    # near-identity and near-pi rotations are the usual failure cases
    aa = torch.tensor([[1e-9, 0, 0], [0, 0, np.pi - 1e-7], [0.0, 0.0, 0.0]], dtype=torch.float64)
    back = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(aa))
    assert torch.allclose(rot.axis_angle_to_matrix(back), rot.axis_angle_to_matrix(aa), atol=1e-6)


def test_axis_angle_gradient_finite_at_zero():
    aa = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    rot.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_euler_matches_scipy():
    from scipy.spatial.transform import Rotation
    ang = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    for order in ("ZXY", "XYZ", "YZX"):
        ours = rot.euler_to_matrix(ang, order)[0].numpy()
        ref = Rotation.from_euler(order.upper(), ang[0].numpy()).as_matrix()  # upper = intrinsic
        assert np.allclose(ours, ref, atol=1e-12)


def test_slerp_endpoints_and_midpoint():
    a = rot.matrix_to_quat(_random_rotmats((8,), seed=1))
    b = rot.matrix_to_quat(_random_rotmats((8,), seed=2))
    assert torch.allclose(rot.quat_to_matrix(rot.quat_slerp(a, b, 0.0)), rot.quat_to_matrix(a), atol=1e-9)
    assert torch.allclose(rot.quat_to_matrix(rot.quat_slerp(a, b, 1.0)), rot.quat_to_matrix(b), atol=1e-9)
    mid = rot.quat_to_matrix(rot.quat_slerp(a, b, 0.5))
    ma, mb = rot.quat_to_matrix(a), rot.quat_to_matrix(b)
    ang = lambda x, y: rot.matrix_to_axis_angle(x.transpose(-1, -2) @ y).norm(dim=-1)
    assert torch.allclose(ang(ma, mid), ang(mid, mb), atol=1e-6)


def test_rest_pose_is_a_t_pose_standing_on_the_floor():
    pos = S.rest_joint_positions()
    J = S.JOINT_INDEX
    assert abs(pos[J["left_foot"], 1]) < 0.02  # feet on the floor (Y up)
    assert pos[J["head"], 1] > 1.5
    assert pos[J["left_wrist"], 0] > 0.6 and pos[J["right_wrist"], 0] < -0.6  # +X is the body's left
    assert abs(pos[J["left_wrist"], 1] - pos[J["left_shoulder"], 1]) < 1e-9  # arms level
    assert pos[J["left_foot"], 2] > pos[J["left_ankle"], 2]  # toes point forward (+Z)


def test_forward_kinematics_torch_matches_numpy_and_preserves_bone_lengths():
    loc = _random_rotmats((5, 22), 0.7, seed=3)
    trans = torch.randn(5, 3, dtype=torch.float64)
    p, g = S.forward_kinematics(loc, trans)
    pn, gn = S.forward_kinematics_np(loc.numpy(), trans.numpy())
    assert np.allclose(p.numpy(), pn) and np.allclose(g.numpy(), gn)
    lengths = (p[:, 1:] - p[:, list(S.PARENTS[1:])]).norm(dim=-1)
    rest = torch.as_tensor(np.linalg.norm(S.REST_OFFSETS[1:], axis=-1))
    assert torch.allclose(lengths, rest.expand_as(lengths), atol=1e-12)
    assert torch.allclose(S.global_to_local(g), loc, atol=1e-12)
    with pytest.raises(ValueError):
        S.forward_kinematics(torch.zeros(5, 21, 3, 3))


def _source_skeleton(seed=0, apose=False):
    """The canonical skeleton in centimetres with random bone rolls (and optionally an A-pose)."""
    rng = np.random.default_rng(seed)
    loc = np.tile(np.eye(3), (22, 1, 1))
    if apose:
        J = S.JOINT_INDEX
        loc[J["left_shoulder"]] = R.np_axis_angle_to_matrix(np.array([0, 0, -0.8]))
        loc[J["right_shoulder"]] = R.np_axis_angle_to_matrix(np.array([0, 0, 0.8]))
    pos, _ = S.forward_kinematics_np(loc, S.REST_OFFSETS[0])
    pos = pos * 100.0
    rolls = R.np_axis_angle_to_matrix(rng.normal(size=(22, 3)))
    return pos, rolls


def test_retarget_round_trip_exact_and_positions_follow():
    pos, rolls = _source_skeleton(apose=True)
    ref = R.reference_tpose(rolls, pos, np.arange(22))
    assert ref.scale == pytest.approx(0.01)
    loc = _random_rotmats((6, 22), 0.5, seed=4).numpy()
    trans = np.random.default_rng(1).normal(size=(6, 3))
    world, root = R.canonical_to_source(ref, loc, trans)
    loc2, trans2 = R.source_to_canonical(ref, world, root)
    assert np.allclose(loc2, loc, atol=1e-9) and np.allclose(trans2, trans, atol=1e-12)


def test_retarget_missing_joint_is_filled_and_required_joints_named():
    pos, rolls = _source_skeleton()
    idx = np.arange(22)
    idx[S.JOINT_INDEX["spine2"]] = -1
    ref = R.reference_tpose(rolls, pos, idx)
    bend = R.np_axis_angle_to_matrix(np.array([0.6, 0.0, 0.0]))
    world = ref.rotations[None].copy()  # the reference pose: every W = I
    J = S.JOINT_INDEX
    for j in range(22):  # bend the whole upper body forward at spine3 in world space
        if j in (J["spine3"], J["neck"], J["head"]) or j >= J["left_collar"] and j not in (J["head"],):
            world[0, j] = bend @ ref.rotations[j]
    loc, _ = R.source_to_canonical(ref, world, np.zeros((1, 3)))
    a2 = np.linalg.norm(R.np_matrix_to_axis_angle(loc[0, J["spine2"]]))
    a3 = np.linalg.norm(R.np_matrix_to_axis_angle(loc[0, J["spine3"]]))
    assert a2 == pytest.approx(0.3, abs=1e-6) and a3 == pytest.approx(0.3, abs=1e-6)
    idx[S.JOINT_INDEX["left_knee"]] = -1
    with pytest.raises(R.RetargetError, match="left_knee"):
        R.reference_tpose(rolls, pos, idx)


def test_bent_limb_in_the_neutral_pose_sets_the_hinge_twist():
    """An arm hanging with the forearm bent forward must give the canonical elbow hinge whatever
    the bone rolls, and a straight limb with a measured flexion axis must too."""
    J = S.JOINT_INDEX
    rng = np.random.default_rng(5)
    loc = np.tile(np.eye(3), (22, 1, 1))
    # arm hanging, turned inward about its own axis (the forearm points across the belly)
    loc[J["left_shoulder"]] = R.np_axis_angle_to_matrix(np.array([0, 0, -1.4])) @ R.np_axis_angle_to_matrix(np.array([0.8, 0, 0]))
    loc[J["left_elbow"]] = R.np_axis_angle_to_matrix(np.array([0, -0.5, 0]))     # bent
    pos, glob = S.forward_kinematics_np(loc, S.REST_OFFSETS[0])
    rolls = R.np_axis_angle_to_matrix(rng.normal(size=(22, 3)))  # another bone-roll convention
    world = glob @ rolls
    ref = R.reference_tpose(world, pos, np.arange(22))
    # flex the source elbow about its hinge (the normal of the arm plane in S) and map it
    n = np.cross(pos[J["left_elbow"]] - pos[J["left_shoulder"]], pos[J["left_wrist"]] - pos[J["left_elbow"]])
    n = n / np.linalg.norm(n)
    bent = world.copy()
    bend = R.np_axis_angle_to_matrix(n * 0.7)
    bent[J["left_elbow"]] = bend @ world[J["left_elbow"]]
    bent[J["left_wrist"]] = bend @ world[J["left_wrist"]]
    loc2, _ = R.source_to_canonical(ref, bent[None], np.zeros((1, 3)))
    loc1, _ = R.source_to_canonical(ref, world[None], np.zeros((1, 3)))
    rel = loc2[0, J["left_elbow"]] @ loc1[0, J["left_elbow"]].T  # the flexion, in the upper-arm frame
    aa = R.np_matrix_to_axis_angle(rel)
    assert np.allclose(aa / np.linalg.norm(aa), [0, -1, 0], atol=1e-6)  # canonical left elbow hinge


def test_reference_offsets_reproduce_the_source_joint_positions():
    """Canonical FK with the reference offsets puts the joints where the source's own (longer
    legged, A-posed) skeleton puts them, so pinned bones stay put on any rig."""
    J = S.JOINT_INDEX
    pos, rolls = _source_skeleton(seed=2, apose=True)
    for j in (J["left_knee"], J["left_ankle"], J["left_foot"]):  # a longer left leg
        pos[j] += (pos[j] - pos[J["left_hip"]]) * 0.1
    ref = R.reference_tpose(rolls, pos, np.arange(22))
    loc = _random_rotmats((3, 22), 0.5, seed=6).numpy()
    trans = np.random.default_rng(3).normal(size=(3, 3))
    world, root = R.canonical_to_source(ref, loc, trans)
    # the source skeleton's own FK, scaled to metres
    off_src = np.zeros((22, 3))
    for j in range(1, 22):
        p = S.PARENTS[j]
        off_src[j] = rolls[p].T @ (pos[j] - pos[p])
    P = [root]
    for j in range(1, 22):
        p = S.PARENTS[j]
        P.append(P[p] + (world[:, p] @ off_src[j][:, None])[..., 0])
    P = np.stack(P, 1) * ref.scale
    ours, _ = S.forward_kinematics_np(loc, trans, offsets=ref.offsets)
    canonical, _ = S.forward_kinematics_np(loc, trans)
    assert np.abs(ours - P).max() < 1e-9
    assert np.abs(canonical - P).max() > 0.01  # the canonical body alone would not do


def test_matrix_to_axis_angle_gradient_is_finite_at_identity_and_half_turns():
    """Optimisers differentiate through this conversion; a NaN gradient would poison a whole fit."""
    aa = torch.tensor([[0.0, 0.0, 0.0], [np.pi, 0.0, 0.0], [0.0, 0.3, 0.0]], dtype=torch.float64,
                      requires_grad=True)
    m = rot.axis_angle_to_matrix(aa)
    rot.matrix_to_axis_angle(m).sum().backward()
    assert torch.isfinite(aa.grad).all()
