"""Fill Keyframe Gaps in Blender (bpy in background mode: the blocking path of the job runner).

Most tests answer the ``inbetween`` job with a scripted backend that follows the job's contract
(keyed values returned as sent, unknown ones replaced by a rotation that differs per hypothesis),
so they check what the operator reads, which keys it writes, how hypotheses cycle, how Discard
and Undo restore the keys, and how bad input is refused.  One test runs the real job with a tiny
random GFPose model (junk poses, the whole path) and skips until the job is registered.
"""
from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import poseforge  # noqa: E402
from poseforge.backend.service import TASKS, Event  # noqa: E402
from poseforge.backend.skeleton import JOINT_INDEX  # noqa: E402

TORCH_HERE = importlib.util.find_spec("torch") is not None
BACKEND_PYTHON = os.environ.get("POSEFORGE_TEST_BACKEND_PYTHON", "")
ARMS = ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")


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


@pytest.fixture
def rig():
    """The default rig plus an unmapped 'prop' bone in the right hand, active, in Pose Mode."""
    from poseforge.operators import inbetween
    from poseforge.rig.default_rig import build_default_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    inbetween.clear_pending()
    prefs = _prefs()
    prefs.backend, prefs.python_path, prefs.device, prefs.weights_dir = "AUTO", "", "CPU", ""
    bpy.context.window_manager.poseforge_job.last_error = ""
    obj = build_default_rig()
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    prop = obj.data.edit_bones.new("prop")
    wrist = obj.data.edit_bones["right_wrist"]
    prop.head, prop.tail, prop.parent = wrist.tail, wrist.tail + (wrist.tail - wrist.head), wrist
    bpy.ops.object.mode_set(mode="POSE")
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 20
    scene.frame_set(1)
    scene.tool_settings.use_keyframe_insert_auto = False
    yield obj
    inbetween.clear_pending()


def _hypothesis_quat(h: int) -> tuple:
    a = 0.2 * (h + 1)
    return (math.cos(a / 2), math.sin(a / 2), 0.0, 0.0)


def fake_inbetween(kind, request):
    """The job's contract with made-up poses: unknown joints on fill frames get a rotation about
    X of 0.2 (h + 1) rad in hypothesis h, the filled root rises 5 cm per hypothesis."""
    rots, root = np.array(request["rotations"]), np.array(request["root"])
    known, known_root = np.array(request["known"]), np.array(request["known_root"])
    fill = np.array(request["fill"])
    H = 1 + int(request["hypotheses"])
    out_r, out_x = [], []
    for h in range(H):
        r, x = rots.copy(), root.copy()
        r[fill[:, None] & ~known] = _hypothesis_quat(h)
        if not request["keep_root"]:
            x[fill & ~known_root, 1] += 0.05 * (h + 1)
        out_r.append(r)
        out_x.append(x)
    keys = [t for t in range(len(fill)) if known[t].any()]
    gaps = [[a, b] for a, b in zip(keys, keys[1:]) if b > a + 1 or fill[a] or fill[b]]
    data = {"rotations": np.stack(out_r).tolist(), "root": np.stack(out_x).tolist(), "hypotheses": H, "gaps": gaps}
    return [Event("scripted", "progress", 0.5, "sampling"), Event("scripted", "result", 1.0, data=data)]


# --- helpers -------------------------------------------------------------------------------------

def _key(obj, frame: int, bones=None, lean: float = 0.0, height: float = 0.0, location: bool = True) -> None:
    """Pose and key ``bones`` (default: every bone) at ``frame``: spine and prop bend by ``lean``
    degrees, the pelvis is lifted by ``height``; the pelvis location is keyed with it."""
    from mathutils import Quaternion, Vector

    names = [pb.name for pb in obj.pose.bones] if bones is None else list(bones)
    for name in names:
        pb = obj.pose.bones[name]
        pb.rotation_mode = "QUATERNION"
        angle = math.radians(lean) if name in ("spine2", "prop", "left_elbow") else 0.0
        pb.rotation_quaternion = Quaternion(Vector((1, 0, 0)), angle)
        pb.keyframe_insert("rotation_quaternion", frame=frame)
        if name == "pelvis" and location:
            pb.location = (0.0, height, 0.0)
            pb.keyframe_insert("location", frame=frame)


def _keys(obj) -> dict:
    """Every key: (data path, index) -> {frame: (value, interpolation, handle types)}."""
    from poseforge.rig.actions import fcurves

    return {(fc.data_path, fc.array_index): {round(kp.co[0], 3): (round(kp.co[1], 6), kp.interpolation,
                                                                   kp.handle_left_type, kp.handle_right_type)
                                             for kp in fc.keyframe_points}
            for fc in fcurves(obj)}


def _full_keys(obj) -> dict:
    """Every key with its handles, exactly."""
    from poseforge.rig.actions import fcurves

    return {(fc.data_path, fc.array_index): [(tuple(kp.co), tuple(kp.handle_left), tuple(kp.handle_right),
                                              kp.interpolation, kp.handle_left_type, kp.handle_right_type, kp.type)
                                             for kp in fc.keyframe_points]
            for fc in fcurves(obj)}


def _bone(path: str) -> str:
    return path.split('"')[1]


def _new_frames(before: dict, after: dict) -> dict:
    """(path, index) -> frames keyed after but not before."""
    return {k: sorted(set(v) - set(before.get(k, {}))) for k, v in after.items() if set(v) - set(before.get(k, {}))}


def _assert_old_keys_kept(before: dict, after: dict) -> None:
    for k, pts in before.items():
        for f, v in pts.items():
            assert after[k][f] == v, f"the key of {k} at frame {f} changed: {v} -> {after[k][f]}"


def _rot_w(obj, bone: str, frame: int) -> float:
    bpy.context.scene.frame_set(frame)
    return float(obj.pose.bones[bone].rotation_quaternion[0])


def _three_keys(obj) -> None:
    """Full keys at frames 1, 8, 15 (the lean grows), and one at 30 outside the scene range."""
    for f, lean in ((1, 0.0), (8, 20.0), (15, 40.0), (30, 10.0)):
        _key(obj, f, lean=lean, height=0.01 * f)


def _fill(*args, **settings):
    s = bpy.context.scene.poseforge_inbetween
    for name, value in settings.items():
        setattr(s, name, value)
    return bpy.ops.poseforge.fill_keyframe_gaps(*args)


# --- what the fill reads and writes ----------------------------------------------------------------

def test_fill_keys_only_the_gaps_of_mapped_bones(rig, scripted):
    backend = scripted(fake_inbetween)
    _three_keys(rig)
    before = _keys(rig)
    bpy.context.scene.frame_set(5)
    assert _fill(hypotheses=1, seed=3, foot_contact=False) == {"FINISHED"}
    kind, req = backend.requests[-1]
    assert kind == "inbetween"
    assert np.array(req["rotations"]).shape == (15, 22, 4) and np.array(req["root"]).shape == (15, 3)
    known = np.array(req["known"])
    assert known[[0, 7, 14]].all() and not known[[1, 6, 8, 13]].any()
    assert req["known_root"] == [t in (0, 7, 14) for t in range(15)] and req["keep_root"] is False
    assert req["fill"] == [t not in (0, 7, 14) for t in range(15)]
    assert req["hypotheses"] == 0 and req["seed"] == 3 and req["foot_contact"] is False
    assert bpy.context.scene.frame_current == 5, "the current frame is restored"

    after = _keys(rig)
    _assert_old_keys_kept(before, after)
    new = _new_frames(before, after)
    filled = [f for f in range(2, 15) if f != 8]
    mapped = {pb.name for pb in rig.pose.bones} - {"prop"}
    rot_curves = {k for k in after if k[0].endswith("rotation_quaternion") and _bone(k[0]) in mapped}
    assert {k for k in new} == rot_curves | {k for k in after if k[0].endswith('"pelvis"].location')}
    assert all(frames == filled for frames in new.values()), "keys only on the frames between keys"
    assert not any(_bone(k[0]) == "prop" for k in new), "the unmapped prop bone got keys"
    # the fill shows: a filled knee turns 0.2 rad about its X axis (canonical), a key stays
    assert _rot_w(rig, "left_knee", 4) == pytest.approx(math.cos(0.1), abs=1e-3)
    assert _rot_w(rig, "spine2", 8) == pytest.approx(math.cos(math.radians(10)), abs=1e-5)


def test_partial_keys_constrain_only_the_keyed_joints(rig, scripted):
    backend = scripted(fake_inbetween)
    _key(rig, 1)
    _key(rig, 15, lean=30.0)
    _key(rig, 8, bones=ARMS, lean=60.0)  # only the arms keyed in the middle
    before = _keys(rig)
    elbow_w = _rot_w(rig, "left_elbow", 8)
    assert _fill(hypotheses=1) == {"FINISHED"}
    known = np.array(backend.requests[-1][1]["known"])
    arms = sorted(JOINT_INDEX[j] for j in ARMS)
    assert [j for j in range(22) if known[7, j]] == arms, "frame 8 constrains the arm joints only"
    assert backend.requests[-1][1]["fill"][7] is True
    after = _keys(rig)
    _assert_old_keys_kept(before, after)
    new = _new_frames(before, after)
    for k, frames in new.items():
        if _bone(k[0]) in ARMS:
            assert 8 not in frames, f"the arm key of {k} at frame 8 was overwritten"
        elif k[0].endswith("rotation_quaternion"):
            assert 8 in frames, f"{k} was not filled on the partly keyed frame 8"
    assert _rot_w(rig, "left_elbow", 8) == pytest.approx(elbow_w, abs=1e-6)


def test_pelvis_without_location_keys_keeps_the_root(rig, scripted):
    from poseforge.rig.actions import fcurves

    backend = scripted(fake_inbetween)
    _key(rig, 1, location=False)
    _key(rig, 6, lean=20.0, location=False)
    head_before = rig.pose.bones["pelvis"].location.copy()
    assert _fill(hypotheses=1) == {"FINISHED"}
    req = backend.requests[-1][1]
    assert req["keep_root"] is True and req["known_root"] == [row[0] for row in req["known"]]
    assert not any(fc.data_path.endswith("location") and '"pelvis"' in fc.data_path for fc in fcurves(rig)), \
        "no location keys on a pelvis that had none"
    assert tuple(rig.pose.bones["pelvis"].location) == pytest.approx(tuple(head_before), abs=1e-6)


def test_custom_and_preview_ranges_limit_the_frames(rig, scripted):
    backend = scripted(fake_inbetween)
    _three_keys(rig)
    scene = bpy.context.scene
    before = _keys(rig)
    assert _fill(hypotheses=2, range_mode="CUSTOM", frame_start=6, frame_end=30) == {"FINISHED"}
    assert len(backend.requests[-1][1]["rotations"]) == 23  # frames 8..30
    new = _new_frames(before, _keys(rig))
    assert new and all(frames == [f for f in range(9, 30) if f != 15] for frames in new.values())
    bpy.ops.poseforge.inbetween_discard()
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 1, 9
    _fill(range_mode="SCENE")
    assert len(backend.requests[-1][1]["rotations"]) == 8  # frames 1..8
    new = _new_frames(before, _keys(rig))
    assert new and all(frames == list(range(2, 8)) for frames in new.values())


# --- hypotheses and the one undo step --------------------------------------------------------------

def _knee_w(obj, frame=4) -> float:
    return _rot_w(obj, "left_knee", frame)


def test_hypotheses_cycle_and_discard_restores_the_keys_exactly(rig, scripted):
    from poseforge.operators.inbetween import pending_fill

    backend = scripted(fake_inbetween)
    _three_keys(rig)
    # a hand-made key the animator tuned: free handles and constant interpolation
    from poseforge.rig.actions import find_fcurve
    fc = find_fcurve(rig, 'pose.bones["spine2"].rotation_quaternion', 0)
    kp = fc.keyframe_points[1]
    kp.handle_left_type = kp.handle_right_type = "FREE"
    kp.handle_left, kp.handle_right = (7.6, 0.9), (8.4, 1.1)  # inside the frames next to it
    fc.keyframe_points[0].interpolation = "CONSTANT"
    original = _full_keys(rig)
    assert _fill(hypotheses=3, seed=7) == {"FINISHED"}
    assert backend.requests[-1][1]["hypotheses"] == 2
    p = pending_fill()
    assert p is not None and (p.index, p.count) == (0, 3)
    shown = [_knee_w(rig)]
    for step in (1, 1, 1, -1):
        assert bpy.ops.poseforge.inbetween_cycle(step=step) == {"FINISHED"}
        shown.append(_knee_w(rig))
    assert pending_fill().index == 2
    expect = [math.cos(0.1 * (h + 1)) for h in (0, 1, 2, 0, 2)]
    assert shown == pytest.approx(expect, abs=1e-3), "each hypothesis shows on the filled frames"
    after = _full_keys(rig)
    for k, pts in original.items():
        old = {p[0][0]: p for p in pts}
        new = {p[0][0]: p for p in after[k]}
        assert all(new[f][0] == old[f][0] and new[f][3:] == old[f][3:] for f in old), f"a key of {k} changed"
    spine = after[('pose.bones["spine2"].rotation_quaternion', 0)]
    co, left, right, interpolation, left_type, right_type = [p for p in spine if p[0][0] == 8.0][0][:6]
    slope = lambda h: (h[1] - co[1]) / (h[0] - co[0])  # noqa: E731
    # the free tangents stay as the animator set them; Blender only shortens a handle that would
    # reach past the new key next to it (its own rule for any inserted key)
    assert (left_type, right_type) == ("FREE", "FREE")
    assert slope(left) == pytest.approx((0.9 - co[1]) / -0.4, rel=1e-4)
    assert slope(right) == pytest.approx((1.1 - co[1]) / 0.4, rel=1e-4)
    assert bpy.ops.poseforge.inbetween_discard() == {"FINISHED"}
    assert _full_keys(rig) == original, "Discard puts every key back exactly"
    assert pending_fill() is None
    with pytest.raises(RuntimeError):
        bpy.ops.poseforge.inbetween_cycle(step=1)  # nothing pending: the poll refuses


def test_accept_keeps_the_hypothesis_shown(rig, scripted):
    from poseforge.operators.inbetween import pending_fill

    scripted(fake_inbetween)
    _three_keys(rig)
    _fill(hypotheses=2)
    bpy.ops.poseforge.inbetween_cycle(step=1)
    shown = _keys(rig)
    assert bpy.ops.poseforge.inbetween_accept() == {"FINISHED"}
    assert pending_fill() is None and _keys(rig) == shown
    assert _knee_w(rig) == pytest.approx(math.cos(0.2), abs=1e-3)


def test_fill_and_cycling_are_one_undo_step(rig, scripted):
    scripted(fake_inbetween)
    _three_keys(rig)
    original = _keys(rig)
    bpy.ops.ed.undo_push(message="keys")
    # from a script an operator pushes its undo step only when asked (the 2nd argument)
    assert bpy.ops.poseforge.fill_keyframe_gaps("INVOKE_DEFAULT", True) == {"FINISHED"}
    bpy.ops.poseforge.inbetween_cycle("EXEC_DEFAULT", True, step=1)
    bpy.ops.poseforge.inbetween_cycle("EXEC_DEFAULT", True, step=1)
    third = _keys(rig)
    assert third != original
    bpy.ops.ed.undo()
    obj = bpy.data.objects["PoseForge Body"]
    assert _keys(obj) == original, "one undo goes back to the keys before the fill"
    with pytest.raises(RuntimeError, match="changed since the fill"):
        bpy.ops.poseforge.inbetween_cycle(step=1)  # undone: the hypotheses no longer apply
    bpy.ops.ed.redo()
    obj = bpy.data.objects["PoseForge Body"]
    assert _keys(obj) == third, "redo brings back the hypothesis shown last"


def test_cycling_after_an_edit_refuses_and_keeps_the_edit(rig, scripted):
    from poseforge.operators.inbetween import pending_fill
    from poseforge.rig.actions import find_fcurve

    scripted(fake_inbetween)
    _three_keys(rig)
    _fill(hypotheses=3)
    fc = find_fcurve(rig, 'pose.bones["left_knee"].rotation_quaternion', 1)
    kp = [k for k in fc.keyframe_points if k.co[0] == 4.0][0]
    kp.co[1] = 0.5  # the animator tweaks a filled key
    edited = _keys(rig)
    with pytest.raises(RuntimeError, match="changed since the fill"):
        bpy.ops.poseforge.inbetween_cycle(step=1)
    assert _keys(rig) == edited and pending_fill() is None


def test_discard_after_switching_actions_refuses(rig, scripted):
    scripted(fake_inbetween)
    _three_keys(rig)
    _fill(hypotheses=2)
    filled = _keys(rig)
    original = rig.animation_data.action
    rig.animation_data.action = bpy.data.actions.new("Other")  # another action: Discard must refuse
    with pytest.raises(RuntimeError, match="changed since the fill"):
        bpy.ops.poseforge.inbetween_discard()
    anim = rig.animation_data
    anim.action = original
    if hasattr(anim, "action_slot") and anim.action_slot is None:  # Blender 4.4+: slotted actions
        anim.action_slot = original.slots[0]
    assert _keys(rig) == filled, "the refused Discard changed nothing"


# --- bad input: a clear message, nothing changed --------------------------------------------------

def test_no_armature_is_refused(rig, scripted):
    backend = scripted(fake_inbetween)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="No armature selected"):
        _fill()
    assert backend.requests == []


def test_unmapped_rig_names_what_is_missing(rig, scripted):
    backend = scripted(fake_inbetween)
    bpy.ops.object.mode_set(mode="EDIT")
    for name in ("left_knee", "left_ankle", "left_foot"):
        rig.data.edit_bones.remove(rig.data.edit_bones[name])
    bpy.ops.object.mode_set(mode="POSE")
    with pytest.raises(RuntimeError, match="humanoid.*left_knee"):
        _fill()
    assert backend.requests == []


@pytest.mark.parametrize("case", ["one key", "prop only", "all keyed", "bad range"])
def test_bad_keys_are_refused_and_nothing_changes(rig, scripted, case):
    backend = scripted(fake_inbetween)
    if case == "one key":
        _key(rig, 3)
        _key(rig, 40)  # outside the range
        pattern, kw = "one keyed frame \\(frame 3\\).*at least two", {}
    elif case == "prop only":
        _key(rig, 2, bones=["prop"])
        _key(rig, 9, bones=["prop"])
        pattern, kw = "only on bones outside the rig map \\(prop\\)", {}
    elif case == "all keyed":
        for f in range(1, 5):
            _key(rig, f)
        pattern, kw = "Nothing to fill", {}
    else:
        _three_keys(rig)
        pattern, kw = "ends \\(frame 2\\) before it starts", {"range_mode": "CUSTOM", "frame_start": 9,
                                                               "frame_end": 2}
    before = _full_keys(rig)
    with pytest.raises(RuntimeError, match=pattern):
        _fill(**kw)
    assert backend.requests == [] and _full_keys(rig) == before
    assert bpy.context.window_manager.poseforge_job.last_error


def test_job_error_is_reported_and_changes_nothing(rig, scripted):
    message = "The gap from frame 1 to frame 15 is longer than the model's window (65 frames): add a key in between"
    scripted(lambda kind, req: [Event("scripted", "error", message=message)])
    _three_keys(rig)
    before = _full_keys(rig)
    with pytest.raises(RuntimeError, match="add a key in between"):
        _fill()
    assert _full_keys(rig) == before


def test_malformed_result_changes_nothing(rig, scripted):
    def respond(kind, req):
        data = {"rotations": np.array(req["rotations"])[None, :3].tolist(), "root": req["root"], "hypotheses": 1}
        return [Event("scripted", "result", 1.0, data=data)]

    scripted(respond)
    _three_keys(rig)
    before = _full_keys(rig)
    with pytest.raises(RuntimeError, match="nothing was changed"):
        _fill()
    assert _full_keys(rig) == before


# --- the real job ---------------------------------------------------------------------------------

#: Saves a tiny random GFPose as ``gfpose`` in the folder ``out``; its parameters are jittered so
#: that the (otherwise zero-initialised) output layer answers something and hypotheses differ.
_TINY_MODEL = """
import torch
from poseforge.backend.models.gfpose import GFPose, GFPoseConfig
from poseforge.backend.weights import save_model
torch.manual_seed(0)
cfg = GFPoseConfig(width=32, layers=1, heads=2)
model = GFPose(cfg)
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
save_model("gfpose", model, cfg, {"note": "tiny random test model"}, out_dir=out)
"""


needs_job = pytest.mark.skipif("inbetween" not in TASKS, reason="the inbetween job is not registered yet")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A weights folder with a tiny random GFPose, and how to reach a backend with torch."""
    out = tmp_path_factory.mktemp("gfpose")
    if TORCH_HERE:
        exec(_TINY_MODEL, {"out": str(out)})
        return out, "IN_PROCESS", ""
    if BACKEND_PYTHON:
        import subprocess

        subprocess.run([BACKEND_PYTHON, "-c", f"out = {str(out)!r}\n" + _TINY_MODEL], check=True)
        return out, "CHILD_PROCESS", BACKEND_PYTHON
    pytest.skip("no torch in this Python and POSEFORGE_TEST_BACKEND_PYTHON is not set")


def _use_tiny(tiny_weights) -> None:
    prefs = _prefs()
    out, prefs.backend, prefs.python_path = tiny_weights
    prefs.weights_dir = str(out)


@needs_job
def test_real_job_with_a_tiny_random_model(rig, tiny_weights):
    _use_tiny(tiny_weights)
    _key(rig, 1)
    _key(rig, 12, lean=30.0, height=0.05)
    _key(rig, 6, bones=ARMS, lean=50.0)
    before = _keys(rig)
    assert _fill(hypotheses=2, foot_contact=True) == {"FINISHED"}
    after = _keys(rig)
    _assert_old_keys_kept(before, after)
    new = _new_frames(before, after)
    assert not any(_bone(k[0]) == "prop" for k in new), "the unmapped prop bone got keys"
    for k, v in before.items():
        if k[0].endswith("rotation_quaternion") and _bone(k[0]) != "prop":
            want = [f for f in range(2, 12) if f != 6] if _bone(k[0]) in ARMS else list(range(2, 12))
            assert new.get(k) == want, f"{k}: filled frames {new.get(k)}"
    assert new[('pose.bones["pelvis"].location', 1)] == list(range(2, 12)), "the root is filled too"
    assert bpy.ops.poseforge.inbetween_cycle(step=1) == {"FINISHED"}
    assert _keys(rig) != after, "the second hypothesis differs"
    _assert_old_keys_kept(before, _keys(rig))
    assert bpy.ops.poseforge.inbetween_discard() == {"FINISHED"}
    assert _keys(rig) == before


@needs_job
def test_real_job_refuses_a_gap_longer_than_the_window(rig, tiny_weights):
    _use_tiny(tiny_weights)
    bpy.context.scene.frame_end = 120
    _key(rig, 1)
    _key(rig, 100, lean=30.0)
    before = _full_keys(rig)
    with pytest.raises(RuntimeError, match="frames 1 and 100.*add a key in between"):
        _fill(hypotheses=2)
    assert _full_keys(rig) == before


# --- a real character rig (Quaternius: IK legs, fingers, pole targets) -------------------------------

def test_fill_on_a_real_rig_touches_only_mapped_bones(characters_dir, scripted):
    from poseforge.operators import inbetween
    from poseforge.rig.bridge import rig_map

    path = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    bpy.ops.wm.open_mainfile(filepath=str(path))
    inbetween.clear_pending()
    _prefs()
    obj = bpy.data.objects["HumanArmature"]
    obj.animation_data.action = None
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="POSE")
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 12
    rm = rig_map(obj)
    mapped = set(rm.bones.values())
    for f, angle in ((1, 0.0), (10, 0.6)):
        for pb in obj.pose.bones:  # every bone keyed, fingers and pole targets too
            pb.rotation_mode = "XYZ"
            pb.rotation_euler = (angle if pb.name in mapped else 0.3, 0.0, 0.0)
            pb.keyframe_insert("rotation_euler", frame=f)
        pelvis = obj.pose.bones[rm.bones["pelvis"]]
        pelvis.keyframe_insert("location", frame=f)
    scripted(fake_inbetween)
    before = _keys(obj)
    mutes = {(pb.name, c.name): c.mute for pb in obj.pose.bones for c in pb.constraints}
    assert _fill(hypotheses=2) == {"FINISHED"}
    after = _keys(obj)
    _assert_old_keys_kept(before, after)
    new = _new_frames(before, after)
    assert new and {_bone(k[0]) for k in new} <= mapped, "bones outside the rig map got keys"
    assert all(frames == list(range(2, 10)) for frames in new.values())
    bpy.ops.poseforge.inbetween_discard()
    assert _keys(obj) == before
    assert {(pb.name, c.name): c.mute for pb in obj.pose.bones for c in pb.constraints} == mutes, \
        "Discard unmutes the IK constraints the fill muted"
    assert rm.ik_constraints, "the Quaternius legs have IK (the case this checks)"
    inbetween.clear_pending()


# --- the panel ---------------------------------------------------------------------------------------

def test_panel_shows_the_options_then_the_hypothesis_to_choose(rig, scripted, panel_log):
    from poseforge.panels.inbetween import POSEFORGE_PT_inbetween

    def _draw_panel():
        return panel_log(POSEFORGE_PT_inbetween)

    scripted(fake_inbetween)
    log = _draw_panel()
    assert [e[1] for e in log if e[0] == "prop"] == ["range_mode", "hypotheses", "seed", "foot_contact"]
    assert ("operator", "poseforge.fill_keyframe_gaps", "") in log
    assert not any(e[0] == "operator" and e[1] == "poseforge.inbetween_cycle" for e in log)
    _three_keys(rig)
    _fill(hypotheses=4, range_mode="CUSTOM", frame_start=1, frame_end=20)
    bpy.ops.poseforge.inbetween_cycle(step=1)
    log = _draw_panel()
    assert [e[1] for e in log if e[0] == "prop"][:3] == ["range_mode", "frame_start", "frame_end"]
    assert ("label", "Hypothesis 2 / 4") in log
    buttons = [e[2] for e in log if e[0] == "operator" and e[1].startswith("poseforge.inbetween")]
    assert buttons == ["Previous", "Next", "Accept", "Discard"]
    # the animator edits a filled key: the panel says the hypotheses no longer apply
    from poseforge.rig.actions import find_fcurve
    find_fcurve(rig, 'pose.bones["left_knee"].rotation_quaternion', 1).keyframe_points[2].co[1] = 0.4
    log = _draw_panel()
    assert any(e[0] == "label" and "changed since the fill" in e[1] for e in log)
    assert not any(e[0] == "operator" and e[1] == "poseforge.inbetween_cycle" for e in log)


def test_fill_again_replaces_the_waiting_hypotheses(rig, scripted):
    from poseforge.operators.inbetween import pending_fill

    backend = scripted(fake_inbetween)
    _three_keys(rig)
    original = _full_keys(rig)
    _fill(hypotheses=2, seed=0)
    bpy.ops.poseforge.inbetween_cycle(step=1)
    first = backend.requests[-1][1]
    # another seed and count over the same keys: the filled frames are not taken for keys
    assert _fill(hypotheses=3, seed=5) == {"FINISHED"}
    second = backend.requests[-1][1]
    assert second["known"] == first["known"] and second["fill"] == first["fill"] and second["seed"] == 5
    assert pending_fill().count == 3 and pending_fill().index == 0
    assert _knee_w(rig) == pytest.approx(math.cos(0.1), abs=1e-3)
    bpy.ops.poseforge.inbetween_discard()
    assert _full_keys(rig) == original, "Discard goes back to the keys before the first fill"
    # once accepted, the filled frames are keys like any other
    _fill(hypotheses=2)
    bpy.ops.poseforge.inbetween_accept()
    with pytest.raises(RuntimeError, match="Nothing to fill"):
        _fill(hypotheses=2)


def test_a_bone_never_keyed_holds_its_pose(rig, scripted):
    from poseforge.rig.actions import fcurves

    backend = scripted(fake_inbetween)
    bones = [pb.name for pb in rig.pose.bones if pb.name not in ("left_collar", "prop")]
    rig.pose.bones["left_collar"].rotation_quaternion = (0.98, 0.0, 0.2, 0.0)
    _key(rig, 1, bones=bones)
    _key(rig, 7, bones=bones, lean=20.0)
    assert _fill(hypotheses=1) == {"FINISHED"}
    known = np.array(backend.requests[-1][1]["known"])
    assert known[:, JOINT_INDEX["left_collar"]].all() and not known[1:6, JOINT_INDEX["spine2"]].any()
    assert not any('"left_collar"' in fc.data_path for fc in fcurves(rig)), "a bone never keyed got keys"
    assert tuple(rig.pose.bones["left_collar"].rotation_quaternion) == pytest.approx((0.98, 0.0, 0.2, 0.0), abs=1e-6)
