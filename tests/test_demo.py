"""The demo path end to end, on real input: a Bandai-2 TEST clip retargeted onto the Quaternius
Male_Casual rig, keys broken the way a hurried animator does, found and fixed by the add-on's own
operators, errors measured against the clip.  And the default demo (built-in rig, sampled poses).
"""
import json
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from poseforge import demo  # noqa: E402
from poseforge.backend.weights import default_weights_dir  # noqa: E402

pytestmark = pytest.mark.skipif(
    not all((default_weights_dir() / f"{m}.safetensors").is_file() for m in ("dposer", "gfpose")),
    reason="needs the shipped DPoser and GFPose weights (backend/weights)")


def test_real_clip_on_quaternius_rig_is_fixed(tmp_path, bandai_dir, characters_dir):
    clip = bandai_dir / "data" / "dataset-2_walk_normal_005.bvh"  # take 5: test split
    rig = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    rep = demo.run(tmp_path, rig=rig, bvh=clip, keys=8, seed=1, render_images=False)
    assert rep["input"]["rig_map"].startswith("preset:quaternius")
    # the clip survives the trip onto the rig and back (canonical joint positions)
    assert rep["retarget_error_mm"]["max"] < 1.0
    m, b = rep["mpjpe_mm"], rep["broken_joint_error_mm"]
    # breaking the keys is visible (knees / elbows swung round), and fixing brings them back
    # close to the real motion
    assert b["before"] > 100.0, b
    assert b["after"] < 0.3 * b["before"], b
    assert m["broken_keys_after"] < 0.7 * m["broken_keys_before"], m
    # keys that were fine are left alone, pinned bones stay put
    assert rep["untouched_keys_max_change_mm"] < 1.0
    assert rep["pinned_drift_mm"] < 1.0
    imp = rep["implausibility"]
    broken = [i for i, f in enumerate(rep["input"]["frames"]) if str(f) in rep["broken"]]
    assert all(imp["after"][i] < imp["before"][i] for i in broken)
    # Fill Keyframe Gaps on keys half a second apart: far closer to the clip than Blender's own
    # interpolation of the same keys (measured 10 vs 70 mm), and as plausible as the clip
    ib = rep["inbetween"]
    assert ib["filled_frames"] == 56
    assert ib["mpjpe_mm_vs_clip"]["filled"] < 0.4 * ib["mpjpe_mm_vs_clip"]["blender_interpolation"], ib
    assert ib["implausibility_of_inbetweens"]["filled"] < ib["implausibility_of_inbetweens"]["clip"] + 0.2, ib
    assert (tmp_path / "demo.blend").is_file()
    assert json.loads((tmp_path / "report.json").read_text())["mpjpe_mm"] == m


def test_default_demo_snaps_sampled_poses(tmp_path):
    rep = demo.run(tmp_path, keys=3, seed=0, render_images=True)
    b = rep["broken_joint_error_mm"]
    assert b["after"] < 0.3 * b["before"], b
    assert rep["pinned_drift_mm"] < 1.0
    pngs = sorted(p.name for p in Path(tmp_path).glob("*.png"))
    assert any(p.startswith("before_") for p in pngs) and any(p.startswith("after_") for p in pngs)


def test_bad_rig_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "notarig.obj"
    bad.write_text("v 0 0 0\n")
    with pytest.raises(demo.DemoError, match="Unsupported rig file"):
        demo.run(tmp_path / "out", rig=bad, render_images=False)
