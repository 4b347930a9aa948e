"""Generate Poses, Edit Pose, Pose Variations and Mix Poses in Blender (bpy in background mode).

The add-on is registered from the repository on the built-in default rig (rig/default_rig.py).
Tests marked ``needs_text2pose`` run the real jobs (in this Python when torch imports here, else
in a child process started from $POSEFORGE_TEST_BACKEND_PYTHON) with the weights the backend
finds by itself (backend/weights, or $POSEFORGE_WEIGHTS_DIR when the caller set it) and skip
until text2pose.safetensors is there; they assert what an animator notices, not pose quality.
The other tests answer the jobs with a scripted backend (what is sent, messages, bad input).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import poseforge  # noqa: E402
from poseforge.backend.service import Event  # noqa: E402
from poseforge.backend.skeleton import JOINT_INDEX, JOINT_NAMES  # noqa: E402
from poseforge.backend.text.parts import BODY_PARTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCH_HERE = importlib.util.find_spec("torch") is not None
BACKEND_PYTHON = os.environ.get("POSEFORGE_TEST_BACKEND_PYTHON", "")
_WEIGHTS = Path(os.environ.get("POSEFORGE_WEIGHTS_DIR") or ROOT / "backend" / "weights")
needs_text2pose = pytest.mark.skipif(
    not all((_WEIGHTS / f"{n}.safetensors").is_file() for n in ("qposer", "text2pose")),
    reason="text-to-pose weights not there yet (text2pose.safetensors in backend/weights)")

LEFT_ARM = set(BODY_PARTS["left_arm"])
RIGHT_ARM = set(BODY_PARTS["right_arm"])
ARMS = LEFT_ARM | RIGHT_ARM


# --- set-up --------------------------------------------------------------------------------------

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
    """The default rig turned and moved (the character stands somewhere, facing somewhere), with
    the pelvis bone turned and lifted and a bent spine, active, in Pose Mode, no keys; an
    unmapped 'prop' bone hangs from the right hand."""
    from mathutils import Quaternion, Vector

    from poseforge.operators import text2pose
    from poseforge.rig.default_rig import build_default_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    text2pose.clear_pending()
    prefs = _prefs()
    prefs.backend, prefs.python_path, prefs.device, prefs.weights_dir = "AUTO", "", "CPU", ""
    if TORCH_HERE:
        prefs.backend = "IN_PROCESS"
    elif BACKEND_PYTHON:
        prefs.backend, prefs.python_path = "CHILD_PROCESS", BACKEND_PYTHON
    bpy.context.window_manager.poseforge_job.last_error = ""
    obj = build_default_rig()
    obj.location = (1.0, -2.0, 0.0)
    obj.rotation_euler = (0.0, 0.0, math.radians(30))
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    prop = obj.data.edit_bones.new("prop")
    wrist = obj.data.edit_bones["right_wrist"]
    prop.head, prop.tail, prop.parent = wrist.tail, wrist.tail + (wrist.tail - wrist.head), wrist
    bpy.ops.object.mode_set(mode="POSE")
    pelvis = obj.pose.bones["pelvis"]
    pelvis.rotation_quaternion = Quaternion(Vector((0, 1, 0)), 0.5)
    pelvis.location = (0.02, 0.05, -0.03)
    obj.pose.bones["spine2"].rotation_quaternion = Quaternion(Vector((1, 0, 0)), 0.3)
    obj.pose.bones["prop"].rotation_quaternion = Quaternion(Vector((0, 0, 1)), 0.4)
    _select(obj, set())
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 20
    scene.frame_set(1)
    scene.tool_settings.use_keyframe_insert_auto = False
    ed = scene.poseforge_edit
    ed.pinned, ed.candidates, ed.seed = "NONE", 3, 0
    gen = scene.poseforge_generate
    gen.prompt, gen.candidates, gen.seed = "The left hand is raised above the head.", 3, 0
    yield obj
    text2pose.clear_pending()


def _quat_x(angle: float) -> list:
    return [math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0]


def fake_text2pose(kind, request):
    """The jobs' contract with made-up poses: candidate i turns the elbows by 0.3 (i + 1) rad
    about X (generate: from the rest pose; edit / variations: the request's pose, elbows only)."""
    n = int(request.get("samples", 1))
    base = np.array(request["rotations"]) if "rotations" in request else np.tile([1.0, 0, 0, 0], (22, 1))
    if kind == "generate":
        base = np.tile([1.0, 0, 0, 0], (22, 1))
    rots = []
    for i in range(n):
        r = base.copy()
        for j in ("left_elbow", "right_elbow"):
            r[JOINT_INDEX[j]] = _quat_x(0.3 * (i + 1))
        rots.append(r)
    data = {"joints": list(JOINT_NAMES), "rotations": np.stack(rots).tolist(), "match": [0.5] * n}
    if kind == "edit":
        data.update(parts=["left_arm", "right_arm"], changed=["left_elbow", "right_elbow"],
                    message="The instruction names no body part: the whole body was re-posed")
    elif kind == "variations":
        data["changed"] = [["left_elbow", "right_elbow"]] * n
    return [Event("scripted", "progress", 0.5, "sampling"), Event("scripted", "result", 1.0, data=data)]


# --- helpers -------------------------------------------------------------------------------------

def _select(obj, names) -> None:
    for pb in obj.pose.bones:
        flag = pb.name in names
        if "select" in pb.bl_rna.properties:
            pb.select = flag
        else:
            pb.bone.select = flag


def _pose(obj) -> dict:
    """Every pose bone's rotation and location, exactly."""
    return {pb.name: (tuple(pb.rotation_quaternion), tuple(pb.location)) for pb in obj.pose.bones}


def _angles(a: dict, b: dict) -> dict:
    """Bone -> rotation angle (rad) between two :func:`_pose` snapshots."""
    out = {}
    for name in a:
        qa, qb = np.array(a[name][0]), np.array(b[name][0])
        dot = abs(float(qa @ qb) / (np.linalg.norm(qa) * np.linalg.norm(qb)))
        out[name] = 2 * math.acos(min(1.0, dot))
    return out


def _moved(a: dict, b: dict, tol: float = 1e-4) -> set:
    return {n for n, ang in _angles(a, b).items() if ang > tol}


def _pelvis_world(obj) -> np.ndarray:
    bpy.context.view_layer.update()
    return np.array(obj.matrix_world @ obj.pose.bones["pelvis"].matrix)


def _root(obj):
    """The armature's canonical pelvis rotation ``(3, 3)`` and position ``(3,)`` (Y up)."""
    from poseforge.rig.bridge import read_pose, rig_map

    local, root = read_pose(obj, rig_map(obj))
    return local[0], root


def _yaw(rot) -> float:
    return math.atan2(rot[0, 2], rot[2, 2])


def _keys(obj) -> dict:
    from poseforge.rig.actions import fcurves

    return {(fc.data_path, fc.array_index): [tuple(round(v, 6) for v in kp.co) for kp in fc.keyframe_points]
            for fc in fcurves(obj)}


def _bend(obj, bone: str, degrees: float, axis=(1, 0, 0)) -> None:
    from mathutils import Quaternion, Vector

    pb = obj.pose.bones[bone]
    pb.rotation_quaternion = Quaternion(Vector(axis), math.radians(degrees)) @ pb.rotation_quaternion


def _generate(*args, **settings):
    s = bpy.context.scene.poseforge_generate
    for k, v in settings.items():
        setattr(s, k, v)
    return bpy.ops.poseforge.generate_poses(*args)


def _edit_settings(**settings):
    s = bpy.context.scene.poseforge_edit
    for k, v in settings.items():
        setattr(s, k, v)
    return s


def _heads(obj) -> dict:
    bpy.context.view_layer.update()
    return {pb.name: np.array(obj.matrix_world @ pb.head) for pb in obj.pose.bones}


# --- generate: candidates, accept, discard, undo, keys (real job) ------------------------------------

@needs_text2pose
def test_generate_cycles_candidates_and_keeps_the_root(rig):
    from poseforge.operators.text2pose import pending_candidates

    original = _pose(rig)
    rot0, root0 = _root(rig)
    assert _generate() == {"FINISHED"}
    p = pending_candidates()
    assert p is not None and (p.index, p.count) == (0, 3)
    shown = [_pose(rig)]
    assert _moved(original, shown[0]) - {"pelvis"}, "the first candidate is shown on the armature"
    for step in (0, 1, 1, 1, -1):
        if step:
            assert bpy.ops.poseforge.generate_cycle(step=step) == {"FINISHED"}
            shown.append(_pose(rig))
        rot, root = _root(rig)
        assert np.allclose(root, root0, atol=1e-5), "the character jumped"
        assert _yaw(rot) == pytest.approx(_yaw(rot0), abs=1e-4), "the character turned"
    assert pending_candidates().index == 2
    assert _moved(shown[0], shown[1]) and _moved(shown[1], shown[2]), "Next shows another pose"
    assert not _moved(shown[0], shown[3], 1e-6), "Next after the last goes back to the first"
    assert not _moved(shown[2], shown[4], 1e-6)
    assert shown[4]["prop"] == original["prop"], "the unmapped prop bone was touched"
    assert rig.animation_data is None, "auto-keying is off: nothing may be keyed"
    assert bpy.ops.poseforge.candidates_accept() == {"FINISHED"}
    assert pending_candidates() is None and _pose(rig) == shown[4], "Accept keeps the candidate shown"
    with pytest.raises(RuntimeError):
        bpy.ops.poseforge.generate_cycle(step=1)  # nothing waits: the poll refuses


@needs_text2pose
def test_discard_restores_the_exact_pose(rig):
    from poseforge.operators.text2pose import pending_candidates

    rig.pose.bones["left_knee"].rotation_mode = "XYZ"  # an Euler bone too
    rig.pose.bones["left_knee"].rotation_euler = (0.7, 0.1, 0.0)
    original = _pose(rig)
    eulers = tuple(rig.pose.bones["left_knee"].rotation_euler)
    _generate(candidates=2)
    bpy.ops.poseforge.generate_cycle(step=1)
    assert _pose(rig) != original
    assert bpy.ops.poseforge.generate_discard() == {"FINISHED"}
    assert _pose(rig) == original, "Discard puts every bone back exactly"
    assert tuple(rig.pose.bones["left_knee"].rotation_euler) == eulers
    assert pending_candidates() is None and rig.animation_data is None


@needs_text2pose
def test_generate_and_browsing_are_one_undo_step(rig):
    original = _pose(rig)
    bpy.ops.ed.undo_push(message="posed")
    # from a script an operator pushes its undo step only when asked (the 2nd argument)
    assert _generate("INVOKE_DEFAULT", True) == {"FINISHED"}
    bpy.ops.poseforge.generate_cycle("EXEC_DEFAULT", True, step=1)
    bpy.ops.poseforge.generate_cycle("EXEC_DEFAULT", True, step=1)
    third = _pose(rig)
    assert third != original
    bpy.ops.poseforge.candidates_accept("EXEC_DEFAULT", True)
    bpy.ops.ed.undo()
    obj = bpy.data.objects["PoseForge Body"]
    assert _angles(_pose(obj), original) == pytest.approx({n: 0.0 for n in original}, abs=1e-6), \
        "one undo goes back to the pose before Generate"
    bpy.ops.ed.redo()
    obj = bpy.data.objects["PoseForge Body"]
    assert not _moved(_pose(obj), third, 1e-6), "redo brings back the candidate accepted"


@needs_text2pose
def test_undone_candidates_are_refused(rig):
    original = _pose(rig)
    bpy.ops.ed.undo_push(message="posed")
    _generate("INVOKE_DEFAULT", True)
    bpy.ops.ed.undo()
    with pytest.raises(RuntimeError, match="changed since the candidates were made"):
        bpy.ops.poseforge.generate_cycle(step=1)
    assert not _moved(_pose(bpy.data.objects["PoseForge Body"]), original, 1e-6)


@needs_text2pose
def test_auto_key_keys_the_shown_candidate_on_the_current_frame(rig):
    scene = bpy.context.scene
    scene.frame_set(7)
    scene.tool_settings.use_keyframe_insert_auto = True
    _generate()
    bpy.ops.poseforge.generate_cycle(step=1)
    keys = _keys(rig)
    keyed = {path.split('"')[1] for path, _ in keys}
    assert keyed == {pb.name for pb in rig.pose.bones} - {"prop"}, "every mapped bone, not the prop"
    assert all([f for f, _ in pts] == [7.0] for pts in keys.values()), "keys on the current frame only"
    shown = _pose(rig)
    scene.frame_set(1)
    scene.frame_set(7)
    assert not _moved(_pose(rig), shown, 1e-5), "the keys hold the candidate shown"
    assert bpy.ops.poseforge.generate_discard() == {"FINISHED"}
    assert _keys(rig) == {}, "Discard removes the keys the candidates added"
    assert rig.animation_data is None or rig.animation_data.action is None, "and the Action keying made"


@needs_text2pose
def test_without_auto_key_no_new_keys(rig):
    rig.pose.bones["head"].keyframe_insert("rotation_quaternion", frame=1)
    before = _keys(rig)
    bpy.context.scene.frame_set(5)
    rig.pose.bones["head"].rotation_quaternion = (1, 0, 0, 0)
    _generate()
    bpy.ops.poseforge.generate_cycle(step=1)
    bpy.ops.poseforge.candidates_accept()
    assert _keys(rig) == before


# --- edit, variations, mix (real job) ------------------------------------------------------------------

@needs_text2pose
def test_edit_raise_the_left_arm_changes_only_the_left_arm(rig):
    from poseforge.operators.text2pose import pending_candidates

    original = _pose(rig)
    _edit_settings(instruction="raise the left arm")
    assert bpy.ops.poseforge.edit_pose() == {"FINISHED"}
    assert pending_candidates().count == 3
    for _ in range(3):
        moved = _moved(original, _pose(rig))
        assert moved and moved <= LEFT_ARM, f"bones outside the left arm moved: {moved - LEFT_ARM}"
        bpy.ops.poseforge.edit_cycle(step=1)
    bpy.ops.poseforge.edit_discard()
    assert _pose(rig) == original


@needs_text2pose
def test_edit_keeps_pinned_bones(rig):
    original = _pose(rig)
    heads = _heads(rig)
    _select(rig, {"right_wrist"})
    _edit_settings(instruction="raise both arms", pinned="SELECTED")
    assert bpy.ops.poseforge.edit_pose() == {"FINISHED"}
    moved = _moved(original, _pose(rig))
    assert moved and moved <= LEFT_ARM, f"pinned right arm or other bones moved: {moved - LEFT_ARM}"
    after = _heads(rig)
    assert np.linalg.norm(after["right_wrist"] - heads["right_wrist"]) < 1e-5
    # every bone the instruction names pinned: refused, nothing changed
    bpy.ops.poseforge.edit_discard()
    _select(rig, {"left_wrist", "right_wrist"})
    with pytest.raises(RuntimeError, match="pinned"):
        bpy.ops.poseforge.edit_pose()
    assert _pose(rig) == original


@needs_text2pose
def test_variations_change_a_share_of_bones_and_keep_pinned_ones(rig):
    original = _pose(rig)
    _select(rig, {"left_foot"})
    _edit_settings(strength=0.3, pinned="SELECTED", candidates=3)
    assert bpy.ops.poseforge.pose_variations() == {"FINISHED"}
    seen = []
    for _ in range(3):
        moved = _moved(original, _pose(rig))
        assert moved, "a variation changes the pose"
        assert not moved & {"pelvis", "left_hip", "left_knee", "left_ankle", "left_foot"}, \
            "a pinned bone (or one it hangs from) moved"
        assert len(moved) <= 12, f"strength 0.3 changed {len(moved)} bones"
        seen.append(_pose(rig))
        bpy.ops.poseforge.variations_cycle(step=1)
    assert _moved(seen[0], seen[1]) or _moved(seen[1], seen[2]), "the variations differ"
    bpy.ops.poseforge.variations_discard()
    assert _pose(rig) == original


@needs_text2pose
def test_mix_takes_the_arms_from_the_stored_pose(rig):
    from mathutils import Quaternion, Vector

    # pose B: arms down along the body, stored
    for side, sign in (("left", 1), ("right", -1)):
        rig.pose.bones[f"{side}_shoulder"].rotation_quaternion = Quaternion(Vector((0, 0, 1)), sign * -1.2)
    assert bpy.ops.poseforge.store_pose() == {"FINISHED"}
    settings = bpy.context.scene.poseforge_edit
    stored = json.loads(settings.stored_pose)
    assert stored["armature"] == rig.name and len(stored["rotations"]) == 22
    wrists_b = _heads(rig)
    # pose A: arms out (rest), knees bent
    for side in ("left", "right"):
        rig.pose.bones[f"{side}_shoulder"].rotation_quaternion = (1, 0, 0, 0)
    _bend(rig, "left_knee", 40)
    before = _pose(rig)
    wrists_a = _heads(rig)
    _edit_settings(mix_source="STORED", mix_arms=True, mix_legs=False, mix_torso=False, mix_head=False)
    assert bpy.ops.poseforge.mix_poses() == {"FINISHED"}
    mixed = _heads(rig)
    for w in ("left_wrist", "right_wrist"):
        assert np.linalg.norm(mixed[w] - wrists_b[w]) < 0.5 * np.linalg.norm(wrists_a[w] - wrists_b[w]), \
            f"the {w} did not come from the stored pose"
    assert np.allclose(_pelvis_world(rig)[:3, 3], np.array(rig.matrix_world @ rig.pose.bones["pelvis"].head),
                       atol=1e-6)
    assert _pose(rig)["prop"] == before["prop"]


# --- what is sent, messages, the second armature (scripted backend) --------------------------------------

def test_generate_sends_the_prompt_and_keeps_the_pelvis(rig, scripted):
    backend = scripted(fake_text2pose)
    original = _pose(rig)
    pelvis = _pelvis_world(rig)
    assert _generate(prompt="  Both hands are raised above the head. ", candidates=5, seed=9) == {"FINISHED"}
    kind, req = backend.requests[-1]
    assert kind == "generate" and req["prompt"] == "Both hands are raised above the head."
    assert (req["samples"], req["seed"]) == (5, 9) and "weights_dir" in req
    # the fake candidates put the pelvis at the rest orientation: the armature keeps its own
    assert np.allclose(_pelvis_world(rig), pelvis, atol=1e-5)
    assert _moved(original, _pose(rig)) >= {"left_elbow", "right_elbow", "spine2"}


def test_a_generated_tilt_keeps_the_armature_heading(rig, scripted):
    from poseforge.backend.retarget import np_matrix_to_quat
    from poseforge.operators.text2pose import heading

    tilt = np.array([[1, 0, 0], [0, math.cos(0.4), -math.sin(0.4)], [0, math.sin(0.4), math.cos(0.4)]])

    def respond(kind, req):
        events = fake_text2pose(kind, req)
        rots = np.array(events[-1].data["rotations"])
        rots[:, 0] = np_matrix_to_quat(tilt)  # leaning forward, facing +Z
        events[-1].data["rotations"] = rots.tolist()
        return events

    scripted(respond)
    rot0, root0 = _root(rig)
    assert abs(_yaw(rot0)) > 0.3, "the test needs an armature that does not face +Z"
    _generate(candidates=1)
    rot, root = _root(rig)
    assert np.allclose(root, root0, atol=1e-5)
    assert np.allclose(rot, heading(rot0) @ tilt, atol=1e-5), "the lean, the armature's own heading"


def test_one_candidate_is_set_at_once(rig, scripted):
    from poseforge.operators.text2pose import pending_candidates

    scripted(fake_text2pose)
    original = _pose(rig)
    assert _generate(candidates=1) == {"FINISHED"}
    assert pending_candidates() is None and _moved(original, _pose(rig))


def test_generate_again_replaces_the_waiting_candidates(rig, scripted):
    from poseforge.operators.text2pose import pending_candidates

    scripted(fake_text2pose)
    original = _pose(rig)
    _generate(candidates=2)
    bpy.ops.poseforge.generate_cycle(step=1)
    _generate(candidates=3, seed=4)
    assert pending_candidates().count == 3 and pending_candidates().index == 0
    bpy.ops.poseforge.generate_discard()
    assert _pose(rig) == original, "Discard goes back to the pose before the first Generate"


@pytest.mark.parametrize("kind", ["edit", "variations"])
def test_edit_and_variations_are_one_undo_step_each(rig, scripted, kind):
    scripted(fake_text2pose)
    _edit_settings(instruction="raise the left arm", candidates=3)
    original = _pose(rig)
    bpy.ops.ed.undo_push(message="posed")
    job = bpy.ops.poseforge.edit_pose if kind == "edit" else bpy.ops.poseforge.pose_variations
    cycle = getattr(bpy.ops.poseforge, f"{kind}_cycle")
    assert job("INVOKE_DEFAULT", True) == {"FINISHED"}
    cycle("EXEC_DEFAULT", True, step=1)
    cycle("EXEC_DEFAULT", True, step=1)
    assert _moved(original, _pose(rig))
    bpy.ops.ed.undo()
    assert not _moved(original, _pose(bpy.data.objects["PoseForge Body"]), 1e-6), \
        "one undo goes back to the pose before the job"


def test_edit_sends_the_pose_and_pins_and_shows_the_message(rig, scripted, _draw):
    from poseforge.operators.text2pose import pending_candidates
    from poseforge.rig.bridge import read_pose, rig_map

    backend = scripted(fake_text2pose)
    _select(rig, {"head", "right_ankle"})
    _edit_settings(instruction="make it nicer", pinned="SELECTED", candidates=2, seed=3)
    original = _pose(rig)
    assert bpy.ops.poseforge.edit_pose() == {"FINISHED"}
    kind, req = backend.requests[-1]
    assert kind == "edit" and req["prompt"] == "make it nicer" and (req["samples"], req["seed"]) == (2, 3)
    assert sorted(req["pinned"]) == ["head", "right_ankle"]
    local, _ = read_pose(rig, rig_map(rig))
    from poseforge.backend.retarget import np_quat_to_matrix
    sent = np_quat_to_matrix(np.array(req["rotations"]))
    assert sent.shape == (22, 3, 3)
    # the pose sent is the one before the edit: spine2 bent 0.3 rad about X
    assert abs(np.degrees(np.arccos((np.trace(sent[JOINT_INDEX["spine2"]]) - 1) / 2)) - math.degrees(0.3)) < 0.1
    assert _moved(original, _pose(rig)) == {"left_elbow", "right_elbow"}, "only the changed bones are written"
    assert "names no body part" in pending_candidates().message
    log = _draw("edit")
    assert any(e[0] == "label" and "names no body part" in e[1] for e in log)


def test_result_message_reaches_the_report(rig, scripted, capsys):
    scripted(fake_text2pose)
    _edit_settings(instruction="something", candidates=1)
    assert bpy.ops.poseforge.edit_pose() == {"FINISHED"}
    out = capsys.readouterr()
    assert "names no body part" in out.out + out.err


def test_mix_reads_the_second_armature(rig, scripted):
    from poseforge.rig.default_rig import build_default_rig

    backend = scripted(lambda kind, req: [Event("scripted", "result", 1.0, data={
        "rotations": [req["rotations_b"]], "parts": req["parts"]})])
    bpy.ops.object.mode_set(mode="OBJECT")
    other = build_default_rig(name="Other Body")
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="POSE")
    other.pose.bones["left_elbow"].rotation_quaternion = _quat_x(1.0)
    settings = _edit_settings(mix_source="ARMATURE", mix_arms=True, mix_head=True)
    with pytest.raises(RuntimeError, match="No second armature"):
        bpy.ops.poseforge.mix_poses()
    settings.mix_armature = other
    assert bpy.ops.poseforge.mix_poses() == {"FINISHED"}
    kind, req = backend.requests[-1]
    assert kind == "mix" and req["parts"] == ["arms", "head"]
    elbow = np.array(req["rotations_b"][JOINT_INDEX["left_elbow"]])
    assert abs(abs(elbow[0]) - math.cos(0.5)) < 1e-4, "the second armature's pose is sent"
    # the mesh of the default rig is not an armature: the field does not offer it
    from poseforge.properties import _mix_armature_poll
    assert _mix_armature_poll(settings, other)
    assert not _mix_armature_poll(settings, bpy.data.objects["Other Body Mesh"])


# --- bad input: a clear message, nothing changed --------------------------------------------------------

def test_empty_prompt_is_refused(rig, scripted):
    backend = scripted(fake_text2pose)
    original = _pose(rig)
    with pytest.raises(RuntimeError, match="The prompt is empty.*preset"):
        _generate(prompt="   ")
    with pytest.raises(RuntimeError, match="The instruction is empty"):
        _edit_settings(instruction="")
        bpy.ops.poseforge.edit_pose()
    assert backend.requests == [] and _pose(rig) == original
    assert "instruction is empty" in bpy.context.window_manager.poseforge_job.last_error


def test_no_armature_is_refused(rig, scripted):
    backend = scripted(fake_text2pose)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = None
    _edit_settings(instruction="raise the left arm", stored_pose="")
    for op in (_generate, bpy.ops.poseforge.edit_pose, bpy.ops.poseforge.pose_variations,
               bpy.ops.poseforge.store_pose):
        with pytest.raises(RuntimeError, match="No armature selected"):
            op()
    assert bpy.context.scene.poseforge_edit.stored_pose == ""
    assert backend.requests == []


def test_unmapped_rig_names_what_is_missing(rig, scripted):
    backend = scripted(fake_text2pose)
    bpy.ops.object.mode_set(mode="EDIT")
    for name in ("left_knee", "left_ankle", "left_foot"):
        rig.data.edit_bones.remove(rig.data.edit_bones[name])
    bpy.ops.object.mode_set(mode="POSE")
    with pytest.raises(RuntimeError, match="humanoid.*left_knee"):
        _generate()
    assert backend.requests == []


def test_job_error_is_reported_and_changes_nothing(rig, scripted):
    scripted(lambda kind, req: [Event("scripted", "error", message="No text2pose weights in the weights folder",
                                      hint="Train them with poseforge train text2pose")])
    original = _pose(rig)
    with pytest.raises(RuntimeError, match="No text2pose weights.*poseforge train text2pose"):
        _generate()
    assert _pose(rig) == original and rig.animation_data is None
    assert "No text2pose weights" in bpy.context.window_manager.poseforge_job.last_error


def test_cancelled_or_malformed_result_changes_nothing(rig, scripted):
    original = _pose(rig)
    scripted(lambda kind, req: [Event("scripted", "cancelled")])
    assert _generate() == {"CANCELLED"}
    scripted(lambda kind, req: [Event("scripted", "result", 1.0, data={"rotations": [[[1, 0, 0, 0]] * 5]})])
    with pytest.raises(RuntimeError, match="shape"):
        _generate()
    assert _pose(rig) == original and rig.animation_data is None


def test_mix_without_parts_or_stored_pose_is_refused(rig, scripted):
    backend = scripted(fake_text2pose)
    _edit_settings(mix_source="STORED", mix_arms=False, mix_legs=False, mix_torso=False, mix_head=False)
    with pytest.raises(RuntimeError, match="No body part is ticked"):
        bpy.ops.poseforge.mix_poses()
    _edit_settings(mix_legs=True)
    with pytest.raises(RuntimeError, match="No pose is stored.*Store Pose"):
        bpy.ops.poseforge.mix_poses()
    assert backend.requests == []


def test_edited_pose_drops_the_candidates(rig, scripted):
    from poseforge.operators.text2pose import pending_candidates

    scripted(fake_text2pose)
    _generate()
    rig.pose.bones["head"].rotation_quaternion = (0.9, 0.1, 0.0, 0.0)  # the animator poses on
    edited = _pose(rig)
    with pytest.raises(RuntimeError, match="changed since the candidates were made"):
        bpy.ops.poseforge.generate_discard()
    assert _pose(rig) == edited and pending_candidates() is None


# --- the panels ---------------------------------------------------------------------------------------

@pytest.fixture
def _draw(panel_log):
    from poseforge.panels.edit import POSEFORGE_PT_edit
    from poseforge.panels.generate import POSEFORGE_PT_generate

    return lambda which: panel_log(POSEFORGE_PT_generate if which == "generate" else POSEFORGE_PT_edit)


def test_panels_show_the_options_then_the_candidates(rig, scripted, _draw):
    scripted(fake_text2pose)
    log = _draw("generate")
    assert [e[1] for e in log if e[0] == "prop"] == ["preset", "prompt", "candidates", "seed"]
    assert ("operator", "poseforge.generate_poses", "Generate") in log
    log = _draw("edit")
    props = [e[1] for e in log if e[0] == "prop"]
    assert props[:5] == ["candidates", "seed", "pinned", "instruction", "strength"]
    assert "mix_armature" in props and {"mix_arms", "mix_legs", "mix_torso", "mix_head"} <= set(props)
    ops = [e[2] for e in log if e[0] == "operator"]
    assert ops == ["Apply", "Variations", "Store Pose", "Mix"]
    _edit_settings(mix_source="STORED")
    assert ("label", "No pose stored") in _draw("edit")
    bpy.ops.poseforge.store_pose()
    assert any(e[0] == "label" and e[1].startswith("Stored: 'PoseForge Body'") for e in _draw("edit"))
    _generate(candidates=4)
    bpy.ops.poseforge.generate_cycle(step=1)
    log = _draw("generate")
    assert any(e[0] == "label" and e[1].startswith("Candidate 2 / 4") for e in log)
    buttons = [e[2] for e in log if e[0] == "operator" and e[1] != "poseforge.generate_poses"]
    assert buttons == ["Previous", "Next", "Accept", "Discard"]
    assert not any(e[0] == "label" and e[1].startswith("Candidate") for e in _draw("edit"))


def test_choosing_a_preset_fills_the_prompt(rig):
    from poseforge.properties import PROMPT_PRESETS

    presets = json.loads((ROOT / "presets" / "prompts" / "presets.json").read_text())
    assert [p["name"] for p in PROMPT_PRESETS] == [p["name"] for p in presets]
    settings = bpy.context.scene.poseforge_generate
    settings.preset = "P3"
    assert settings.prompt == presets[3]["prompt"]
    settings.prompt = "crouch low"  # typed by hand: the menu no longer names the preset
    assert settings.preset == "NONE" and settings.prompt == "crouch low"
