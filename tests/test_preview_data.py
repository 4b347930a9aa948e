"""Training data of the textured preview (DMM): ``poseforge data preview-set`` end to end on a tiny
set (the default body, one train and one test clip of 3 frames at 48x48, Cycles), the reader and
the torch Dataset, and clear errors for missing or broken datasets.

The generation runs the real command in a subprocess (a fresh Blender module) on a small canonical
mocap cache written here, so it needs neither ../shared/data nor a prior ``poseforge data build``.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poseforge.backend.cli import main as cli_main
from poseforge.backend.data.dataset import split_of
from poseforge.backend.data.preview import (JOINT_LABEL, NUM_PARTS, PART_COLORS, PART_NAMES, PreviewDataError,
                                            PreviewWindows, clip_names, decode_label_colors, load_clip, load_index)
from poseforge.backend.retarget import np_axis_angle_to_matrix, np_matrix_to_quat
from poseforge.backend.skeleton import JOINT_INDEX, NUM_JOINTS

HAS_BPY = importlib.util.find_spec("bpy") is not None
needs_bpy = pytest.mark.skipif(not HAS_BPY, reason="needs Blender's Python module (bpy)")
ROOT = Path(__file__).resolve().parents[1]


# --- a small canonical mocap cache (the format of `poseforge data build`) ----------------------------

def _motion(seed: int, frames: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A smooth made-up motion: arms and legs swinging with clip-specific phases, walking forward."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / 30.0
    amp = rng.uniform(0.2, 0.9, (1, NUM_JOINTS, 3)) * (rng.random((1, NUM_JOINTS, 3)) < 0.5)
    freq, phase = rng.uniform(0.5, 2.0, (1, NUM_JOINTS, 3)), rng.uniform(0, 2 * np.pi, (1, NUM_JOINTS, 3))
    aa = amp * np.sin(2 * np.pi * freq * t[..., None] + phase)
    aa[:, JOINT_INDEX["pelvis"]] *= 0.2
    for j in ("left_shoulder", "right_shoulder"):  # arms down from the T-pose, more or less
        aa[:, JOINT_INDEX[j], 2] += 1.1 * (1 if j.startswith("left") else -1) * (seed % 2)
    rot = np_matrix_to_quat(np_axis_angle_to_matrix(aa.reshape(-1, 3))).reshape(frames, NUM_JOINTS, 4)
    root = np.stack([0.1 * np.sin(t[:, 0]), np.full(frames, 0.93), 0.8 * t[:, 0]], axis=1)
    return rot.astype(np.float32), root.astype(np.float32)


@pytest.fixture(scope="module")
def mocap(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("canonical")
    clips = {}
    for seed, name in enumerate(["dataset-2_walk_normal_001", "dataset-2_dance_happy_005"]):
        rot, root = _motion(seed)
        np.savez(d / f"{name}.npz", rotations=rot, root=root, fps=np.float32(30))
        clips[name] = {"file": f"{name}.npz", "frames": len(rot), "split": split_of(name)}
    (d / "index.json").write_text(json.dumps({"version": 1, "fps": 30, "clips": clips}))
    return d


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poseforge.backend.cli", "data", "preview-set", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def preview_set(mocap, tmp_path_factory) -> Path:
    if not HAS_BPY:
        pytest.skip("needs Blender's Python module (bpy)")
    out = tmp_path_factory.mktemp("preview") / "set"
    res = _run("--out", str(out), "--clips", "2", "--frames", "3", "--resolution", "48", "--seed", "0",
               "--mocap", str(mocap), "--character", "default", "--samples", "8")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 train + 1 test clips" in res.stdout
    return out


# --- the generated set --------------------------------------------------------------------------------

def test_index_lists_a_train_and_a_test_clip(preview_set):
    index = load_index(preview_set)
    assert (index["version"], index["resolution"], index["fps"], index["parts"]) == (1, 48, 30, NUM_PARTS)
    assert sorted(c["split"] for c in index["clips"]) == ["test", "train"]
    assert "preview-set" in index["command"]
    for c in index["clips"]:
        assert c["frames"] == 3 and c["character"] == "default"
        assert {"texture", "camera", "light", "background"} <= set(c)
        assert (preview_set / f"{c['name']}.npz").is_file()
        # the reference pose is a mocap frame outside the clip's window
        lo, hi = c["motion_frames"]
        assert hi - lo == 3 and not lo <= c["ref_frame"] < hi
    assert not list(preview_set.glob("*.tmp"))
    assert index["render_seconds_per_frame"]["rgb_s_per_frame"] > 0


def test_held_out_clip_uses_unseen_motion_and_texture(preview_set, mocap):
    index = load_index(preview_set)
    by = {c["split"]: c for c in index["clips"]}
    train, test = by["train"], by["test"]
    assert train["motion"] != test["motion"]
    assert split_of(test["motion"]) == "test" and split_of(train["motion"]) == "train"
    assert train["texture"]["seed"] != test["texture"]["seed"]
    assert train["texture"]["materials"] != test["texture"]["materials"]
    a = load_clip(preview_set, train["name"], index)
    b = load_clip(preview_set, test["name"], index)
    assert not np.array_equal(a["labels"], b["labels"])
    assert not np.array_equal(a["rgb"], b["rgb"])


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (4-neighbours)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def test_label_maps_show_the_body_parts_on_the_silhouette(preview_set):
    from poseforge.rig.preview_render import background_from_description  # needs bpy (fixture skips)

    index = load_index(preview_set)
    for c in index["clips"]:
        arr = load_clip(preview_set, c["name"], index)
        bg = background_from_description(c["background"], 48)
        for rgb, lab in [(arr["ref_rgb"], arr["ref_labels"])] + list(zip(arr["rgb"], arr["labels"])):
            ids = set(np.unique(lab).tolist())
            assert 0 in ids, "no background in the label map"
            assert len(ids - {0}) >= 6, f"only parts {sorted(ids)} visible"
            assert ids <= set(range(NUM_PARTS + 1))
            # the RGB frame's foreground (pixels off the background, anti-aliased edges included)
            # covers the labelled pixels, and lies on them give or take the one-pixel edge
            fg_rgb = np.abs(rgb / 255.0 - bg).max(-1) > 0.03
            fg_lab = lab > 0
            covered = (fg_rgb & fg_lab).sum() / fg_lab.sum()
            near = (fg_rgb & _grow(fg_lab)).sum() / fg_rgb.sum()
            assert covered > 0.95 and near > 0.9, f"{c['name']}: silhouettes agree on {covered:.0%} / {near:.0%}"
        # the reference shows another pose than every frame of the clip
        assert all(not np.array_equal(arr["ref_labels"], lab) for lab in arr["labels"])
        # the head is above the feet (image rows grow downward)
        lab = arr["labels"][0]
        head = np.nonzero(lab == PART_NAMES.index("head") + 1)[0]
        feet = np.nonzero(np.isin(lab, [PART_NAMES.index("left_foot") + 1, PART_NAMES.index("right_foot") + 1]))[0]
        if len(head) and len(feet) and c["camera"]["elevation"] < 60:
            assert head.mean() < feet.mean()


def test_reader_and_dataset_shapes(preview_set):
    import torch

    index = load_index(preview_set)
    name = clip_names(preview_set, "train")[0]
    arr = load_clip(preview_set, name)
    assert arr["rgb"].shape == (3, 48, 48, 3) and arr["labels"].shape == (3, 48, 48)
    assert arr["ref_rgb"].shape == (48, 48, 3) and arr["ref_labels"].shape == (48, 48)
    assert all(a.dtype == np.uint8 for a in arr.values())
    ds = PreviewWindows(preview_set, "train", window=2, stride=1)
    assert len(ds) == 2
    ref_rgb, ref_lab, rgb, lab = ds[1]
    assert ref_rgb.shape == (3, 48, 48) and ref_rgb.dtype == torch.float32
    assert ref_lab.shape == (48, 48) and ref_lab.dtype == torch.uint8
    assert rgb.shape == (2, 3, 48, 48) and lab.shape == (2, 48, 48)
    assert -1.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
    # item 1 is frames 1..2 of the clip, unchanged apart from the scaling
    assert torch.equal(lab, torch.from_numpy(arr["labels"][1:3]))
    assert torch.allclose((rgb[0].permute(1, 2, 0) + 1) * 127.5, torch.from_numpy(arr["rgb"][1]).float(), atol=1e-3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch[2].shape == (2, 2, 3, 48, 48)
    assert len(PreviewWindows(preview_set, "test", window=3)) == 1
    assert index["resolution"] == 48


def test_real_character_labels_decode(mocap, characters_dir, tmp_path):
    if not HAS_BPY:
        pytest.skip("needs Blender's Python module (bpy)")
    path = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    if not path.is_file():
        pytest.skip("Male_Casual.blend not in the shared characters")
    out = tmp_path / "real"
    res = _run("--out", str(out), "--clips", "1", "--frames", "2", "--resolution", "32", "--mocap", str(mocap),
               "--character", str(path), "--samples", "4")
    assert res.returncode == 0, res.stderr[-2000:]
    index = load_index(out)
    (c,) = index["clips"]
    assert c["character"] == "Male_Casual" and c["split"] == "train"
    arr = load_clip(out, c["name"], index)
    assert len(set(np.unique(arr["labels"]).tolist()) - {0}) >= 6
    # every material of the character was re-textured
    assert len(c["texture"]["materials"]) >= 2


# --- the command's errors --------------------------------------------------------------------------------

@needs_bpy
def test_command_refuses_bad_output_or_mocap(mocap, tmp_path, capsys):
    assert cli_main(["data", "preview-set", "--out", str(ROOT / "preview_out"), "--clips", "1",
                     "--mocap", str(mocap), "--character", "default"]) == 2
    assert "inside the PoseForge checkout" in capsys.readouterr().err
    assert not (ROOT / "preview_out").exists()
    assert cli_main(["data", "preview-set", "--out", str(tmp_path / "x"), "--mocap", str(tmp_path / "nothing"),
                     "--character", "default"]) == 2
    assert "no canonical cache" in capsys.readouterr().err
    assert cli_main(["data", "preview-set", "--out", str(tmp_path / "x"), "--mocap", str(mocap),
                     "--character", str(tmp_path / "missing.blend")]) == 2
    assert "no character file" in capsys.readouterr().err
    assert cli_main(["data", "preview-set", "--out", str(tmp_path / "x"), "--mocap", str(mocap), "--frames", "100",
                     "--character", "default"]) == 2
    assert "longer than 100 frames" in capsys.readouterr().err
    assert not (tmp_path / "x" / "index.json").exists()


@needs_bpy
def test_plan_keeps_test_motions_and_texture_seeds_out_of_training():
    from poseforge.rig.preview_render import plan_clips

    names = [f"dataset-2_walk_normal_{k:03d}" for k in range(1, 31)]
    index = {"clips": {n: {"frames": 50, "split": split_of(n)} for n in names}}
    plan = plan_clips(index, 60, 10, 16, seed=4)
    train = [p for p in plan if p["split"] == "train"]
    test = [p for p in plan if p["split"] == "test"]
    assert (len(train), len(test)) == (50, 10)
    assert not {p["motion"] for p in train} & {p["motion"] for p in test}
    assert not {p["texture_seed"] for p in train} & {p["texture_seed"] for p in test}
    assert len({p["texture_seed"] for p in plan}) == 60
    assert all(split_of(p["motion"]) == "test" for p in test)
    # the 6 test motions are all used before any repeats
    assert len({p["motion"] for p in test}) == 6


# --- reader errors (no Blender needed) ---------------------------------------------------------------------

def _fake_set(d: Path, T: int = 4, R: int = 16) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    clips = []
    for split in ("train", "test"):
        name = f"{split}_0000_default"
        np.savez_compressed(d / f"{name}.npz", rgb=rng.integers(0, 256, (T, R, R, 3), dtype=np.uint8),
                            labels=rng.integers(0, NUM_PARTS + 1, (T, R, R), dtype=np.uint8),
                            ref_rgb=rng.integers(0, 256, (R, R, 3), dtype=np.uint8),
                            ref_labels=rng.integers(0, NUM_PARTS + 1, (R, R), dtype=np.uint8))
        clips.append({"name": name, "character": "default", "motion": "m", "frames": T, "split": split,
                      "texture": {}, "camera": {}})
    (d / "index.json").write_text(json.dumps({"version": 1, "resolution": R, "fps": 30, "parts": NUM_PARTS,
                                              "command": "test", "clips": clips}))
    return d


def test_missing_or_corrupt_dataset_gives_clear_errors(tmp_path):
    with pytest.raises(PreviewDataError, match="missing index.json"):
        load_index(tmp_path / "nowhere")
    with pytest.raises(PreviewDataError, match="missing index.json"):
        PreviewWindows(tmp_path / "nowhere")
    d = _fake_set(tmp_path / "set")
    assert len(PreviewWindows(d, "train", window=2)) == 2
    with pytest.raises(PreviewDataError, match="unknown split"):
        PreviewWindows(d, "val")
    with pytest.raises(PreviewDataError, match="no train window of 5 frames"):
        PreviewWindows(d, "train", window=5)
    with pytest.raises(PreviewDataError, match="no clip 'other'"):
        load_clip(d, "other")
    # a missing clip file
    (d / "test_0000_default.npz").unlink()
    with pytest.raises(PreviewDataError, match="test_0000_default.npz is missing"):
        load_clip(d, "test_0000_default")
    # a corrupt clip file
    (d / "test_0000_default.npz").write_bytes(b"not a zip file")
    with pytest.raises(PreviewDataError, match="unreadable clip file"):
        PreviewWindows(d, "test", window=2)[0]
    # wrong shapes / missing arrays
    np.savez(d / "test_0000_default.npz", rgb=np.zeros((4, 16, 16, 3), np.uint8), labels=np.zeros((3, 16, 16), np.uint8),
             ref_rgb=np.zeros((16, 16, 3), np.uint8), ref_labels=np.zeros((16, 16), np.uint8))
    with pytest.raises(PreviewDataError, match=r"'labels' is uint8 \(3, 16, 16\), expected uint8 \(4, 16, 16\)"):
        load_clip(d, "test_0000_default")
    np.savez(d / "test_0000_default.npz", rgb=np.zeros((4, 16, 16, 3), np.uint8))
    with pytest.raises(PreviewDataError, match="no 'labels' array"):
        load_clip(d, "test_0000_default")
    # a broken index
    (d / "index.json").write_text("{")
    with pytest.raises(PreviewDataError, match="unreadable index"):
        load_index(d)
    (d / "index.json").write_text(json.dumps({"version": 1, "resolution": 16, "parts": 3, "clips": []}))
    with pytest.raises(PreviewDataError, match="3 parts"):
        load_index(d)


def test_parts_cover_every_joint_and_decode_exactly():
    assert len(PART_NAMES) == NUM_PARTS == 15
    assert set(JOINT_LABEL.tolist()) == set(range(1, NUM_PARTS + 1))
    assert JOINT_LABEL[JOINT_INDEX["left_elbow"]] == PART_NAMES.index("left_forearm") + 1
    ids = np.arange(NUM_PARTS + 1, dtype=np.uint8).repeat(3).reshape(4, 12)
    rgba = np.zeros((4, 12, 4), np.uint8)
    rgba[..., :3] = PART_COLORS[ids]
    rgba[..., 3] = np.where(ids > 0, 255, 0)
    rgba[..., :3] = np.clip(rgba[..., :3].astype(int) + np.random.default_rng(0).integers(-3, 4, (4, 12, 3)), 0, 255)
    assert np.array_equal(decode_label_colors(rgba), ids)
    blended = rgba.copy()
    blended[1, 1, :3] = (PART_COLORS[1].astype(int) + PART_COLORS[2]) // 2  # an anti-aliased edge pixel
    blended[1, 1, 3] = 255
    with pytest.raises(PreviewDataError, match="match no part colour"):
        decode_label_colors(blended)
