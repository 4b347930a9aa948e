"""The PoseForge operators in Blender (bpy in background mode: the blocking path of the job runner).

The add-on is registered from the repository (``import poseforge; poseforge.register()``) with a
preferences entry, on the built-in default rig (rig/default_rig.py).  Tests that only check how
results are written, cancelled or refused use a scripted backend in place of the real one; tests
marked ``needs_weights`` run the real DPoser job (in this Python when torch imports here, else in
a child process started from $POSEFORGE_TEST_BACKEND_PYTHON) and skip until
backend/weights/dposer.safetensors exists.
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
from poseforge.backend.service import Event  # noqa: E402
from poseforge.backend.skeleton import JOINT_INDEX  # noqa: E402
from poseforge.backend.transport import JobHandle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: $POSEFORGE_TEST_WEIGHTS_DIR tests other weights (e.g. freshly trained ones) through the preferences.
WEIGHTS_DIR = os.environ.get("POSEFORGE_TEST_WEIGHTS_DIR", "")
WEIGHTS = Path(WEIGHTS_DIR or ROOT / "backend" / "weights") / "dposer.safetensors"
TORCH_HERE = importlib.util.find_spec("torch") is not None
BACKEND_PYTHON = os.environ.get("POSEFORGE_TEST_BACKEND_PYTHON", "")


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


def _use_real_backend():
    """Point the preferences at a backend with torch, or skip."""
    prefs = _prefs()
    if TORCH_HERE:
        prefs.backend = "IN_PROCESS"
    elif BACKEND_PYTHON:
        prefs.backend, prefs.python_path = "CHILD_PROCESS", BACKEND_PYTHON
    else:
        pytest.skip("no torch in this Python and POSEFORGE_TEST_BACKEND_PYTHON is not set")
    prefs.device = "CPU"
    prefs.weights_dir = WEIGHTS_DIR
    return prefs


needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(),
                                   reason=f"DPoser weights not there yet ({WEIGHTS.name} in backend/weights "
                                          "or $POSEFORGE_TEST_WEIGHTS_DIR)")


@pytest.fixture
def rig():
    """A fresh scene with the default rig, active and selected, in Pose Mode, no keys."""
    from poseforge.rig.default_rig import build_default_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    prefs = _prefs()
    prefs.backend, prefs.python_path, prefs.device, prefs.weights_dir = "AUTO", "", "CPU", ""
    bpy.context.window_manager.poseforge_job.last_error = ""
    obj = build_default_rig()
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="POSE")
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 20
    scene.frame_set(1)
    scene.tool_settings.use_keyframe_insert_auto = False
    return obj


# --- helpers -------------------------------------------------------------------------------------

def _select(obj, names) -> None:
    for pb in obj.pose.bones:
        flag = pb.name in names
        if "select" in pb.bl_rna.properties:
            pb.select = flag
        else:
            pb.bone.select = flag


def _heads(obj) -> dict[str, np.ndarray]:
    bpy.context.view_layer.update()
    return {pb.name: np.array(obj.matrix_world @ pb.head) for pb in obj.pose.bones}


def _rotations(obj) -> dict[str, tuple]:
    return {pb.name: tuple(round(v, 6) for v in pb.rotation_quaternion) for pb in obj.pose.bones}


def _bend(obj, bone: str, degrees: float, axis: str = "X") -> None:
    from mathutils import Quaternion, Vector

    pb = obj.pose.bones[bone]
    pb.rotation_mode = "QUATERNION"
    ax = Vector({"X": (1, 0, 0), "Y": (0, 1, 0), "Z": (0, 0, 1)}[axis])
    pb.rotation_quaternion = Quaternion(ax, math.radians(degrees)) @ pb.rotation_quaternion


def _break_knee(obj, bone: str = "left_knee", degrees: float = 70.0) -> None:
    """Bend the knee the wrong way: the shin swings forward (Blender -Y is the body's front)."""
    below = {"left_knee": "left_ankle", "right_knee": "right_ankle"}[bone]
    before = _heads(obj)[below][1]
    _bend(obj, bone, degrees)
    if _heads(obj)[below][1] > before:  # moved backward: that is a natural bend, flip it
        _bend(obj, bone, -2 * degrees)


def _snapshot_keys(obj) -> dict:
    from poseforge.rig.actions import fcurves

    return {(fc.data_path, fc.array_index): [tuple(round(v, 6) for v in kp.co) for kp in fc.keyframe_points]
            for fc in fcurves(obj)}


def _straighten(kind, request, joints=("left_knee",)):
    """A scripted snap result: the request's pose with ``joints`` set to the rest rotation."""
    rots = np.array(request["rotations"], dtype=float)
    for j in joints:
        rots[:, JOINT_INDEX[j]] = (1.0, 0.0, 0.0, 0.0)
    n = len(rots)
    data = {"rotations": rots.tolist(), "root": request["root"], "moved_mm": np.zeros((n, 22)).tolist(),
            "energy_before": [1.0] * n, "energy_after": [0.5] * n}
    return [Event("scripted", "progress", 0.5, "half way"), Event("scripted", "result", 1.0, data=data)]


# --- refusing bad input, changing nothing ---------------------------------------------------------

def test_no_armature_selected_is_a_clear_error_and_changes_nothing(rig):
    _break_knee(rig)
    before = _rotations(rig)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="No armature selected"):
        bpy.ops.poseforge.snap_pose()
    assert _rotations(rig) == before
    assert "No armature selected" in bpy.context.window_manager.poseforge_job.last_error


def test_a_mesh_is_not_an_armature(rig):
    bpy.ops.object.mode_set(mode="OBJECT")
    mesh = bpy.data.objects.new("Box", bpy.data.meshes.new("Box"))
    bpy.context.scene.collection.objects.link(mesh)
    bpy.context.view_layer.objects.active = mesh
    with pytest.raises(RuntimeError, match="'Box' is not an armature"):
        bpy.ops.poseforge.snap_pose()


def test_non_humanoid_armature_names_what_is_missing(rig, scripted):
    backend = scripted(_straighten)
    bpy.ops.object.mode_set(mode="OBJECT")
    arm = bpy.data.armatures.new("Tail")
    obj = bpy.data.objects.new("Tail", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    parent = None
    for i in range(4):
        eb = arm.edit_bones.new(f"tail{i}")
        eb.head, eb.tail, eb.parent = (0, i * 0.2, 0), (0, (i + 1) * 0.2, 0), parent
        parent = eb
    bpy.ops.object.mode_set(mode="POSE")
    with pytest.raises(RuntimeError, match="humanoid.*pelvis"):
        bpy.ops.poseforge.snap_pose()
    assert backend.requests == [], "no job may start for a rig that cannot be mapped"
    assert obj.animation_data is None


def test_keys_in_range_without_keys_is_a_clear_error(rig, scripted):
    scripted(_straighten)
    bpy.context.scene.poseforge_snap.scope = "KEYS_IN_RANGE"
    with pytest.raises(RuntimeError, match="no keys .* frames 1-20"):
        bpy.ops.poseforge.snap_pose()


def test_failed_job_reports_message_and_hint_and_changes_nothing(rig, scripted):
    scripted(lambda kind, req: [Event("scripted", "progress", 0.3, "loading"),
                                Event("scripted", "error", message="No DPoser weights in the weights folder",
                                      hint="Check the weights folder in the PoseForge preferences")])
    _break_knee(rig)
    before = _rotations(rig)
    with pytest.raises(RuntimeError, match="No DPoser weights.*Check the weights folder"):
        bpy.ops.poseforge.snap_pose()
    assert _rotations(rig) == before
    job = bpy.context.window_manager.poseforge_job
    assert not job.running and "No DPoser weights" in job.last_error


def test_cancelled_job_changes_nothing(rig, scripted):
    scripted(lambda kind, req: [Event("scripted", "progress", 0.3, "snapping"), Event("scripted", "cancelled")])
    _break_knee(rig)
    before = _rotations(rig)
    assert bpy.ops.poseforge.snap_pose() == {"CANCELLED"}
    assert _rotations(rig) == before
    assert rig.animation_data is None


def test_backend_python_that_cannot_start_is_reported(rig, tmp_path):
    prefs = _prefs()
    prefs.backend, prefs.python_path = "CHILD_PROCESS", str(tmp_path / "no-such-python")
    _break_knee(rig)
    before = _rotations(rig)
    with pytest.raises(RuntimeError, match="Cannot start the backend Python.*preferences"):
        bpy.ops.poseforge.snap_pose()
    assert _rotations(rig) == before


def test_child_process_without_python_tells_where_to_set_it(rig):
    prefs = _prefs()
    prefs.backend, prefs.python_path = "CHILD_PROCESS", ""
    with pytest.raises(RuntimeError, match="no backend Python is set.*preferences"):
        bpy.ops.poseforge.snap_pose()


# --- writing results --------------------------------------------------------------------------------

def test_snap_writes_the_result_in_one_undo_step(rig, scripted):
    from poseforge.rig.bridge import read_pose, rig_map

    backend = scripted(_straighten)
    _break_knee(rig)
    broken = _rotations(rig)["left_knee"]
    bpy.ops.ed.undo_push(message="broken knee")
    # called from a script, an operator pushes its undo step only when asked (the 2nd argument)
    assert bpy.ops.poseforge.snap_pose("INVOKE_DEFAULT", True) == {"FINISHED"}
    kind, request = backend.requests[-1]
    assert kind == "snap" and len(request["rotations"]) == 1 and len(request["rotations"][0]) == 22
    assert request["strength"] == pytest.approx(0.5)
    local, _ = read_pose(rig, rig_map(rig))
    assert np.allclose(local[JOINT_INDEX["left_knee"]], np.eye(3), atol=1e-4), "the result was not written"
    assert rig.animation_data is None or not rig.animation_data.action, "an unkeyed pose must not get keys"
    bpy.ops.ed.undo()
    obj = bpy.data.objects["PoseForge Body"]
    assert tuple(round(v, 6) for v in obj.pose.bones["left_knee"].rotation_quaternion) == broken


def test_snap_keys_only_bones_that_were_keyed(rig, scripted):
    from poseforge.rig.actions import fcurves

    scripted(_straighten)
    _break_knee(rig)
    rig.pose.bones["left_knee"].keyframe_insert("rotation_quaternion", frame=1)
    bpy.ops.poseforge.snap_pose()
    paths = {fc.data_path for fc in fcurves(rig)}
    assert paths == {'pose.bones["left_knee"].rotation_quaternion'}
    fc = [f for f in fcurves(rig) if f.array_index == 0][0]
    assert fc.keyframe_points[0].co[1] == pytest.approx(1.0, abs=1e-4), "the key holds the snapped rotation"


def test_snap_with_auto_keying_keys_every_written_bone(rig, scripted):
    from poseforge.rig.actions import fcurves

    scripted(_straighten)
    _break_knee(rig)
    bpy.context.scene.tool_settings.use_keyframe_insert_auto = True
    bpy.ops.poseforge.snap_pose()
    keyed = {fc.data_path.split('"')[1] for fc in fcurves(rig)}
    assert keyed == {pb.name for pb in rig.pose.bones}  # the default rig maps every bone


def test_pinned_bones_are_sent_to_the_job(rig, scripted):
    backend = scripted(_straighten)
    settings = bpy.context.scene.poseforge_snap
    _select(rig, {"right_wrist", "left_ankle"})
    bpy.ops.poseforge.snap_pose()
    pinned = backend.requests[-1][1]["pinned"]
    assert [i for i, p in enumerate(pinned) if p] == sorted([JOINT_INDEX["right_wrist"], JOINT_INDEX["left_ankle"]])
    settings.pinned = "LOCKED"
    rig.pose.bones["head"].lock_rotation = (True, True, True)
    rig.pose.bones["neck"].lock_rotation = (True, False, True)  # not all three: not pinned
    bpy.ops.poseforge.snap_pose()
    pinned = backend.requests[-1][1]["pinned"]
    assert [i for i, p in enumerate(pinned) if p] == [JOINT_INDEX["head"]]
    settings.pinned = "NONE"
    bpy.ops.poseforge.snap_pose()
    assert not any(backend.requests[-1][1]["pinned"])


def _key_frames(obj, frames, broken_frames, spine_step: float = 5.0) -> None:
    """Key every bone at ``frames``; the knee is broken at ``broken_frames``; the spine bends
    ``spine_step`` degrees more on each frame."""
    for f in frames:
        for pb in obj.pose.bones:
            pb.rotation_mode = "QUATERNION"
            pb.rotation_quaternion = (1, 0, 0, 0)
        _bend(obj, "spine2", spine_step * f)
        if f in broken_frames:
            _break_knee(obj)
        for pb in obj.pose.bones:
            pb.keyframe_insert("rotation_quaternion", frame=f)


def test_keys_in_range_snaps_every_keyed_frame(rig, scripted):
    backend = scripted(_straighten)
    _key_frames(rig, [1, 5, 9, 30], broken_frames={5, 30})
    bpy.context.scene.poseforge_snap.scope = "KEYS_IN_RANGE"
    bpy.context.scene.frame_set(3)
    bpy.ops.poseforge.snap_pose()
    assert len(backend.requests[-1][1]["rotations"]) == 3, "frame 30 is outside the scene range"
    assert bpy.context.scene.frame_current == 3, "the current frame is restored"
    before_30 = None
    for f in (1, 5, 9):
        bpy.context.scene.frame_set(f)
        assert tuple(round(v, 4) for v in rig.pose.bones["left_knee"].rotation_quaternion) == (1, 0, 0, 0)
    bpy.context.scene.frame_set(30)
    before_30 = rig.pose.bones["left_knee"].rotation_quaternion
    assert abs(before_30[0]) < 0.99, "the key outside the range stays broken"


def test_fix_keys_writes_only_the_frames_the_backend_fixed(rig, scripted):
    from poseforge.rig.actions import fcurves

    def respond(kind, request):
        n = len(request["rotations"])
        rots = np.array(request["rotations"])[[1]]
        rots[:, JOINT_INDEX["left_knee"]] = (1.0, 0.0, 0.0, 0.0)
        data = {"scores": [0.1, 3.0, 0.2][:n], "fixed": [1], "rotations": rots.tolist(),
                "root": np.array(request["root"])[[1]].tolist(), "scores_after": [0.3]}
        return [Event("scripted", "result", 1.0, data=data)]

    backend = scripted(respond)
    _key_frames(rig, [1, 5, 9], broken_frames={1, 5, 9})
    before = _snapshot_keys(rig)
    bpy.context.scene.poseforge_snap.threshold = 1.5
    bpy.ops.poseforge.fix_keys()
    assert backend.requests[-1][1]["threshold"] == pytest.approx(1.5)
    after = _snapshot_keys(rig)
    changed = {f for key in before for (f, v), (f2, v2) in zip(before[key], after[key]) if v != v2}
    assert changed == {5.0}
    knee_w = [fc for fc in fcurves(rig) if fc.data_path.endswith('"left_knee"].rotation_quaternion')
              and fc.array_index == 0][0]
    assert knee_w.evaluate(5) == pytest.approx(1.0, abs=1e-4)
    scored = bpy.context.window_manager.poseforge_job.scored_keys
    assert [k.frame for k in scored] == [5, 9, 1] and scored[0].score == pytest.approx(0.3)


def test_score_keys_lists_the_worst_keys_first(rig, scripted):
    scripted(lambda kind, req: [Event("scripted", "result", 1.0, data={"scores": [0.5, 2.5, 1.0]})])
    _key_frames(rig, [2, 4, 6], broken_frames={4})
    before = _snapshot_keys(rig)
    with pytest.raises(RuntimeError, match="no keys"):
        bpy.context.scene.frame_start = 10
        bpy.ops.poseforge.score_keys()
    bpy.context.scene.frame_start = 1
    assert bpy.ops.poseforge.score_keys() == {"FINISHED"}
    job = bpy.context.window_manager.poseforge_job
    assert [(k.frame, round(k.score, 3)) for k in job.scored_keys] == [(4, 2.5), (6, 1.0), (2, 0.5)]
    assert job.scored_object == rig.name and job.scored_count == 3
    assert _snapshot_keys(rig) == before, "scoring changes no key"


# --- rig matching ---------------------------------------------------------------------------------

def test_match_rig_lists_every_joint_and_keeps_hand_fixes(rig):
    assert bpy.ops.poseforge.match_rig() == {"FINISHED"}
    settings = rig.poseforge_rig
    assert [i.joint for i in settings.joints][:3] == ["pelvis", "left_hip", "right_hip"]
    assert len(settings.joints) == 22 and all(i.bone for i in settings.joints)
    assert not settings.unmatched and "22 of 22" in settings.status
    assert not any(i.override for i in settings.joints)
    # the animator picks the bone for a joint by hand: it becomes an override the bridge uses
    head = next(i for i in settings.joints if i.joint == "head")
    head.bone = "neck"
    assert head.override
    with pytest.raises(RuntimeError, match="'neck' is mapped to both"):
        bpy.ops.poseforge.snap_pose()
    head.bone = "head"
    bpy.ops.poseforge.match_rig()
    assert settings.matched_preset.endswith("+overrides") and "by hand" in settings.status
    bpy.ops.poseforge.match_rig(reset=True)
    assert not any(i.override for i in settings.joints) and not settings.matched_preset.endswith("+overrides")


def test_match_rig_on_a_non_humanoid_shows_the_partial_match(rig):
    bpy.ops.object.mode_set(mode="EDIT")
    for eb in list(rig.data.edit_bones):
        if eb.name.startswith(("left_", "right_")) and not eb.name.endswith(("hip", "knee", "ankle", "foot")):
            continue
        if eb.name in {"left_knee", "left_ankle", "left_foot"}:
            rig.data.edit_bones.remove(eb)
    bpy.ops.object.mode_set(mode="POSE")
    bpy.ops.poseforge.match_rig()
    settings = rig.poseforge_rig
    assert "left_knee" in settings.unmatched and "humanoid" in settings.status
    assert next(i for i in settings.joints if i.joint == "pelvis").bone == "pelvis"


# --- the real backend ------------------------------------------------------------------------------

def test_test_backend_button_reports_torch(rig):
    _use_real_backend()
    assert bpy.ops.poseforge.test_backend() == {"FINISHED"}
    status = bpy.context.window_manager.poseforge_job.backend_status
    assert status.startswith("Backend OK") and "torch" in status and "cpu" in status


def _knee_in_front(obj) -> float:
    """How far (m) the left knee is in front of the hip-ankle line (Blender's front is -Y)."""
    h = _heads(obj)
    return float(-(h["left_knee"][1] - (h["left_hip"][1] + h["left_ankle"][1]) / 2))


@needs_weights
def test_snap_keeps_pinned_bones_and_fixes_the_broken_knee(rig):
    from poseforge.backend.retarget import np_matrix_to_axis_angle
    from poseforge.rig.bridge import read_pose, rig_map

    _use_real_backend()
    _break_knee(rig, degrees=80)
    _bend(rig, "right_elbow", -100, axis="Z")
    pinned = {"right_wrist", "left_foot"}
    _select(rig, pinned)
    bpy.context.scene.poseforge_snap.strength = 0.8
    heads = _heads(rig)
    assert _knee_in_front(rig) < -0.05, "the broken knee points backward"
    broken = _rotations(rig)
    bpy.ops.ed.undo_push(message="broken pose")
    assert bpy.ops.poseforge.snap_pose("INVOKE_DEFAULT", True) == {"FINISHED"}
    after = _heads(rig)
    for name in pinned:
        assert np.linalg.norm(after[name] - heads[name]) < 1e-3, f"pinned bone {name} moved"
    # with the foot pinned the knee angle cannot change (hip and ankle stay): the fix is the knee
    # swinging round to the front, as a flipped IK pole put right
    assert _knee_in_front(rig) > 0.05, "the broken knee still points backward"
    assert _rotations(rig) != broken
    bpy.ops.ed.undo()
    assert _rotations(bpy.data.objects["PoseForge Body"]) == broken, "one undo restores the broken pose"


@needs_weights
def test_fix_keys_changes_only_keys_above_the_threshold_and_not_unmapped_bones(rig):
    _use_real_backend()
    # an extra bone the rig map does not cover (a prop in the right hand), keyed on every frame
    bpy.ops.object.mode_set(mode="EDIT")
    prop = rig.data.edit_bones.new("prop")
    wrist = rig.data.edit_bones["right_wrist"]
    prop.head, prop.tail, prop.parent = wrist.tail, wrist.tail + (wrist.tail - wrist.head), wrist
    bpy.ops.object.mode_set(mode="POSE")
    frames = [1, 4, 7, 10, 13]
    _key_frames(rig, frames, broken_frames={4, 10}, spine_step=1.0)  # a natural lean, 1-13 degrees
    for f in frames:
        pb = rig.pose.bones["prop"]
        pb.rotation_quaternion = (math.cos(0.1 * f), math.sin(0.1 * f), 0, 0)
        pb.keyframe_insert("rotation_quaternion", frame=f)
    assert bpy.ops.poseforge.score_keys() == {"FINISHED"}
    job = bpy.context.window_manager.poseforge_job
    scores = {k.frame: k.score for k in job.scored_keys}
    assert max(scores, key=scores.get) in (4, 10), f"a broken key should score worst: {scores}"
    ordered = sorted(scores.values())
    threshold = (ordered[-2] + ordered[-3]) / 2  # the two worst keys are above it
    bpy.context.scene.poseforge_snap.threshold = threshold
    before = _snapshot_keys(rig)
    assert bpy.ops.poseforge.fix_keys() == {"FINISHED"}
    after = _snapshot_keys(rig)
    above = {float(f) for f, s in scores.items() if s > threshold}
    changed = {f for key in before for (f, v), (f2, v2) in zip(before[key], after[key]) if v != v2}
    assert changed and changed <= above
    prop_keys = {k: v for k, v in before.items() if '"prop"' in k[0]}
    assert prop_keys and all(after[k] == v for k, v in prop_keys.items()), "keys of an unmapped bone changed"


# --- the modal path of the job runner (what the UI uses; background mode always blocks) -----------

class _FakeWM:
    def __init__(self):
        from types import SimpleNamespace

        self.poseforge_job = SimpleNamespace(running=False, kind="", progress=0.0, message="", last_error="")
        self.windows = []
        self.progress: list[float] = []
        self.timers = 0

    def event_timer_add(self, step, window=None):
        self.timers += 1
        return "timer"

    def event_timer_remove(self, timer):
        self.timers -= 1

    def progress_begin(self, lo, hi):
        pass

    def progress_update(self, value):
        self.progress.append(value)

    def progress_end(self):
        pass

    def modal_handler_add(self, op):
        pass


def test_modal_runner_shows_progress_cancels_on_esc_and_applies_once(monkeypatch):
    from types import SimpleNamespace

    from poseforge.operators import _job

    cancels = []
    handles = []

    class Backend:
        name = "scripted"

        def submit(self, kind, request):
            handles.append(JobHandle(f"job{len(handles)}", kind, lambda: cancels.append(kind)))
            return handles[-1]

    class Op(_job.JobOperator):
        job_kind, job_label = "snap", "Fake job"

        def __init__(self):
            self.reports, self.applied = [], []

        def report(self, level, message):
            self.reports.append((sorted(level)[0], message))

        def prepare(self, context):
            return {"rotations": []}

        def apply(self, context, result):
            self.applied.append(result)
            return "applied"

    monkeypatch.setattr(_job, "get_backend", lambda context=None: Backend())
    monkeypatch.setattr(_job, "bpy", SimpleNamespace(app=SimpleNamespace(background=False)))
    wm = _FakeWM()
    ctx = SimpleNamespace(window_manager=wm, window=None, workspace=None)
    ev = lambda kind, value="NOTHING": SimpleNamespace(type=kind, value=value)  # noqa: E731

    # 1. progress, then Esc: the job is asked to stop and nothing is applied
    op = Op()
    assert op.invoke(ctx, ev("LEFTMOUSE", "PRESS")) == {"RUNNING_MODAL"}
    assert _job.job_running() and wm.poseforge_job.running
    handles[-1]._push(Event("job0", "progress", 0.4, "half way"))
    assert op.modal(ctx, ev("TIMER")) == {"RUNNING_MODAL"}
    assert wm.poseforge_job.progress == pytest.approx(0.4) and wm.poseforge_job.message == "half way"
    assert wm.progress == [pytest.approx(0.4)]
    assert op.modal(ctx, ev("MOUSEMOVE")) == {"PASS_THROUGH"}, "the animator keeps working while it runs"
    assert op.modal(ctx, ev("ESC", "PRESS")) == {"RUNNING_MODAL"} and cancels == ["snap"]
    handles[-1]._push(Event("job0", "cancelled"))
    assert op.modal(ctx, ev("TIMER")) == {"CANCELLED"}
    assert op.applied == [] and op.reports[-1][0] == "WARNING" and "nothing changed" in op.reports[-1][1]
    assert not _job.job_running() and not wm.poseforge_job.running and wm.timers == 0

    # 2. a result: applied once, on the timer (the main thread), then FINISHED (the undo step)
    op = Op()
    op.invoke(ctx, ev("LEFTMOUSE", "PRESS"))
    handles[-1]._push(Event("job1", "result", 1.0, data={"rotations": [[0]]}))
    assert op.modal(ctx, ev("TIMER")) == {"FINISHED"}
    assert op.applied == [{"rotations": [[0]]}] and op.reports[-1] == ("INFO", "applied")

    # 3. an error: reported with its hint, nothing applied
    op = Op()
    op.invoke(ctx, ev("LEFTMOUSE", "PRESS"))
    handles[-1]._push(Event("job2", "error", message="The backend process stopped", hint="Check the Python"))
    assert op.modal(ctx, ev("TIMER")) == {"CANCELLED"}
    assert op.applied == [] and op.reports[-1] == ("ERROR", "The backend process stopped. Check the Python")
    assert wm.poseforge_job.last_error.startswith("The backend process stopped")

    # 4. Blender ends the operator itself (a file is opened): the job is asked to stop, and the
    # runner is free again although nobody will poll that job any more
    op = Op()
    op.invoke(ctx, ev("LEFTMOUSE", "PRESS"))
    assert _job.job_running()
    op.cancel(ctx)
    assert cancels[-1] == "snap" and not _job.job_running() and not wm.poseforge_job.running


# --- a real character rig (Quaternius Male_Casual: IK legs, fingers, pole targets) ----------------

def _open_quaternius(characters_dir):
    path = characters_dir / "quaternius_animated_people" / "Male_Casual.blend"
    bpy.ops.wm.open_mainfile(filepath=str(path))
    _prefs()
    obj = bpy.data.objects["HumanArmature"]
    obj.animation_data.action = None  # the idle clip would re-pose the rig on every frame change
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="POSE")
    bpy.context.scene.tool_settings.use_keyframe_insert_auto = False
    return obj


def test_snap_on_a_real_rig_touches_only_mapped_bones(characters_dir, scripted):
    from poseforge.rig.bridge import read_pose, rig_map

    obj = _open_quaternius(characters_dir)
    scripted(_straighten)
    rm = rig_map(obj)
    unmapped = [pb.name for pb in obj.pose.bones if pb.name not in rm.bones.values()]
    before = {n: [tuple(round(v, 6) for v in row) for row in obj.pose.bones[n].matrix_basis] for n in unmapped}
    assert bpy.ops.poseforge.match_rig() == {"FINISHED"}
    assert obj.poseforge_rig.matched_preset == "preset:quaternius"
    assert bpy.ops.poseforge.snap_pose() == {"FINISHED"}
    local, _ = read_pose(obj, rm)
    assert np.allclose(local[JOINT_INDEX["left_knee"]], np.eye(3), atol=1e-3)
    after = {n: [tuple(round(v, 6) for v in row) for row in obj.pose.bones[n].matrix_basis] for n in unmapped}
    assert after == before, "bones outside the rig map (fingers, pole targets) must not change"


@needs_weights
def test_real_snap_on_a_real_rig_keeps_pinned_bones(characters_dir):
    from poseforge.rig.bridge import rig_map

    obj = _open_quaternius(characters_dir)
    _use_real_backend()
    rm = rig_map(obj)
    knee = obj.pose.bones[rm.bones["right_knee"]]
    knee.rotation_mode = "XYZ"
    knee.rotation_euler = (math.radians(-75), 0, 0)
    pinned = {rm.bones["left_wrist"], rm.bones["head"]}
    _select(obj, pinned)
    heads = _heads(obj)
    assert bpy.ops.poseforge.snap_pose() == {"FINISHED"}
    after = _heads(obj)
    for name in pinned:
        assert np.linalg.norm(after[name] - heads[name]) < 1e-3, f"pinned bone {name} moved"
