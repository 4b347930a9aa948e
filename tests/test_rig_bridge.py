"""The rig bridge against Blender itself (bpy): write a canonical pose, read it back.

Runs on the default rig built by code, on the Quaternius Male_Casual.blend rig (IK legs) and on
the KayKit glTF mannequin (object rotated by the importer, fewer spine bones).  Each test starts
from factory settings.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from mathutils import Matrix  # noqa: E402

from poseforge.backend.retarget import np_axis_angle_to_matrix, np_matrix_to_axis_angle  # noqa: E402
from poseforge.backend.skeleton import JOINT_INDEX, JOINT_NAMES, forward_kinematics_np  # noqa: E402
from poseforge.rig import actions  # noqa: E402
from poseforge.rig.bridge import C_BLENDER, RigError, RigMap, read_action, read_pose, write_pose  # noqa: E402
from poseforge.rig.default_rig import build_default_rig  # noqa: E402

MM = 1e-3


@pytest.fixture(autouse=True)
def factory():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def random_pose(seed: int, scale: float = 0.4, root=(0.05, 0.9, 0.1)):
    """A plausible canonical pose: every joint turned by N(0, scale) rad per axis."""
    rng = np.random.default_rng(seed)
    return np_axis_angle_to_matrix(rng.normal(size=(22, 3)) * scale), np.asarray(root, dtype=np.float64)


def positions(local, root):
    return forward_kinematics_np(local, root)[0]


def rot_err(a, b) -> float:
    """Largest angle (rad) between matching rotations."""
    return float(np.linalg.norm(np_matrix_to_axis_angle(np.swapaxes(a, -1, -2) @ b), axis=-1).max())


def basis_snapshot(obj, names=None) -> dict[str, Matrix]:
    return {pb.name: pb.matrix_basis.copy() for pb in obj.pose.bones if names is None or pb.name in names}


def assert_unchanged(before: dict, obj):
    for name, m in before.items():
        diff = max(abs(a - b) for ra, rb in zip(m, obj.pose.bones[name].matrix_basis) for a, b in zip(ra, rb))
        assert diff < 1e-6, f"bone '{name}' outside the map was changed"


# --- the default rig ------------------------------------------------------------------------------

def test_default_rig_round_trip_and_blender_fk():
    obj = build_default_rig()
    assert any(m.type == "ARMATURE" for c in obj.children for m in c.modifiers)
    rm = RigMap.from_armature(obj)
    assert rm.source == "preset:canonical" and rm.unmatched == []
    assert abs(rm.reference.scale - 1.0) < 1e-5
    local, root = random_pose(0)
    write_pose(obj, rm, local, root)
    back, back_root = read_pose(obj, rm)
    assert np.abs(positions(back, back_root) - positions(local, root)).max() < 1 * MM
    assert rot_err(back, local) < 1e-4
    # Blender's own evaluation after a frame change: world heads of the pose bones == our FK
    bpy.context.scene.frame_set(bpy.context.scene.frame_current)
    heads = np.array([obj.matrix_world @ obj.pose.bones[j].head for j in JOINT_NAMES])
    assert np.abs(heads - positions(local, root) @ C_BLENDER).max() < 1 * MM


def test_rest_pose_reads_as_identity_and_rotation_modes_round_trip():
    obj = build_default_rig()
    rm = RigMap.from_armature(obj)
    rest, rest_root = read_pose(obj, rm)
    assert rot_err(rest, np.tile(np.eye(3), (22, 1, 1))) < 1e-4
    modes = {"left_elbow": "XYZ", "right_knee": "ZXY", "spine2": "AXIS_ANGLE", "head": "YXZ"}
    for bone, mode in modes.items():
        obj.pose.bones[bone].rotation_mode = mode
    # an Euler value two turns away: the written angles must stay on that branch
    obj.pose.bones["left_elbow"].rotation_euler = (4 * math.pi, 0.0, 0.0)
    local, root = random_pose(1)
    write_pose(obj, rm, local, root)
    assert abs(obj.pose.bones["left_elbow"].rotation_euler[0] - 4 * math.pi) < 1.5
    back, back_root = read_pose(obj, rm)
    assert np.abs(positions(back, back_root) - positions(local, root)).max() < 1 * MM
    assert rot_err(back, local) < 1e-4


def _make_a_pose(obj, angle_deg=45.0, seed=3):
    """Turn the rest pose into an A-pose (arms down by ``angle_deg``) with random bone rolls."""
    rng = np.random.default_rng(seed)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    eb = obj.data.edit_bones
    for b in eb:  # connected children follow their parent's tail: unhook them first
        b.use_connect = False
    new = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        pivot = eb[f"{side}_shoulder"].head.copy()
        rot = Matrix.Rotation(math.radians(angle_deg) * sign, 3, "Y")
        for part in ("shoulder", "elbow", "wrist"):
            b = eb[f"{side}_{part}"]
            new[b.name] = (pivot + rot @ (b.head - pivot), pivot + rot @ (b.tail - pivot))
    for name, (head, tail) in new.items():
        eb[name].head, eb[name].tail = head, tail
    for b in eb:
        b.roll = float(rng.uniform(-math.pi, math.pi))
    bpy.ops.object.mode_set(mode="OBJECT")


def test_a_pose_rig_with_object_transform_round_trips():
    obj = build_default_rig()
    _make_a_pose(obj)
    obj.rotation_euler = (0.0, 0.0, 0.8)
    obj.scale = (2.5, 2.5, 2.5)
    obj.location = (1.0, -2.0, 0.5)
    bpy.context.view_layer.update()
    rm = RigMap.from_armature(obj)
    assert abs(rm.reference.scale - 1 / 2.5) < 1e-4
    # the A-pose rest reads as a T-pose with the arms lowered by 45 degrees, turned 0.8 rad
    rest, _ = read_pose(obj, rm)
    for side in ("left", "right"):
        angle = np.linalg.norm(np_matrix_to_axis_angle(rest[JOINT_INDEX[f"{side}_shoulder"]]))
        assert abs(math.degrees(angle) - 45.0) < 0.5
    assert abs(np.linalg.norm(np_matrix_to_axis_angle(rest[0])) - 0.8) < 1e-3
    # the object is then tilted as well: the map made before still round-trips
    obj.rotation_euler = (0.2, -0.1, 0.8)
    bpy.context.view_layer.update()
    local, root = random_pose(2, root=(0.3, 1.0, -0.2))
    write_pose(obj, rm, local, root)
    back, back_root = read_pose(obj, rm)
    assert np.abs(positions(back, back_root) - positions(local, root)).max() < 1 * MM
    assert rot_err(back, local) < 1e-4


def test_same_pose_gives_same_world_bone_directions_on_t_and_a_pose_rigs():
    local, root = random_pose(4)
    dirs = []
    for a_pose in (False, True):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        obj = build_default_rig()
        if a_pose:
            _make_a_pose(obj)
        rm = RigMap.from_armature(obj)
        write_pose(obj, rm, local, root)
        pb = obj.pose.bones
        dirs.append(np.array([(pb[f"{s}_wrist"].head - pb[f"{s}_elbow"].head).normalized()
                              for s in ("left", "right")]))
    assert np.abs(dirs[0] - dirs[1]).max() < 1e-4


def test_keyframes_through_actions_and_read_action():
    obj = build_default_rig()
    obj.pose.bones["left_knee"].rotation_mode = "XZY"
    rm = RigMap.from_armature(obj)
    scene = bpy.context.scene
    scene.frame_set(5)
    poses = {f: random_pose(10 + f, root=(0.0, 0.9, 0.01 * f)) for f in (1, 12, 30)}
    for f, (local, root) in poses.items():
        write_pose(obj, rm, local, root, frame=f, keyframe=True)
    assert actions.keyed_frames(obj, "left_knee") == [1.0, 12.0, 30.0]
    assert actions.keyed_frames(obj, "pelvis") == [1.0, 12.0, 30.0]
    assert actions.find_fcurve(obj, actions.bone_data_path("left_knee", "rotation_euler"), 2) is not None
    assert actions.find_fcurve(obj, actions.bone_data_path("pelvis", "location"), 0) is not None
    scene.frame_set(7)
    local, roots = read_action(obj, rm, [1, 12, 30])
    assert scene.frame_current == 7
    for k, (f, (want, want_root)) in enumerate(poses.items()):
        assert np.abs(positions(local[k], roots[k]) - positions(want, want_root)).max() < 1 * MM
    assert actions.remove_keys(obj, 10, 13) > 0
    assert actions.keyed_frames(obj) == [1.0, 30.0]


def test_joints_subset_leaves_other_bones_alone():
    obj = build_default_rig()
    rm = RigMap.from_armature(obj)
    arm = ["left_shoulder", "left_elbow", "left_wrist"]
    before = basis_snapshot(obj, [b for j, b in rm.bones.items() if j not in arm])
    local, root = random_pose(5)
    written = write_pose(obj, rm, local, root, joints=arm)
    assert sorted(written) == sorted(arm)
    assert_unchanged(before, obj)


def test_auto_matched_renamed_rig_round_trips():
    obj = build_default_rig()
    names = {"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2",
             "neck": "Neck", "head": "Head"}
    for s, tag in (("left", "Left"), ("right", "Right")):
        for part, n in (("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"), ("foot", "ToeBase"),
                        ("collar", "Shoulder"), ("shoulder", "Arm"), ("elbow", "ForeArm"), ("wrist", "Hand")):
            names[f"{s}_{part}"] = f"{tag}{n}"
    for j, n in names.items():
        obj.data.bones[j].name = n
    rm = RigMap.from_armature(obj)
    assert rm.source == "auto" and rm.bones == names
    local, root = random_pose(6)
    write_pose(obj, rm, local, root)
    back, back_root = read_pose(obj, rm)
    assert np.abs(positions(back, back_root) - positions(local, root)).max() < 1 * MM
    # the animator fixes one joint by hand: the override wins
    fixed = RigMap.from_armature(obj, overrides={"left_foot": None})
    assert "left_foot" in fixed.unmatched and fixed.source == "auto+overrides"


# --- bad input ----------------------------------------------------------------------------------

def test_non_humanoid_armature_and_non_armature_raise():
    arm = bpy.data.armatures.new("Chain")
    obj = bpy.data.objects.new("Chain", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    prev = None
    for i in range(3):
        b = arm.edit_bones.new(f"Bone{i}")
        b.head, b.tail = (0, 0, i), (0, 0, i + 1)
        b.parent = prev
        prev = b
    bpy.ops.object.mode_set(mode="OBJECT")
    with pytest.raises(RigError, match="left_hip") as exc:
        RigMap.from_armature(obj)
    assert "pelvis" in str(exc.value) and "right_ankle" in str(exc.value)
    mesh = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    with pytest.raises(RigError, match="armature"):
        RigMap.from_armature(mesh)
    with pytest.raises(RigError, match="armature"):
        RigMap.from_armature(None)
    with pytest.raises(RigError, match="no bone 'nope'"):
        RigMap.from_armature(build_default_rig(), overrides={"head": "nope"})


def test_nan_pose_raises_and_changes_nothing():
    obj = build_default_rig()
    rm = RigMap.from_armature(obj)
    write_pose(obj, rm, *random_pose(7))
    before = basis_snapshot(obj)
    frame = bpy.context.scene.frame_current
    local, root = random_pose(8)
    local[JOINT_INDEX["left_elbow"], 0, 0] = np.nan
    with pytest.raises(RigError, match="left_elbow"):
        write_pose(obj, rm, local, root, frame=frame + 10, keyframe=True)
    with pytest.raises(RigError, match="NaN"):
        write_pose(obj, rm, random_pose(8)[0], np.array([0.0, np.inf, 0.0]), keyframe=True)
    with pytest.raises(RigError, match="shape"):
        write_pose(obj, rm, local[:21], root)
    assert_unchanged(before, obj)
    assert obj.animation_data is None or obj.animation_data.action is None
    assert bpy.context.scene.frame_current == frame


# --- real characters ----------------------------------------------------------------------------

def _unmapped(obj, rm):
    mapped = set(rm.bones.values())
    return [pb.name for pb in obj.pose.bones if pb.name not in mapped]


def test_quaternius_male_casual_round_trip(characters_dir):
    path = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["HumanArmature"]
    obj.animation_data.action = None  # the file's idle clip would re-pose the rig on frame change
    rm = RigMap.from_armature(obj)
    assert rm.source == "preset:quaternius"
    assert sorted(b for b, _ in rm.ik_constraints) == ["LowerLeg.L", "LowerLeg.R"]
    untouched = _unmapped(obj, rm)
    assert {"PoleTarget.L", "Fingers.L", "Thumb1.R", "Bone"} <= set(untouched)
    before = basis_snapshot(obj, untouched)
    local, root = random_pose(20)
    write_pose(obj, rm, local, root)
    back, back_root = read_pose(obj, rm)
    # the rig has no toe bones: the feet are leaves, so all 22 joint positions still agree
    assert np.abs(positions(back, back_root) - positions(local, root)).max() < 1 * MM
    mapped = [JOINT_INDEX[j] for j in rm.bones]
    glob_w = forward_kinematics_np(local)[1][mapped]
    glob_r = forward_kinematics_np(back)[1][mapped]
    assert rot_err(glob_w, glob_r) < 1e-4
    assert_unchanged(before, obj)
    # automatic matching by names + hierarchy finds the preset's bones on the real rig
    auto = RigMap.from_armature(obj, preset="auto")
    assert auto.source == "auto" and auto.bones == rm.bones


def test_kaykit_gltf_round_trip(characters_dir):
    path = characters_dir / "kaykit_manny" / "manny_med_mod.gltf"
    bpy.ops.import_scene.gltf(filepath=str(path))
    obj = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    assert abs(obj.matrix_world.to_euler()[0]) > 1.0  # the importer stands the Y-up rig up
    rm = RigMap.from_armature(obj)
    assert rm.source == "preset:kaykit"
    assert RigMap.from_armature(obj, preset="auto").bones == rm.bones
    assert set(rm.unmatched) == {"spine2", "neck", "left_collar", "right_collar"}
    untouched = _unmapped(obj, rm)
    before = basis_snapshot(obj, untouched)
    local, root = random_pose(21)
    write_pose(obj, rm, local, root)
    first, first_root = read_pose(obj, rm)
    # mapped joints keep their world rotation exactly; the rig's missing joints are filled by
    # the retargeting rule, so compare the canonical pose the rig can hold with itself
    mapped = [JOINT_INDEX[j] for j in rm.bones]
    assert rot_err(forward_kinematics_np(local)[1][mapped], forward_kinematics_np(first)[1][mapped]) < 1e-4
    assert np.abs(first_root - root).max() < 1e-6
    write_pose(obj, rm, first, first_root)
    again, again_root = read_pose(obj, rm)
    assert np.abs(positions(again, again_root) - positions(first, first_root)).max() < 1 * MM
    assert_unchanged(before, obj)
