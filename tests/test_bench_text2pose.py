"""`poseforge bench text2pose`: the edit measures on stand-in edits (a leak outside the edited part
is caught), the helpers, errors before any model loads, and the command end to end with --quick
on the shipped weights (skipped until they are there)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from poseforge.backend.bench import text2pose as bench
from poseforge.backend.cli import main
from poseforge.backend.rotations import axis_angle_to_quat, quat_to_matrix
from poseforge.backend.skeleton import JOINT_INDEX, forward_kinematics_np
from poseforge.backend.text.parts import part_joints
from poseforge.backend.weights import default_weights_dir


def rest(n: int = 1) -> np.ndarray:
    q = np.zeros((n, 22, 4))
    q[..., 0] = 1.0
    return q


def quat(axis, deg) -> np.ndarray:
    aa = torch.tensor(axis, dtype=torch.float32) * math.radians(deg)
    return axis_angle_to_quat(aa).numpy().astype(np.float64)


def fk(rot: np.ndarray) -> np.ndarray:
    mats = quat_to_matrix(torch.as_tensor(rot, dtype=torch.float32)).numpy()
    return forward_kinematics_np(mats, np.zeros((len(rot), 3)))[0]


def stand_in_edit(leak_deg: float = 0.0):
    """An 'edit' that raises the left arm (left shoulder rotated 100 degrees about +Z... whichever
    way lifts the wrist above the head) and optionally also turns the right elbow."""
    up = None
    for sign in (1, -1):
        q = rest()
        q[0, JOINT_INDEX["left_shoulder"]] = quat([0, 0, sign], 100)
        if fk(q)[0, JOINT_INDEX["left_wrist"], 1] > fk(q)[0, JOINT_INDEX["head"], 1]:
            up = q[0, JOINT_INDEX["left_shoulder"]]
    assert up is not None

    def edit(pose, instruction, samples, seed):
        rot = np.repeat(np.asarray(pose, np.float64)[None], samples, 0)
        rot[:, JOINT_INDEX["left_shoulder"]] = up
        if leak_deg:
            rot[:, JOINT_INDEX["right_elbow"]] = quat([0, 1, 0], leak_deg)
        return {"positions": fk(rot), "rotations": rot, "parts": ["left_arm"]}
    return edit


SPEC = [{"instruction": "raise the left arm above the head", "parts": ["left_arm"],
         "checks": [{"above": ["left_wrist", "head"]}]}]


def test_an_edit_confined_to_its_part_reads_zero_outside_and_passes():
    res = bench.run_edits(stand_in_edit(), rest(2), SPEC, samples=3)
    row = res["instructions"][0]
    assert row["pass_rate"] == 1.0 and row["pass_rate_before"] == 0.0
    assert row["max_outside_change_deg"] < 1e-3
    assert row["mean_inside_change_deg"] > 10.0                     # 100 degrees on 1 of 4 arm joints
    assert row["parts_as_expected"]
    assert res["summary"]["poses"] == 2 and res["summary"]["max_outside_change_deg"] < 1e-3


def test_a_change_leaking_outside_the_edited_part_is_measured():
    res = bench.run_edits(stand_in_edit(leak_deg=7.0), rest(1), SPEC, samples=2)
    assert res["instructions"][0]["max_outside_change_deg"] == pytest.approx(7.0, abs=0.01)


def test_unexpected_parts_are_flagged():
    spec = [dict(SPEC[0], parts=["right_arm"])]
    assert not bench.run_edits(stand_in_edit(), rest(1), spec, samples=1)["instructions"][0]["parts_as_expected"]


def test_builtin_edits_are_well_formed_and_name_their_parts():
    from poseforge.backend.bench.checks import validate_check
    from poseforge.backend.text.parts import parts_for_instruction
    assert 6 <= len(bench.EDITS) <= 10
    for spec in bench.EDITS:
        for c in spec["checks"]:
            validate_check(c, spec["instruction"])
        assert sorted(parts_for_instruction(spec["instruction"])) == sorted(spec["parts"]), spec["instruction"]
        part_joints(spec["parts"])


def test_rotation_change_and_helpers():
    q = quat([0, 1, 0], 90)
    assert bench.rotation_change_deg(q, rest(1)[0, 0]) == pytest.approx(90.0, abs=1e-4)
    assert bench.rotation_change_deg(q, -q) == pytest.approx(0.0, abs=1e-3)   # q and -q: one rotation
    table = bench.markdown_table(["a", "b"], [("x", 0.5), ("y", None)])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 0.500 |", "| y | - |"]
    suite = [{"prompt": str(i), "wording": "captioner" if i < 10 else "free"} for i in range(14)]
    picked = bench.quick_suite(suite, 6)
    assert {e["wording"] for e in picked} == {"captioner", "free"} and len(picked) == 6
    assert list(bench.evenly_spaced(10, 3)) == [0, 4, 9] and len(bench.evenly_spaced(2, 5)) == 2


def _suite(tmp_path) -> str:
    lines = [{"prompt": "The left hand is raised above the head.", "checks": [{"above": ["left_hand", "head"]}],
              "wording": "captioner"},
             {"prompt": "Crouch down low.", "checks": [{"bend_gt": ["left_knee", 60]}], "wording": "free"}]
    p = tmp_path / "suite.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(p)


@pytest.mark.parametrize("case", ["missing suite", "bad suite", "data not a cache", "samples 0"])
def test_the_command_refuses_bad_input_before_loading_models(tmp_path, capsys, case):
    out = tmp_path / "bench.json"
    argv = ["bench", "text2pose", "--prompts", _suite(tmp_path), "--out", str(out), "--quick"]
    if case == "missing suite":
        argv[3] = str(tmp_path / "nope.jsonl")
    elif case == "bad suite":
        (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "checks": [{"above": ["tail", "head"]}], '
                                            '"wording": "free"}\n')
        argv[3] = str(tmp_path / "bad.jsonl")
    elif case == "data not a cache":
        argv += ["--data", str(tmp_path)]
    else:
        argv += ["--samples", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("poseforge bench text2pose: error: ")
    assert not out.exists()


def test_quick_bench_end_to_end(tmp_path, capsys, monkeypatch):
    d = default_weights_dir()
    if not all((d / f"{n}.safetensors").is_file() for n in ("qposer", "text2pose", "dposer")):
        pytest.skip("no text-to-pose weights in the weights folder yet")
    monkeypatch.setenv("POSEFORGE_CACHE", str(tmp_path / "no-cache"))     # no canonical cache: rest pose
    out = tmp_path / "bench.json"
    assert main(["bench", "text2pose", "--prompts", _suite(tmp_path), "--out", str(out), "--quick",
                 "--samples", "2", "--device", "cpu"]) == 0
    text = capsys.readouterr()
    assert "| text to pose | value |" in text.out and "| edit instruction |" in text.out
    assert "no canonical cache" in text.err
    r = json.loads(out.read_text())
    for key in ("summary", "prompts", "latency", "plausibility", "edits", "targets", "weights", "notes"):
        assert key in r
    s = r["summary"]
    assert s["prompts"] == 2 and s["samples_per_prompt"] == 2
    assert set(s["pass_rate_by_wording"]) == {"captioner", "free"} and 0.0 <= s["pass_rate"] <= 1.0
    assert r["latency"]["median_s"] > 0 and r["latency"]["samples"] == 2
    pl = r["plausibility"]
    assert pl["generated"]["n"] == 4 and pl["random_codes"]["n"] == 64 and "mocap_test" not in pl
    e = r["edits"]
    assert e["base_poses"] == "the rest T-pose" and len(e["instructions"]) == len(bench.EDITS[::2])
    assert e["summary"]["max_outside_change_deg"] < 0.05                   # only the edited parts move
    assert all(row["mean_inside_change_deg"] > 0 for row in e["instructions"])
