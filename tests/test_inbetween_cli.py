"""`poseforge inbetween --bvh IN --keys ... --out OUT`: bad input, the file round trip, end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poseforge.backend import service
from poseforge.backend.cli import build_parser
from poseforge.backend.data.bvh import bvh_world, read_bvh, write_bvh
from poseforge.backend.data.mocap import load_canonical_motion
from poseforge.backend.retarget import np_axis_angle_to_matrix, np_matrix_to_quat, np_quat_to_matrix
from poseforge.backend.skeleton import JOINT_NAMES, forward_kinematics_np
from poseforge.backend.tasks.inbetween_cli import InbetweenCliError, parse_keys

UNMAPPED = "spine2"


def write_clip(folder: Path, T: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A canonical-skeleton BVH of smooth motion (metres, Y up) and a BVH preset for it that
    leaves ``spine2`` unmapped."""
    g = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, T)[:, None, None]
    aa = 0.3 * np.sin(t + g.uniform(0, 6, (1, 22, 3))) * g.uniform(0.2, 1, (1, 22, 3))
    rot = np_matrix_to_quat(np_axis_angle_to_matrix(aa))
    root = np.stack([np.linspace(0, 1.2, T), np.full(T, 0.9), np.linspace(0, 0.5, T)], 1)
    clip = write_bvh(folder / "clip.bvh", rot, root, fps=30.0)
    bones = {j: j for j in JOINT_NAMES if j != UNMAPPED}
    preset = folder / "canonical_bvh.json"
    preset.write_text(json.dumps({"name": "test canonical BVH", "kind": "bvh", "up": "Y",
                                  "reference": "rest", "bones": bones}))
    return clip, preset


def interpolating_job(request, ctx):
    """Stand-in for the "inbetween" job that follows its contract with key interpolation."""
    from poseforge.backend.tasks.inbetween import interpolate_keys

    q = np.asarray(request["rotations"], np.float32)
    r = np.asarray(request["root"], np.float32)
    k = np.asarray(request["known"], bool)
    kr = np.asarray(request["known_root"], bool)
    assert q.shape[0] == r.shape[0] == k.shape[0] == kr.shape[0] == len(request["fill"])
    iq, ir = interpolate_keys(q, r, k, kr)
    iq = np.where(k[..., None], q, iq)
    ir = np.where(kr[:, None], r, ir)
    h = 1 + int(request["hypotheses"])
    ctx.progress(1.0, "filled")
    return {"rotations": np.stack([iq] * h), "root": np.stack([ir] * h), "hypotheses": h, "gaps": []}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    args = build_parser().parse_args(["inbetween", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_parse_keys():
    assert parse_keys("30, 0,60", 61) == [0, 30, 60]
    for text, match in [("0", "at least two"), ("0,x", "not a whole"), ("0,1.5", "not a whole"),
                        ("0,61", "out of range"), ("-1,5", "out of range"), ("0,5,5", "more than once"),
                        ("0,,5", "empty")]:
        with pytest.raises(InbetweenCliError, match=match):
            parse_keys(text, 61)


@pytest.mark.parametrize("keys, message", [("0", "at least two"), ("0,abc", "not a whole"),
                                           ("0,40", "out of range"), ("0,10,10", "more than once")])
def test_bad_keys_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, keys, message):
    clip, preset = write_clip(tmp_path)
    out = tmp_path / "out.bvh"
    code, _, err = run_cli(["--bvh", str(clip), "--keys", keys, "--out", str(out), "--preset", str(preset)], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_malformed_bvh_unknown_skeleton_and_missing_file_exit_2(tmp_path, capsys):
    out = tmp_path / "out.bvh"
    bad = tmp_path / "bad.bvh"
    bad.write_text("HIERARCHY\nROOT hips\n{\n OFFSET 0 0\n")
    code, _, err = run_cli(["--bvh", str(bad), "--keys", "0,5", "--out", str(out)], capsys)
    assert code == 2 and "bad.bvh" in err and len(err.strip().splitlines()) == 1
    clip, _ = write_clip(tmp_path)  # canonical joint names: no shipped BVH preset matches them
    code, _, err = run_cli(["--bvh", str(clip), "--keys", "0,5", "--out", str(out)], capsys)
    assert code == 2 and "preset" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["--bvh", str(tmp_path / "nope.bvh"), "--keys", "0,5", "--out", str(out)], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run_cli(["--bvh", str(clip), "--keys", "0,5", "--out", str(out), "--preset", "no_such"], capsys)
    assert code == 2 and "no_such" in err
    assert not out.exists()


def test_a_failed_job_leaves_an_existing_output_untouched(tmp_path, capsys, monkeypatch):
    clip, preset = write_clip(tmp_path)
    out = tmp_path / "out.bvh"
    out.write_text("previous result\n")

    def failing_job(request, ctx):
        raise service.JobError("The gap from frame 0 to 39 is longer than the model's 20 frames: add a key in between")
    monkeypatch.setattr(service, "resolve_task", lambda kind: failing_job)
    code, _, err = run_cli(["--bvh", str(clip), "--keys", "0,39", "--out", str(out), "--preset", str(preset)], capsys)
    assert code == 2 and "add a key in between" in err
    assert out.read_text() == "previous result\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def check_output(src: Path, out: Path, keys: list[int], unmapped: list[str]) -> None:
    """Same joints, channels and frames; key frames and frames outside the keys verbatim;
    unmapped joints' channels unchanged; the filled frames differ from the input."""
    a, b = read_bvh(src), read_bvh(out)
    assert a.names == b.names and a.channels == b.channels and a.num_frames == b.num_frames
    assert np.allclose(a.offsets, b.offsets) and a.frame_time == b.frame_time
    la = [s for s in src.read_text().splitlines() if s.strip()]
    lb = [s for s in out.read_text().splitlines() if s.strip()]
    start = next(i for i, s in enumerate(la) if s.strip().lower().startswith("frame time")) + 1
    assert la[:start] == lb[:start]
    same = [t for t in range(a.num_frames) if t in keys or t < keys[0] or t > keys[-1]]
    assert all(la[start + t] == lb[start + t] for t in same)
    pa, pb = bvh_world(a)[1], bvh_world(b)[1]
    assert np.abs(pa[keys] - pb[keys]).max() < 1e-4 * max(1.0, np.abs(pa).max())
    filled = [t for t in range(keys[0], keys[-1]) if t not in keys]
    assert np.abs(pa[filled] - pb[filled]).max() > 1e-3 * np.abs(pa).max()  # really re-made
    for name in unmapped:
        j = a.names.index(name)
        assert np.allclose(a.rotations[:, j], b.rotations[:, j], atol=1e-6)


def test_canonical_bvh_round_trip_with_a_stand_in_job(tmp_path, capsys, monkeypatch):
    clip, preset = write_clip(tmp_path)
    monkeypatch.setattr(service, "resolve_task", lambda kind: interpolating_job)
    out = tmp_path / "sub" / "out.bvh"
    keys = [3, 15, 30]
    code, stdout, err = run_cli(["--bvh", str(clip), "--keys", "30,3,15", "--out", str(out), "--preset",
                                 str(preset)], capsys)
    assert code == 0, err
    assert "wrote" in stdout
    check_output(clip, out, keys, [UNMAPPED])
    # the filled frames, read back onto the canonical body, are what the job returned
    src = load_canonical_motion(clip, preset=str(preset), fps=None)
    got = load_canonical_motion(out, preset=str(preset), fps=None)
    known = np.zeros(28, bool)
    known[np.array(keys) - 3] = True
    job = interpolating_job({"rotations": src.rotations[3:31], "root": src.root[3:31], "hypotheses": 0,
                             "known": np.repeat(known[:, None], 22, 1), "known_root": known,
                             "fill": np.ones(28, bool)}, service.JobContext("t", lambda e: None))
    want = forward_kinematics_np(np_quat_to_matrix(job["rotations"][0]), job["root"][0])[0]
    have = got.joint_positions()[3:31]
    mapped = [i for i, j in enumerate(JOINT_NAMES) if j not in (UNMAPPED, "spine3")]
    assert np.abs(want[:, mapped] - have[:, mapped]).max() < 1e-4


def test_bandai_round_trip_with_a_stand_in_job(bandai_dir, tmp_path, capsys, monkeypatch):
    clip = bandai_dir / "data" / "dataset-2_walk_normal_005.bvh"
    monkeypatch.setattr(service, "resolve_task", lambda kind: interpolating_job)
    out = tmp_path / "walk.bvh"
    code, _, err = run_cli(["--bvh", str(clip), "--keys", "10,40,70", "--out", str(out)], capsys)
    assert code == 0, err
    check_output(clip, out, [10, 40, 70], ["joint_Root"])


def test_end_to_end_with_a_tiny_gfpose(bandai_dir, tmp_path, capsys):
    import torch

    if "inbetween" not in service.TASKS:
        pytest.skip("the 'inbetween' job is not registered in backend/service.py yet")
    from poseforge.backend.models.gfpose import GFPose, GFPoseConfig
    from poseforge.backend.weights import save_model

    torch.manual_seed(0)
    torch.set_num_threads(2)
    cfg = GFPoseConfig(width=32, layers=1, heads=2)
    save_model("gfpose", GFPose(cfg).eval(), cfg, {"note": "tiny random test model"}, tmp_path / "w")
    clip = bandai_dir / "data" / "dataset-2_walk_normal_005.bvh"
    out = tmp_path / "out.bvh"
    base = ["--bvh", str(clip), "--out", str(out), "--weights-dir", str(tmp_path / "w"), "--device", "cpu"]
    code, _, err = run_cli(base + ["--keys", "0,30,60"], capsys)
    assert code == 0, err
    check_output(clip, out, [0, 30, 60], ["joint_Root"])
    out.unlink()
    code, _, err = run_cli(base + ["--keys", "0,30,60", "--hypothesis", "2", "--seed", "1", "--foot-contact"], capsys)
    assert code == 0, err
    check_output(clip, out, [0, 30, 60], ["joint_Root"])
    out.unlink()
    # a gap longer than the model's window: the job's message, nothing written
    code, _, err = run_cli(base + ["--keys", f"0,{cfg.window + 20}"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not out.exists()
