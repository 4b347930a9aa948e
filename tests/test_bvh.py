"""BVH reader, forward kinematics and writer: against Blender's own importer, malformed files,
channel layouts and the write/read round trip."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from poseforge.backend.data.bvh import BVHError, bvh_world, read_bvh, write_bvh
from poseforge.backend.retarget import axis_conversion, np_quat_to_matrix
from poseforge.backend.skeleton import JOINT_NAMES, forward_kinematics_np

# A small two-legged skeleton: 6-channel root, 3-channel joints in two Euler orders, End Sites.
SMALL = """HIERARCHY
ROOT Hips
{
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT LeftLeg
\t{
\t\tOFFSET 10 -5 0
\t\tCHANNELS 3 Zrotation Xrotation Yrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0 -40 0
\t\t}
\t}
\tJOINT RightLeg
\t{
\t\tOFFSET -10 -5 0
\t\tCHANNELS 3 Xrotation Yrotation Zrotation
\t\tJOINT RightFoot
\t\t{
\t\t\tOFFSET 0 -40 0
\t\t\tCHANNELS 3 Yrotation Xrotation Zrotation
\t\t\tEnd Site
\t\t\t{
\t\t\t\tOFFSET 0 0 10
\t\t\t}
\t\t}
\t}
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 0 0 0 0 0 0 0 0 0
1 91 2 10 20 30 40 50 60 -20 10 5 15 25 35
2 92 4 0 0 90 0 90 0 0 0 0 0 0 0
"""
# line numbers in SMALL (1-based)
LINE_FRAME = {0: 33, 1: 34, 2: 35}
LINE_CHANNELS_LEFT = 9


def _write(tmp_path, text: str, name: str = "clip.bvh", newline: str = "\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_small_skeleton_channels_and_orders(tmp_path):
    m = read_bvh(_write(tmp_path, SMALL))
    assert m.names == ["Hips", "LeftLeg", "RightLeg", "RightFoot"]
    assert list(m.parents) == [-1, 0, 0, 2]
    assert m.num_frames == 3 and m.fps == pytest.approx(30.0, rel=1e-4)
    assert [len(c) for c in m.channels] == [6, 3, 3, 3]
    assert len(m.end_sites) == 2
    # rotations: intrinsic Euler in each joint's own channel order (scipy as the reference)
    f = 1
    np.testing.assert_allclose(m.rotations[f, 0], Rotation.from_euler("ZXY", [10, 20, 30], degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(m.rotations[f, 1], Rotation.from_euler("ZXY", [40, 50, 60], degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(m.rotations[f, 2], Rotation.from_euler("XYZ", [-20, 10, 5], degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(m.rotations[f, 3], Rotation.from_euler("YXZ", [15, 25, 35], degrees=True).as_matrix(), atol=1e-12)
    # position channels replace the root offset; 3-channel joints keep their OFFSET
    np.testing.assert_allclose(m.translations[:, 0], [[0, 90, 0], [1, 91, 2], [2, 92, 4]])
    np.testing.assert_allclose(m.translations[:, 1], [[10, -5, 0]] * 3)
    # frame 2: root yawed 90 deg about Y (Zrotation 0, Xrotation 0, Yrotation 90 in ZXY order)
    _, pos = bvh_world(m)
    np.testing.assert_allclose(pos[2, 1], [2, 87, 4 - 10], atol=1e-9)  # +X offset turns to -Z
    # frame 0 has no rotation: offsets add up
    np.testing.assert_allclose(pos[0, 3], [-10, 45, 0], atol=1e-9)


def test_crlf_tabs_and_spacing_read_the_same(tmp_path):
    ref = read_bvh(_write(tmp_path, SMALL))
    crlf = read_bvh(_write(tmp_path, SMALL.replace("\t", "  "), "crlf.bvh", newline="\r\n"))
    np.testing.assert_allclose(crlf.rotations, ref.rotations)
    np.testing.assert_allclose(crlf.translations, ref.translations)
    assert crlf.names == ref.names


def _replace_line(text: str, line: int, new: str) -> str:
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize("case", ["truncated", "short_line", "long_line", "unknown_channel", "nan",
                                  "missing_brace", "extra_brace", "not_a_number", "extra_frames"])
def test_malformed_files_name_file_and_line(tmp_path, case):
    lines = SMALL.split("\n")
    if case == "truncated":
        text, line = "\n".join(lines[:LINE_FRAME[1]]) + "\n", LINE_FRAME[1] + 1
    elif case == "short_line":
        text, line = _replace_line(SMALL, LINE_FRAME[1], "1 91 2 10 20 30"), LINE_FRAME[1]
    elif case == "long_line":
        text, line = _replace_line(SMALL, LINE_FRAME[2], lines[LINE_FRAME[2] - 1] + " 7"), LINE_FRAME[2]
    elif case == "unknown_channel":
        text = SMALL.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Wrotation Yrotation", 1)
        line = LINE_CHANNELS_LEFT
    elif case == "nan":
        text, line = _replace_line(SMALL, LINE_FRAME[1], lines[LINE_FRAME[1] - 1].replace(" 50 ", " nan ")), LINE_FRAME[1]
    elif case == "not_a_number":
        text, line = _replace_line(SMALL, LINE_FRAME[2], lines[LINE_FRAME[2] - 1].replace(" 92 ", " 9x2 ")), LINE_FRAME[2]
    elif case == "missing_brace":  # the closing brace of RightLeg is gone: MOTION arrives inside a joint
        text = "\n".join(lines[:27] + lines[28:])
        line = 29
        assert text.split("\n")[line - 1] == "MOTION"
    elif case == "extra_brace":
        text, line = "\n".join(lines[:29] + ["}"] + lines[29:]), 30
    else:  # extra_frames
        text, line = SMALL + "3 93 6 0 0 0 0 0 0 0 0 0 0 0 0\n", LINE_FRAME[2] + 1
    path = _write(tmp_path, text, f"bad_{case}.bvh")
    with pytest.raises(BVHError) as err:
        read_bvh(path)
    msg = str(err.value)
    assert f"bad_{case}.bvh" in msg
    assert f"line {line}:" in msg, msg


def test_missing_file_is_a_bvh_error(tmp_path):
    with pytest.raises(BVHError, match="nothere.bvh"):
        read_bvh(tmp_path / "nothere.bvh")


@pytest.mark.parametrize("order,units", [("ZXY", "cm"), ("XYZ", "m")])
def test_write_read_round_trip(tmp_path, order, units):
    rng = np.random.default_rng(3)
    T = 5
    aa = rng.normal(scale=0.6, size=(T, 22, 3))
    rots = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(T, 22, 3, 3)
    root = rng.normal(size=(T, 3)) * 0.3 + [0, 0.93, 0]
    path = write_bvh(tmp_path / "canon.bvh", rots, root, fps=30, order=order, units=units)
    m = read_bvh(path)
    assert sorted(m.names) == sorted(JOINT_NAMES)
    assert m.fps == pytest.approx(30.0, rel=1e-6)
    k = 0.01 if units == "cm" else 1.0
    _, pos = bvh_world(m)
    order_idx = [m.names.index(n) for n in JOINT_NAMES]
    want, _ = forward_kinematics_np(rots, root)
    np.testing.assert_allclose(pos[:, order_idx] * k, want, atol=2e-5)
    np.testing.assert_allclose(m.rotations[:, order_idx], rots, atol=1e-5)
    # quaternion input writes the same file
    from poseforge.backend.retarget import np_matrix_to_quat
    path2 = write_bvh(tmp_path / "canon_q.bvh", np_matrix_to_quat(rots), root, order=order, units=units)
    np.testing.assert_allclose(read_bvh(path2).rotations, m.rotations, atol=1e-5)


def _blender_heads(path, frames, scale):
    """World head positions (Blender frame, Z up) of every pose bone after Blender's BVH import."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(path), global_scale=scale, axis_forward="-Z", axis_up="Y")
    ob = bpy.context.active_object
    start = bpy.context.scene.frame_start
    out = {}
    for f in frames:
        bpy.context.scene.frame_set(start + f)
        out[f] = {pb.name: np.array(ob.matrix_world @ pb.head) for pb in ob.pose.bones}
    return out


def _compare_with_blender(path, frames, scale=0.01):
    m = read_bvh(path)
    _, pos = bvh_world(m)
    to_blender = axis_conversion("Z").T  # Y-up source -> Blender's Z up, facing -Y
    heads = _blender_heads(path, frames, scale)
    worst = 0.0
    for f in frames:
        assert set(heads[f]) == set(m.names)
        ours = (pos[f] @ to_blender.T) * scale
        theirs = np.stack([heads[f][n] for n in m.names])
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def test_matches_blender_importer_bandai(bandai_dir):
    path = bandai_dir / "data" / "dataset-2_walk_normal_001.bvh"
    assert _compare_with_blender(path, [0, 37, 150, 272]) < 1e-3  # metres: under 1 mm


def test_matches_blender_importer_cmu(cmu_dir, tmp_path):
    # the first 80 frames of a 120 fps clip: mixed root order (ZYX) and 3-channel joints, CRLF/LF
    src = (cmu_dir / "martial" / "03.bvh").read_bytes().decode("utf-8").splitlines()
    i = next(k for k, ln in enumerate(src) if ln.strip().startswith("Frames:"))
    short = src[:i] + ["Frames: 80"] + src[i + 1:i + 2 + 80]
    path = tmp_path / "cmu_short.bvh"
    path.write_text("\r\n".join(short) + "\r\n")
    assert _compare_with_blender(path, [0, 20, 55, 79]) < 1e-3
