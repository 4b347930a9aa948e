"""`poseforge generate | edit | variations | mix`: the pose JSON format, seeds, input pose files in
any joint order, one-line errors with status 2 that write nothing, and edits that change only
the named body part.  Tests that run the models use the shipped weights (skipped until they are
there)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from poseforge.backend.cli import main
from poseforge.backend.rotations import quat_to_matrix
from poseforge.backend.skeleton import JOINT_NAMES, forward_kinematics_np
from poseforge.backend.tasks import text2pose_cli as cli
from poseforge.backend.text.parts import BODY_PARTS
from poseforge.backend.weights import default_weights_dir


@pytest.fixture(scope="module")
def weights():
    """The text-to-pose weights the commands use by default (skip while they are not shipped)."""
    d = default_weights_dir()
    missing = [n for n in ("qposer", "text2pose") if not (d / f"{n}.safetensors").is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} weights in the weights folder yet")
    torch.set_num_threads(2)
    return d


def rest_pose() -> np.ndarray:
    q = np.zeros((22, 4))
    q[:, 0] = 1.0
    return q


def write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def angle_deg(a, b) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    dot = np.abs((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))
    return np.degrees(2 * np.arccos(np.clip(dot, 0.0, 1.0)))


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ----------------------------------------------------------------------------------------------
# pose files (no model)
# ----------------------------------------------------------------------------------------------

def test_a_pose_in_another_joint_order_is_reordered_by_name():
    g = np.random.default_rng(0)
    pose = g.normal(size=(22, 4))
    perm = g.permutation(22)
    data = {"joints": [JOINT_NAMES[i] for i in perm], "rotations": pose[perm].tolist()}
    np.testing.assert_allclose(cli.pose_from_json(data), pose)
    # a 1 x 22 x 4 list, a candidate list with --index, and no "joints" (canonical order)
    np.testing.assert_allclose(cli.pose_from_json({"joints": data["joints"], "rotations": [data["rotations"]]}), pose)
    cands = np.stack([pose, -pose, 2 * pose])
    np.testing.assert_allclose(cli.pose_from_json({"rotations": cands.tolist()}, index=2), 2 * pose)
    np.testing.assert_allclose(cli.pose_from_json({"rotations": cands.tolist()}, index=-1), 2 * pose)


@pytest.mark.parametrize("data, words", [
    ({"joints": list(JOINT_NAMES[:-1]) + ["right_hand"], "rotations": rest_pose().tolist()}, ["unknown", "right_hand"]),
    ({"joints": list(JOINT_NAMES[:-1]), "rotations": rest_pose()[:-1].tolist()}, ["missing", "right_wrist"]),
    ({"joints": list(JOINT_NAMES[:-1]) + ["head"], "rotations": rest_pose().tolist()}, ["more than once", "head"]),
    ({"joints": list(JOINT_NAMES)}, ["rotations"]),
    ({"joints": list(JOINT_NAMES), "rotations": rest_pose()[:, :3].tolist()}, ["22 x 3"]),
    ({"joints": list(JOINT_NAMES), "rotations": [[1, 0, 0]] * 22}, ["22 x 3"]),
    ({"joints": list(JOINT_NAMES), "rotations": [[1, 0, 0, 0]] * 21 + [[1, 0, 0]]}, ["same length"]),
    ({"joints": list(JOINT_NAMES), "rotations": [["a", 0, 0, 0]] * 22}, ["numbers"]),
    ([[1, 0, 0, 0]] * 22, ["JSON object"]),
])
def test_malformed_poses_are_rejected_with_the_problem_named(data, words):
    with pytest.raises(cli.Text2PoseCliError) as err:
        cli.pose_from_json(data)
    for w in words:
        assert w in str(err.value)


def test_the_output_replaces_an_existing_file_only_when_complete(tmp_path, monkeypatch):
    out = tmp_path / "poses.json"
    out.write_text("old")

    def fail(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        cli.write_json_atomic(out, {"rotations": np.ones((1, 22, 4))})
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["poses.json"]
    monkeypatch.undo()
    cli.write_json_atomic(out, {"rotations": np.ones((1, 22, 4), np.float32)})
    assert json.loads(out.read_text())["rotations"] == np.ones((1, 22, 4)).tolist()
    assert os.listdir(tmp_path) == ["poses.json"]


# ----------------------------------------------------------------------------------------------
# bad input on the command line: one line on stderr, status 2, nothing written (no model)
# ----------------------------------------------------------------------------------------------

def _bad_cases(tmp_path):
    good = write(tmp_path / "pose.json", {"joints": list(JOINT_NAMES), "rotations": rest_pose().tolist()})
    (tmp_path / "broken.json").write_text('{"joints": [')
    wrong = write(tmp_path / "wrong.json", {"joints": list(JOINT_NAMES[:-1]) + ["RightHand"],
                                            "rotations": rest_pose().tolist()})
    return {
        "empty prompt": (["generate", "--prompt", "  ", "--samples", 2], "--prompt is empty"),
        "samples 0": (["generate", "--prompt", "wave", "--samples", 0], "--samples must be 1 to 64"),
        "samples 65": (["generate", "--prompt", "wave", "--samples", 65], "--samples must be 1 to 64"),
        "missing file": (["edit", "--pose", tmp_path / "nope.json", "--prompt", "wave"], "no such file"),
        "malformed JSON": (["edit", "--pose", tmp_path / "broken.json", "--prompt", "wave"], "not valid JSON"),
        "wrong joint name": (["edit", "--pose", wrong, "--prompt", "wave"], "'RightHand'"),
        "index out of range": (["edit", "--pose", good, "--index", 3, "--prompt", "wave"], "holds 1 pose"),
        "edit empty prompt": (["edit", "--pose", good, "--prompt", ""], "--prompt is empty"),
        "unknown part": (["edit", "--pose", good, "--prompt", "wave", "--parts", "arms,tail"], "'tail'"),
        "unknown pinned joint": (["edit", "--pose", good, "--prompt", "wave", "--pinned", "left_hand"],
                                 "'left_hand'"),
        "all pinned": (["edit", "--pose", good, "--prompt", "wave", "--parts", "left_arm", "--pinned",
                        "left_wrist"], "pinned"),
        "strength": (["variations", "--pose", good, "--strength", 0], "--strength"),
        "mix no parts": (["mix", "--pose", good, "--pose-b", good, "--parts", ""], "at least one body part"),
        "mix missing b": (["mix", "--pose", good, "--pose-b", tmp_path / "nope.json", "--parts", "arms"],
                          "--pose-b"),
        "out is the input": (["edit", "--pose", good, "--prompt", "wave", "--out-same"], "--out must differ"),
    }


@pytest.mark.parametrize("case", ["empty prompt", "samples 0", "samples 65", "missing file", "malformed JSON",
                                  "wrong joint name", "index out of range", "edit empty prompt", "unknown part",
                                  "unknown pinned joint", "all pinned", "strength", "mix no parts",
                                  "mix missing b", "out is the input"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    argv, message = _bad_cases(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "out.json"
    if "--out-same" in argv:
        argv = [a for a in argv if a != "--out-same"] + ["--out", tmp_path / "pose.json"]
    else:
        argv = argv + ["--out", out]
    rc, stdout, stderr = run(capsys, *argv)
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"poseforge {argv[0]}: error: ")
    assert message in lines[0]
    assert sorted(os.listdir(tmp_path)) == before        # no output, no temporary file
    assert json.loads((tmp_path / "pose.json").read_text())["joints"] == list(JOINT_NAMES)


def test_help_lists_the_pose_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("generate", "edit", "variations", "mix"):
        assert cmd in text


# ----------------------------------------------------------------------------------------------
# with the models
# ----------------------------------------------------------------------------------------------

def test_generate_writes_the_documented_pose_file(weights, tmp_path, capsys):
    out = tmp_path / "sub" / "poses.json"
    rc, stdout, stderr = run(capsys, "generate", "--prompt", "raise the left arm", "--samples", 3, "--seed", 1,
                             "--out", out, "--device", "cpu")
    assert rc == 0, stderr
    assert "wrote" in stdout
    d = json.loads(out.read_text())
    assert d["joints"] == list(JOINT_NAMES)
    pos, rot = np.array(d["positions"]), np.array(d["rotations"])
    assert pos.shape == (3, 22, 3) and rot.shape == (3, 22, 4)
    np.testing.assert_allclose(np.linalg.norm(rot, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pos[:, 0], 0.0, atol=1e-6)                  # pelvis at the origin
    # the positions are the forward kinematics of the rotations (metres, Y up: a standing pose's
    # head is well above the pelvis)
    fk = forward_kinematics_np(quat_to_matrix(torch.as_tensor(rot, dtype=torch.float32)).numpy(),
                               np.zeros((3, 3)))[0]
    np.testing.assert_allclose(pos, fk, atol=1e-4)
    assert (pos[:, JOINT_NAMES.index("head"), 1] > 0.3).all()
    assert d["prompt"] == "raise the left arm" and d["seed"] == 1
    assert len(d["match"]) == 3 and len(d["implausibility"]) == 3


def test_the_same_seed_gives_the_same_file_and_another_seed_other_poses(weights, tmp_path, capsys):
    rots = []
    for i, seed in enumerate((5, 5, 6)):
        out = tmp_path / f"p{i}.json"
        rc, _, stderr = run(capsys, "generate", "--prompt", "squat with both arms forward", "--samples", 2,
                            "--seed", seed, "--out", out, "--device", "cpu")
        assert rc == 0, stderr
        rots.append(np.array(json.loads(out.read_text())["rotations"]))
    np.testing.assert_array_equal(rots[0], rots[1])
    assert np.abs(rots[0] - rots[2]).max() > 1e-3


def test_an_edit_changes_only_the_named_part(weights, tmp_path, capsys):
    # the input: the rest T-pose with its joints listed in another order
    perm = np.random.default_rng(1).permutation(22)
    pose = write(tmp_path / "tpose.json", {"joints": [JOINT_NAMES[i] for i in perm],
                                           "rotations": rest_pose()[perm].tolist()})
    out = tmp_path / "edited.json"
    rc, stdout, stderr = run(capsys, "edit", "--pose", pose, "--prompt", "raise the left arm above the head",
                             "--parts", "left_arm", "--samples", 2, "--seed", 0, "--out", out, "--device", "cpu")
    assert rc == 0, stderr
    d = json.loads(out.read_text())
    rot = np.array(d["rotations"])
    assert rot.shape == (2, 22, 4) and d["joints"] == list(JOINT_NAMES)
    assert d["parts"] == ["left_arm"] and d["changed"] == list(BODY_PARTS["left_arm"])
    change = angle_deg(rot, rest_pose()[None])                              # (2, 22) degrees
    arm = [JOINT_NAMES.index(j) for j in BODY_PARTS["left_arm"]]
    others = [j for j in range(22) if j not in arm]
    assert change[:, others].max() < 0.05
    assert change[:, arm].max() > 5.0


def test_variations_and_mix_write_pose_files(weights, tmp_path, capsys):
    g = tmp_path / "g.json"
    assert run(capsys, "generate", "--prompt", "the arms are crossed", "--samples", 2, "--out", g,
               "--device", "cpu")[0] == 0
    v = tmp_path / "v.json"
    rc, _, stderr = run(capsys, "variations", "--pose", g, "--index", 1, "--strength", 0.3, "--samples", 2,
                        "--seed", 3, "--out", v, "--device", "cpu")
    assert rc == 0, stderr
    dv = json.loads(v.read_text())
    base = np.array(json.loads(g.read_text())["rotations"])[1]
    for cand, changed in zip(np.array(dv["rotations"]), dv["changed"]):
        kept = [i for i, j in enumerate(JOINT_NAMES) if j not in changed]
        assert angle_deg(cand[kept], base[kept]).max() < 0.05
    m = tmp_path / "m.json"
    tpose = write(tmp_path / "t.json", {"joints": list(JOINT_NAMES), "rotations": [rest_pose().tolist()]})
    rc, _, stderr = run(capsys, "mix", "--pose", tpose, "--pose-b", g, "--parts", "arms", "--out", m,
                        "--device", "cpu")
    assert rc == 0, stderr
    dm = json.loads(m.read_text())
    assert np.array(dm["rotations"]).shape == (1, 22, 4) and dm["parts"] == ["arms"]
