"""Render Textured Preview in Blender (bpy in background mode: the blocking path of the job runner).

Most tests answer the ``preview`` job with a scripted backend that reads the request's inputs
like the real job and writes a placeholder file, so they check what the operator renders and
sends (label maps, reference, size, frame rate, output path), that the animator's scene is left
exactly as it was, and how bad input is refused.  One test runs the real job with a tiny random
DMM (junk pixels, the whole path) and opens the mp4 it writes.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import poseforge  # noqa: E402
from poseforge.backend.data.preview import PART_NAMES  # noqa: E402
from poseforge.backend.service import TASKS, Event  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCH_HERE = importlib.util.find_spec("torch") is not None
BACKEND_PYTHON = os.environ.get("POSEFORGE_TEST_BACKEND_PYTHON", "")
PART = {name: i + 1 for i, name in enumerate(PART_NAMES)}


# --- set-up ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def addon():
    poseforge.register()
    yield
    poseforge.unregister()


def _prefs():
    addons = bpy.context.preferences.addons
    if addons.get("poseforge") is None:
        addons.new().module = "poseforge"
    return addons["poseforge"].preferences


def _make_rig():
    """The default rig facing a camera (2:1 render aspect), its left arm swinging up or down on
    frame 4 (keys on 1 and 4), active in Pose Mode; preview 32 px high, frames 1-4."""
    from mathutils import Quaternion, Vector

    from poseforge.rig.default_rig import build_default_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    prefs = _prefs()
    prefs.backend, prefs.python_path, prefs.device, prefs.weights_dir = "AUTO", "", "CPU", ""
    bpy.context.window_manager.poseforge_job.last_error = ""
    obj = build_default_rig()
    scene = bpy.context.scene
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = (0.0, -6.0, 0.9)  # the rig faces -Y: the camera sees its front
    cam.rotation_euler = Vector((0.0, 1.0, 0.0)).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y = 1280, 640
    scene.render.fps, scene.render.fps_base = 30, 1.001
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="POSE")
    pb = obj.pose.bones["left_shoulder"]
    pb.rotation_mode = "QUATERNION"
    pb.keyframe_insert("rotation_quaternion", frame=1)
    pb.rotation_quaternion = Quaternion(Vector((1.0, 0.0, 0.0)), math.radians(60))
    pb.keyframe_insert("rotation_quaternion", frame=4)
    scene.frame_start, scene.frame_end = 1, 4
    scene.frame_set(1)
    s = scene.poseforge_preview
    s.range_mode, s.height, s.reference, s.output = "SCENE", 32, "RENDER", ""
    s.use_reference_frame, s.reference_frame, s.reference_image = False, 1, ""
    return obj


@pytest.fixture
def rig(tmp_path):
    """:func:`_make_rig` with the .blend saved as ``tmp_path / "shot.blend"``."""
    obj = _make_rig()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    return obj


def fake_preview(kind, request):
    """The job's contract: reads the inputs, writes a placeholder file at ``out``."""
    with np.load(request["inputs"]) as z:
        labels = z["labels"]
    Path(request["out"]).write_bytes(b"not a real video")
    data = {"path": request["out"], "frames": int(len(labels)), "seconds": 0.5, "device": "cpu"}
    return [Event("scripted", "progress", 0.5, "window 1/1"), Event("scripted", "result", 1.0, data=data)]


class Capture:
    """A scripted ``respond`` that keeps a copy of the request's arrays."""

    def __init__(self):
        self.arrays = None

    def __call__(self, kind, request):
        with np.load(request["inputs"]) as z:
            self.arrays = {k: z[k] for k in z.files}
        return fake_preview(kind, request)


def _render(**settings):
    s = bpy.context.scene.poseforge_preview
    for k, v in settings.items():
        setattr(s, k, v)
    return bpy.ops.poseforge.render_preview()


def _centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    assert len(xs), "the part is not in the image"
    return float(xs.mean()), float(ys.mean())


def _far_from(mask: np.ndarray) -> np.ndarray:
    """Pixels with no ``mask`` pixel in their 3 x 3 neighbourhood."""
    m = np.pad(mask, 1)
    near = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near |= m[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return ~near


def _scene_state(obj) -> dict:
    """What an animator would notice changed: render settings, frame, selection, data-blocks,
    meshes (colour attributes, vertex count), materials, pose values."""
    scene = bpy.context.scene
    r = scene.render
    mesh = bpy.data.objects["PoseForge Body Mesh"]
    return {
        "render": (r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage, r.film_transparent,
                   r.filepath, r.image_settings.file_format, scene.view_settings.view_transform,
                   scene.display.shading.light, scene.display.shading.color_type),
        "frame": (scene.frame_current, scene.frame_subframe),
        "selection": sorted(o.name for o in scene.objects if o.select_get()),
        "active": bpy.context.view_layer.objects.active.name,
        "mode": obj.mode,
        "scenes": sorted(s.name for s in bpy.data.scenes), "window_scene": bpy.context.scene.name,
        "data": {k: sorted(x.name for x in getattr(bpy.data, k)) for k in
                 ("objects", "meshes", "materials", "images", "lights", "worlds", "cameras", "collections")},
        "users": {o.name: o.users for o in bpy.data.objects},
        "attributes": [a.name for a in mesh.data.color_attributes],
        "verts": len(mesh.data.vertices),
        "world": scene.world.name if scene.world else None,
        "pose": {pb.name: (tuple(round(v, 6) for v in pb.rotation_quaternion), tuple(pb.location))
                 for pb in obj.pose.bones},
        "undo": bpy.context.window_manager.poseforge_job.last_error,
    }


# --- what the operator renders and sends ---------------------------------------------------------

def test_renders_labels_and_reference_and_sends_the_job(rig, scripted, tmp_path):
    cap = Capture()
    backend = scripted(cap)
    assert _render() == {"FINISHED"}
    kind, req = backend.requests[0]
    assert kind == "preview"
    assert Path(req["out"]) == tmp_path / "shot_preview.mp4" and (tmp_path / "shot_preview.mp4").is_file()
    assert req["fps"] == pytest.approx(30 / 1.001) and req["device"] == "cpu"
    labels, ref_labels, ref_rgb = cap.arrays["labels"], cap.arrays["ref_labels"], cap.arrays["ref_rgb"]
    # 32 px high, the 2:1 render aspect
    assert labels.shape == (4, 32, 64) and ref_labels.shape == (32, 64) and ref_rgb.shape == (32, 64, 3)
    assert labels.dtype == np.uint8 and labels.max() <= len(PART_NAMES)
    assert not Path(req["inputs"]).exists() and not Path(req["inputs"]).parent.exists(), \
        "the temporary inputs are removed after the job"
    # the reference is frame 1 (the range's first frame): same pose as the first label map
    assert np.array_equal(ref_labels, labels[0])
    # the rendered reference shows the character where the labels do, the plain background elsewhere
    bg = ref_rgb[_far_from(ref_labels > 0)].astype(int)  # anti-aliased edges left out
    assert np.abs(bg - bg[0]).max() <= 2, "plain background"
    fg = ref_rgb[ref_labels > 0].astype(int)
    assert np.abs(fg - bg[0]).max(axis=1).mean() > 20, "the character differs from the background"
    # and the plain background goes with it as a plate (where the reference's figure stood)
    plate = cap.arrays["background"]
    assert plate.shape == ref_rgb.shape and np.abs(plate.astype(int) - bg[0]).max() <= 2


def test_label_maps_show_the_parts_where_they_are(rig, scripted):
    cap = Capture()
    scripted(cap)
    assert _render(height=64) == {"FINISHED"}
    labels = cap.arrays["labels"]
    assert labels.shape == (4, 64, 128)
    first, last = labels[0], labels[-1]
    # the rig faces the camera: its left hand is on the right of the picture
    lh, rh = _centre(first == PART["left_hand"]), _centre(first == PART["right_hand"])
    assert lh[0] > rh[0] + 10
    head, foot = _centre(first == PART["head"]), _centre(first == PART["left_foot"])
    assert head[1] < foot[1] - 20, "the head is above the feet"
    # frame 4: the left arm has swung 60 degrees in the picture's plane; the right arm has not moved
    assert np.array_equal(first == PART["right_hand"], last == PART["right_hand"])
    assert abs(_centre(last == PART["left_hand"])[1] - lh[1]) > 5, "the left hand moved up or down"
    # every label is one of the parts, the background is the border
    assert set(np.unique(first)) <= set(range(len(PART_NAMES) + 1))
    assert (first[0] == 0).all() and (first[:, 0] == 0).all()


def test_the_animators_scene_is_exactly_as_before(rig, scripted):
    scripted(fake_preview)
    scene = bpy.context.scene
    scene.frame_set(3)
    # an unkeyed pose change (the renders evaluate the action at other frames)
    rig.pose.bones["right_elbow"].rotation_mode = "QUATERNION"
    rig.pose.bones["right_elbow"].rotation_quaternion = (0.9, 0.1, 0.3, 0.0)
    world = bpy.data.worlds.new("Shot World")
    scene.world = world
    before = _scene_state(rig)
    assert _render(use_reference_frame=True, reference_frame=2) == {"FINISHED"}
    assert _scene_state(rig) == before


def test_custom_range_preview_range_and_reference_frame(rig, scripted):
    cap = Capture()
    scripted(cap)
    scene = bpy.context.scene
    scene.frame_end = 10
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 2, 4
    assert _render() == {"FINISHED"}
    assert len(cap.arrays["labels"]) == 3
    full = cap.arrays["labels"]
    assert _render(range_mode="CUSTOM", frame_start=1, frame_end=4, use_reference_frame=True,
                   reference_frame=4) == {"FINISHED"}
    assert len(cap.arrays["labels"]) == 4
    assert np.array_equal(cap.arrays["labels"][1:], full), "the same frames render the same maps"
    assert np.array_equal(cap.arrays["ref_labels"], cap.arrays["labels"][3]), "the reference is at frame 4"


def test_reference_image_is_scaled_to_the_preview(rig, scripted, tmp_path, capsys):
    # a 90 x 60 picture: left half red, right half blue, top 10 rows green
    w, h = 90, 60
    img = bpy.data.images.new("ref", w, h, alpha=True)
    px = np.zeros((h, w, 4), dtype=np.float32)
    px[..., 3] = 1.0
    px[:, : w // 2, 0] = 1.0
    px[:, w // 2:, 2] = 1.0
    px[:10] = (0.0, 1.0, 0.0, 1.0)
    img.pixels.foreach_set(px[::-1].ravel())  # Blender rows go bottom to top
    img.filepath_raw = str(tmp_path / "character.png")
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)
    images = len(bpy.data.images)
    cap = Capture()
    scripted(cap)
    assert _render(reference="IMAGE", reference_image=str(tmp_path / "character.png"), reference_frame=4) == {"FINISHED"}
    ref = cap.arrays["ref_rgb"].astype(int)
    assert ref.shape == (32, 64, 3)
    assert np.abs(ref[20, 5] - [255, 0, 0]).max() < 20, "left stays left"
    assert np.abs(ref[20, 60] - [0, 0, 255]).max() < 20, "right stays right"
    assert np.abs(ref[1, 30] - [0, 255, 0]).max() < 20, "top stays top"
    assert np.array_equal(cap.arrays["ref_labels"], cap.arrays["labels"][3]), "the image shows frame 4's pose"
    assert len(bpy.data.images) == images, "the image data-block is removed"
    assert "background" not in cap.arrays, "a picture's background behind the character is unknown"
    out = capsys.readouterr()
    assert "The reference image is 90x60 and the preview 64x32: it is stretched" in out.out + out.err


def test_cpu_warns_with_an_estimate_for_a_long_preview(rig, scripted, capsys, monkeypatch):
    scripted(fake_preview)
    bpy.context.scene.frame_end = 8
    from poseforge.operators import preview
    from poseforge.operators._job import OperatorError

    expected = preview.estimate_seconds(8, 2048, 1024)
    assert expected > 60
    assert preview.estimate_seconds(120, 128, 128) == pytest.approx(120 * preview.CPU_SECONDS_PER_FRAME_128)
    assert _render(height=32) == {"FINISHED"}
    out = capsys.readouterr()
    assert "on the CPU" not in out.out + out.err, "a short preview runs without a warning"
    bpy.context.scene.poseforge_preview.height = 1024
    _prefs().device = "CPU"

    def stop(*args, **kw):  # stop right after the warning: rendering 1024 px is slow in a test
        raise OperatorError("stopped by the test")

    monkeypatch.setattr(preview, "PreviewRenderer", stop)
    with pytest.raises(RuntimeError, match="stopped by the test"):
        _render()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "on the CPU: about" in text and f"{expected / 60:.0f} min" in text
    _prefs().device = "CUDA"  # on a GPU: no warning
    with pytest.raises(RuntimeError, match="stopped by the test"):
        _render()
    out = capsys.readouterr()
    assert "on the CPU" not in out.out + out.err


# --- bad input: a clear message, nothing written -----------------------------------------------------

def _refused(backend, pattern, **settings):
    with pytest.raises(RuntimeError, match=pattern):
        _render(**settings)
    assert backend.requests == []
    assert bpy.context.window_manager.poseforge_job.last_error


def test_no_camera_is_refused(rig, scripted):
    backend = scripted(fake_preview)
    bpy.context.scene.camera = None
    _refused(backend, "Add a camera: the preview is rendered from the scene camera")


def test_empty_range_is_refused(rig, scripted):
    backend = scripted(fake_preview)
    _refused(backend, "custom range is empty.*ends \\(frame 2\\) before it starts \\(frame 5\\)",
             range_mode="CUSTOM", frame_start=5, frame_end=2)


def test_no_mesh_is_refused(rig, scripted):
    backend = scripted(fake_preview)
    bpy.data.objects.remove(bpy.data.objects["PoseForge Body Mesh"])
    _refused(backend, "No mesh is deformed by 'PoseForge Body'")


def test_no_armature_is_refused(rig, scripted):
    backend = scripted(fake_preview)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = bpy.context.scene.camera
    _refused(backend, "'Camera' is not an armature")


def test_unreadable_image_is_refused(rig, scripted, tmp_path):
    backend = scripted(fake_preview)
    bad = tmp_path / "character.png"
    bad.write_bytes(b"this is not a picture")
    images = len(bpy.data.images)
    _refused(backend, "Cannot read the reference image character.png", reference="IMAGE", reference_image=str(bad))
    _refused(backend, "Cannot read the reference image missing.png: no such file", reference="IMAGE",
             reference_image=str(tmp_path / "missing.png"))
    assert len(bpy.data.images) == images


def test_unsaved_blend_without_path_is_refused(scripted):
    _make_rig()
    assert bpy.data.filepath == ""
    backend = scripted(fake_preview)
    _refused(backend, "Save the .blend file or choose an output path")
    _refused(backend, "relative to the .blend, which is not saved", output="//renders/shot.mp4")


def test_output_paths(rig, scripted, tmp_path):
    backend = scripted(fake_preview)
    _refused(backend, "inside the PoseForge extension folder", output=str(ROOT / "preview.mp4"))
    _refused(backend, "The output folder .* does not exist", output=str(tmp_path / "nowhere" / "shot.mp4"))
    _refused(backend, "not an .mp4 file", output=str(tmp_path / "shot.mov"))
    (tmp_path / "renders").mkdir()
    assert _render(output="//renders/take1") == {"FINISHED"}
    assert Path(backend.requests[-1][1]["out"]) == tmp_path / "renders" / "take1.mp4"
    assert _render(output="//renders/") == {"FINISHED"}
    assert Path(backend.requests[-1][1]["out"]) == tmp_path / "renders" / "shot_preview.mp4"


def test_height_must_be_a_multiple_of_4(rig, scripted):
    backend = scripted(fake_preview)
    _refused(backend, "multiple of 4 pixels, got 34.*Try 32 or 36", height=34)


def test_job_error_and_cancel_leave_no_inputs_behind(rig, scripted, tmp_path):
    seen = []

    def error(kind, req):
        seen.append(Path(req["inputs"]))
        return [Event("scripted", "error", message="No usable preview weights: dmm.safetensors is missing",
                      hint="Train them with `poseforge train dmm`")]

    scripted(error)
    with pytest.raises(RuntimeError, match="No usable preview weights.*poseforge train dmm"):
        _render()

    def cancelled(kind, req):
        seen.append(Path(req["inputs"]))
        return [Event("scripted", "progress", 0.3, "window 1/2"), Event("scripted", "cancelled", message="Cancelled")]

    scripted(cancelled)
    assert _render() == {"CANCELLED"}
    assert len(seen) == 2 and not any(p.exists() or p.parent.exists() for p in seen)
    assert not (tmp_path / "shot_preview.mp4").exists()


def test_a_real_character_keeps_its_meshes_and_materials(characters_dir, scripted, tmp_path):
    from mathutils import Vector

    path = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    bpy.ops.wm.open_mainfile(filepath=str(path))
    _prefs()
    scene = bpy.context.scene
    obj = bpy.data.objects["HumanArmature"]
    mesh = bpy.data.objects["BaseHuman"]
    pts = [mesh.matrix_world @ Vector(c) for c in mesh.bound_box]
    lo = Vector([min(p[i] for p in pts) for i in range(3)])
    hi = Vector([max(p[i] for p in pts) for i in range(3)])
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = (lo + hi) / 2 + Vector((0.0, -3.2 * (hi.z - lo.z), 0.0))
    cam.rotation_euler = Vector((0.0, 1.0, 0.0)).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.resolution_x = scene.render.resolution_y = 500
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    scene.frame_start, scene.frame_end = 1, 2
    s = scene.poseforge_preview
    s.range_mode, s.height, s.reference, s.output = "SCENE", 64, "RENDER", str(tmp_path / "male.mp4")
    s.use_reference_frame = False

    def state():
        return {"materials": {m.name: (m.users, len(m.node_tree.nodes) if m.node_tree else 0) for m in bpy.data.materials},
                "meshes": {m.name: (len(m.vertices), [a.name for a in m.color_attributes], m.users) for m in bpy.data.meshes},
                "objects": sorted(o.name for o in bpy.data.objects), "scenes": len(bpy.data.scenes),
                "render": (scene.render.engine, scene.render.resolution_x, scene.render.film_transparent),
                "frame": scene.frame_current}

    before = state()
    cap = Capture()
    scripted(cap)
    assert _render() == {"FINISHED"}
    labels, ref = cap.arrays["labels"], cap.arrays["ref_rgb"]
    assert labels.shape == (2, 64, 64)
    seen = set(np.unique(labels[0])) - {0}
    assert len(seen) >= 12, f"only parts {sorted(seen)} are drawn"
    assert labels[0].max() <= len(PART_NAMES)
    # the textured reference differs from its plain background where the character is
    inside = ref[cap.arrays["ref_labels"] > 0].astype(int)
    assert np.abs(inside - ref[0, 0].astype(int)).max(axis=1).mean() > 15
    assert state() == before


# --- the panel ---------------------------------------------------------------------------------------

@pytest.fixture
def _draw_panel(panel_log):
    from poseforge.panels.preview import POSEFORGE_PT_preview

    return lambda: panel_log(POSEFORGE_PT_preview)


def test_panel_shows_the_settings_and_the_button(rig, _draw_panel):
    log = _draw_panel()
    assert [e[1] for e in log if e[0] == "prop"] == ["range_mode", "height", "reference", "use_reference_frame",
                                                     "reference_frame", "output"]
    assert ("label", "64 x 32 px, 29.97 fps") in log
    assert ("operator", "poseforge.render_preview", "") in log
    s = bpy.context.scene.poseforge_preview
    s.reference, s.range_mode = "IMAGE", "CUSTOM"
    bpy.context.scene.camera = None
    log = _draw_panel()
    assert [e[1] for e in log if e[0] == "prop"] == ["range_mode", "frame_start", "frame_end", "height", "reference",
                                                     "reference_image", "reference_frame", "output"]
    assert ("label", "No scene camera: add one") in log


# --- the real job ---------------------------------------------------------------------------------

#: Saves a tiny random DMM as ``dmm`` in the folder ``out``.
_TINY_MODEL = """
import torch
from poseforge.backend.models.dmm import DMM, DMMConfig
from poseforge.backend.weights import save_model
torch.manual_seed(0)
cfg = DMMConfig(base=8, max_channels=16, levels=2, style_dim=16, groups=4)
save_model("dmm", DMM(cfg), cfg, {"note": "tiny random test model"}, out_dir=out)
"""

needs_job = pytest.mark.skipif("preview" not in TASKS, reason="the preview job is not registered yet")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A weights folder with a tiny random DMM, and how to reach a backend with torch."""
    out = tmp_path_factory.mktemp("dmm")
    if TORCH_HERE:
        exec(_TINY_MODEL, {"out": str(out)})
        return out, "IN_PROCESS", ""
    if BACKEND_PYTHON:
        import subprocess

        subprocess.run([BACKEND_PYTHON, "-c", f"out = {str(out)!r}\n" + _TINY_MODEL], check=True)
        return out, "CHILD_PROCESS", BACKEND_PYTHON
    pytest.skip("no torch in this Python and POSEFORGE_TEST_BACKEND_PYTHON is not set")


#: The same reading in another Python (prints JSON).
_READ_VIDEO = """
import json, sys, av
with av.open(sys.argv[1]) as f:
    stream = f.streams.video[0]
    frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(stream)]
    rate = stream.average_rate or stream.base_rate
print(json.dumps({"frames": len(frames), "shape": list(frames[0].shape), "fps": float(rate)}))
"""


def _read_video(path: Path) -> dict:
    """Frame count, frame shape and frame rate of a video, opened with PyAV (here, or in the
    backend's Python when this one has no PyAV)."""
    import json
    import subprocess
    import sys

    python = sys.executable if importlib.util.find_spec("av") is not None else BACKEND_PYTHON
    if not python:
        pytest.skip("no PyAV in this Python and POSEFORGE_TEST_BACKEND_PYTHON is not set")
    if python == sys.executable:
        import av

        with av.open(str(path)) as f:
            stream = f.streams.video[0]
            frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(stream)]
            rate = stream.average_rate or stream.base_rate
        return {"frames": len(frames), "shape": list(frames[0].shape), "fps": float(rate)}
    out = subprocess.run([python, "-c", _READ_VIDEO, str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@needs_job
def test_real_job_writes_a_readable_mp4(rig, tiny_weights, tmp_path):
    prefs = _prefs()
    out, prefs.backend, prefs.python_path = tiny_weights
    prefs.weights_dir = str(out)
    before = _scene_state(rig)
    assert _render(height=32) == {"FINISHED"}
    video = tmp_path / "shot_preview.mp4"
    assert video.is_file()
    info = _read_video(video)
    assert info["frames"] == 4 and info["shape"] == [32, 64, 3]
    assert info["fps"] == pytest.approx(30 / 1.001, rel=1e-3)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("shot.blend", "shot_preview.mp4")], \
        "no temporary file left next to the .blend"
    assert _scene_state(rig) == before
