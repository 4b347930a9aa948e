"""Headless demo of "Snap to plausible pose" on real Blender data (run by ``./run.sh demo``).

Without arguments: builds the default rig (the canonical body as a skinned armature, made by code),
keys poses drawn from the shipped DPoser prior, breaks them the way a hurried animator does (an
IK pole flipped, so a knee or an elbow bends the wrong way while the hand or foot stays put, plus
a neck or wrist overturned), pins the hands, feet and head, runs the add-on's own "Snap to
Plausible Pose" operator on every key and writes ``demo.blend``, before/after renders and
``report.json`` (per-joint errors against the unbroken poses, implausibility scores, timings).

With ``--rig FILE`` (.blend / .fbx / .glb / .gltf) and ``--bvh FILE``: the clip is retargeted onto
the user's rig and keyed, some keys are broken the same way, and the add-on's "Fix Implausible
Keys" finds and fixes them; errors are measured against the clip.

Then, on a second action, a few keys half a second apart (the snapped poses, or the clip's own
frames) are filled by the add-on's "Fill Keyframe Gaps"; with a clip the filled frames are
measured against it, next to Blender's own interpolation of the same keys.

Last, the add-on's "Render Textured Preview" renders that in-between action as ``preview.mp4``
(the rig's own mesh rendered once as the reference, 128 px high, from the scene camera).

    python -m poseforge.demo [--rig FILE] [--bvh FILE] [--out DIR] [--keys N] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .backend.retarget import np_axis_angle_to_matrix
from .backend.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, forward_kinematics_np

#: Joints an animator typically places by hand (IK targets): they are pinned when snapping.
PINNED = ("head", "left_wrist", "right_wrist", "left_ankle", "right_ankle")
#: Limb chains whose pole can flip: (root joint, middle joint, end joint).
LIMBS = (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"),
         ("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist"))


class DemoError(RuntimeError):
    """The demo cannot run on this input (message says why)."""


# --- breaking poses the way a hurried animator does --------------------------------------------

def flip_pole(local: np.ndarray, root: np.ndarray, limb: tuple[str, str, str], angle: float,
              offsets: np.ndarray | None = None) -> np.ndarray:
    """Swivel a limb about its root->end axis by ``angle`` (radians), keeping the end where it is.

    This is what a flipped IK pole does: the hand or foot stays, the elbow or knee swings round.
    The end joint's global rotation is kept too (the animator's IK control did not move).

    Args:
        local: ``(22, 3, 3)`` canonical local rotations; root: ``(3,)`` metres.
        offsets: the rig's joint offsets (``rig.bridge.read_offsets``) so the hand or foot stays
            put on THAT rig; default the canonical body.
    Returns:
        New ``(22, 3, 3)`` local rotations.
    """
    a, m, e = (JOINT_INDEX[n] for n in limb)
    pos, glob = forward_kinematics_np(local, root, offsets)
    axis = pos[e] - pos[a]
    swivel = np_axis_angle_to_matrix(axis / np.linalg.norm(axis) * angle)
    new_glob_a = swivel @ glob[a]
    out = local.copy()
    out[a] = glob[PARENTS[a]].T @ new_glob_a
    # end joint keeps its global rotation: L_e = G_parent(e)^T G_e with the new parent chain
    _, glob2 = forward_kinematics_np(out, root, offsets)
    out[e] = glob2[PARENTS[e]].T @ glob[e]
    return out


def overturn(local: np.ndarray, joint: str, axis: tuple[float, float, float], angle: float) -> np.ndarray:
    """Add a local rotation of ``angle`` radians about ``axis`` at ``joint`` (e.g. a neck turned 150°)."""
    out = local.copy()
    j = JOINT_INDEX[joint]
    out[j] = out[j] @ np_axis_angle_to_matrix(np.asarray(axis, dtype=np.float64) * angle)
    return out


def limb_bend(local: np.ndarray, root: np.ndarray, limb: tuple[str, str, str]) -> float:
    """Bend of a limb at its middle joint (radians; 0 = straight)."""
    a, m, e = (JOINT_INDEX[n] for n in limb)
    pos, _ = forward_kinematics_np(local, root)
    d1, d2 = pos[m] - pos[a], pos[e] - pos[m]
    return float(np.arccos(np.clip(d1 @ d2 / (np.linalg.norm(d1) * np.linalg.norm(d2)), -1, 1)))


def break_pose(local: np.ndarray, root: np.ndarray, rng: np.random.Generator,
               min_bend: float = np.deg2rad(25.0), offsets: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Break one pose: the pole of one or two bent limbs flipped by 150 degrees.

    A straight limb is left alone: turning it about its own axis changes nothing visible.
    Returns the new local rotations and the middle joints that were broken.
    """
    bent = [i for i, limb in enumerate(LIMBS) if limb_bend(local, root, limb) >= min_bend]
    names = []
    for li in rng.permutation(bent)[: int(rng.integers(1, 3))]:
        local = flip_pole(local, root, LIMBS[li], np.deg2rad(150.0) * rng.choice([-1, 1]), offsets)
        names.append(LIMBS[li][1])
    return local, names


# --- Blender helpers ------------------------------------------------------------------------------

def load_rig(path: Path):
    """Open or import a rig file and return its first armature that maps onto the canonical body."""
    import bpy

    from .rig.bridge import RigError, rig_map

    ext = path.suffix.lower()
    if not path.is_file():
        raise DemoError(f"No rig file at {path}")
    if ext == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(path))
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        if ext == ".fbx":
            bpy.ops.import_scene.fbx(filepath=str(path))
        elif ext in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=str(path))
        else:
            raise DemoError(f"Unsupported rig file '{path.name}' (use .blend, .fbx, .glb or .gltf)")
    errors = []
    for obj in bpy.context.scene.objects:
        if obj.type != "ARMATURE":
            continue
        try:
            rig_map(obj)
            return obj
        except RigError as exc:
            errors.append(f"{obj.name}: {exc}")
    raise DemoError(f"No humanoid armature in {path.name}" + (f" ({'; '.join(errors)})" if errors else ""))


def clear_animation(obj) -> None:
    """Start from a clean slate on the demo copy: no action, rest pose (the file is not saved back)."""
    if obj.animation_data is not None:
        obj.animation_data.action = None
    for pb in obj.pose.bones:
        pb.matrix_basis.identity()


def select_bones(obj, rigmap, joints) -> None:
    """Select exactly the pose bones of ``joints`` (the pinned ones)."""
    import bpy

    from .operators._rig import bone_selected  # noqa: F401  (same selection API as the operators)

    for pb in obj.pose.bones:
        sel = any(rigmap.bones.get(j) == pb.name for j in joints)
        if "select" in pb.bl_rna.properties:
            pb.select = sel
        else:
            pb.bone.select = sel
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)


def setup_render(obj, out_res=(480, 640)) -> None:
    """Workbench, an orthographic front camera framing the character, a floor-grey world."""
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = out_res
    scene.render.film_transparent = False
    if scene.world is None:
        scene.world = bpy.data.worlds.new("PoseForge Demo World")
    scene.world.color = (0.18, 0.19, 0.21)
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "MATERIAL"
    meshes = [o for o in scene.objects if o.type == "MESH" and o.find_armature() == obj] or [obj]
    pts = [o.matrix_world @ Vector(c) for o in meshes for c in o.bound_box]
    lo = Vector((min(p.x for p in pts), min(p.y for p in pts), min(p.z for p in pts)))
    hi = Vector((max(p.x for p in pts), max(p.y for p in pts), max(p.z for p in pts)))
    center, size = (lo + hi) / 2, max(hi.z - lo.z, hi.x - lo.x, 1e-3)
    cam_data = bpy.data.cameras.new("PoseForge Demo Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = size * 1.25
    cam = bpy.data.objects.new("PoseForge Demo Camera", cam_data)
    scene.collection.objects.link(cam)
    # three-quarter front view: characters face -Y in Blender
    direction = Vector((0.6, -1.0, 0.25)).normalized()
    cam.location = center + direction * size * 4
    cam.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam


def render(path: Path) -> float:
    """Render the current frame to ``path`` (PNG); returns seconds taken."""
    import bpy

    t0 = time.perf_counter()
    scene = bpy.context.scene
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return time.perf_counter() - t0


def rig_heads(obj, rigmap, frames, joints) -> np.ndarray:
    """World positions ``(T, J, 3)`` of the bone heads of ``joints`` on the rig at ``frames``
    (Blender units, Z up); the current frame is restored."""
    import bpy

    scene = bpy.context.scene
    current = scene.frame_current
    out = np.zeros((len(frames), len(joints), 3))
    for i, f in enumerate(frames):
        scene.frame_set(f)
        for k, j in enumerate(joints):
            out[i, k] = np.array(obj.matrix_world @ obj.pose.bones[rigmap.bones[j]].head)
    scene.frame_set(current)
    return out


def canonical_positions(local: np.ndarray, root: np.ndarray) -> np.ndarray:
    """``(T, 22, 3)`` canonical joint positions (metres, Y up) of canonical poses."""
    return forward_kinematics_np(local, root)[0]


def per_joint_mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1) * 1000.0


# --- the demo ----------------------------------------------------------------------------------------

def sample_keys(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` poses drawn from the shipped DPoser prior, standing on the floor (pelvis above the origin)."""
    import torch

    from .backend.models.dposer import DPoser
    from .backend.tasks.sample import sample_poses
    from .backend.weights import load_model

    prior = load_model("dposer", DPoser).eval()
    local = sample_poses(prior, n, generator=torch.Generator().manual_seed(seed)).double().numpy()
    root = np.zeros((n, 3))
    pos = canonical_positions(local, root)
    root[:, 1] = -pos[..., 1].min(axis=1)  # lowest joint on the floor
    return local, root


def run(out: Path, rig: Path | None = None, bvh: Path | None = None, keys: int = 6, seed: int = 0,
        render_images: bool = True) -> dict:
    """Run the demo and write its files into ``out``; returns the report (also ``report.json``).

    Raises:
        DemoError: unusable rig or clip (message says why).
    """
    import bpy

    from . import register
    from .rig.default_rig import build_default_rig

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    if rig is not None:
        obj = load_rig(rig)
        clear_animation(obj)
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        obj = build_default_rig()
    registered_here = not hasattr(bpy.types.Scene, "poseforge_snap")
    if registered_here:
        register()
    try:
        return _run(out, obj, bvh, keys, seed, render_images, rig, rng, timings, t0)
    finally:
        if registered_here:
            from . import unregister
            unregister()


def _run(out, obj, bvh, keys, seed, render_images, rig, rng, timings, t0) -> dict:
    import bpy

    from .rig.bridge import read_action, read_offsets, rig_map, write_pose

    rigmap = rig_map(obj)
    timings["load_rig_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if bvh is not None:
        from .backend.data.mocap import load_canonical_motion

        clip = load_canonical_motion(bvh)
        from .backend.retarget import np_quat_to_matrix

        step = 10
        take = np.arange(0, min(len(clip.rotations), keys * step), step)
        if len(take) < 2:
            raise DemoError(f"{bvh.name} has too few frames ({len(clip.rotations)}) for a demo")
        truth_local = np_quat_to_matrix(clip.rotations[take].astype(np.float64))
        truth_root = clip.root[take].astype(np.float64)
        source = f"{bvh.name}, frames {take.tolist()} (30 fps)"
    else:
        truth_local, truth_root = sample_keys(keys, seed)
        step, take = 10, np.arange(keys) * 10
        source = f"{keys} poses sampled from the shipped DPoser prior (seed {seed})"
    frames = [int(1 + i * step) for i in range(len(take))]
    timings["make_poses_s"] = time.perf_counter() - t0

    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = frames[0], frames[-1]
    t0 = time.perf_counter()
    for f, l, r in zip(frames, truth_local, truth_root):
        write_pose(obj, rigmap, l, r, frame=f, keyframe=True)
    timings["key_poses_s"] = time.perf_counter() - t0
    keyed_local, keyed_root = read_action(obj, rigmap, frames)
    truth_pos = canonical_positions(truth_local, truth_root)
    retarget_mm = per_joint_mm(canonical_positions(keyed_local, keyed_root), truth_pos)

    # break keys: all of them for the default demo, every other one for a user's clip
    broken_idx = list(range(len(frames))) if bvh is None else list(range(1, len(frames), 2))
    broken_local = keyed_local.copy()
    what: dict[int, list[str]] = {}
    for i in broken_idx:
        scene.frame_set(frames[i])
        broken_local[i], what[frames[i]] = break_pose(keyed_local[i], keyed_root[i], rng,
                                                      offsets=read_offsets(obj, rigmap))
        write_pose(obj, rigmap, broken_local[i], keyed_root[i], frame=frames[i], keyframe=True)
    before_local, before_root = read_action(obj, rigmap, frames)
    before_pos = canonical_positions(before_local, before_root)
    pinned_joints = [j for j in PINNED if j in rigmap.bones]
    pins_before = rig_heads(obj, rigmap, frames, pinned_joints)

    if render_images:
        setup_render(obj)
        t_r = 0.0
        for i in broken_idx[:3]:
            scene.frame_set(frames[i])
            t_r += render(out / f"before_f{frames[i]:03d}.png")
        timings["render_before_s"] = t_r

    # the add-on's own operators, blocking in background mode
    settings = scene.poseforge_snap
    settings.pinned = "SELECTED"
    settings.scope = "KEYS_IN_RANGE"
    select_bones(obj, rigmap, PINNED)
    with bpy.context.temp_override(active_object=obj, object=obj):
        if bvh is None:
            t0 = time.perf_counter()
            res = bpy.ops.poseforge.snap_pose()
            timings["snap_s"] = time.perf_counter() - t0
            if res != {"FINISHED"}:
                raise DemoError(f"Snap failed: {bpy.context.window_manager.poseforge_job.last_error}")
        else:
            t0 = time.perf_counter()
            # the panel's default threshold (the 99th percentile of held-out mocap, model card)
            res = bpy.ops.poseforge.fix_keys()
            timings["fix_keys_s"] = time.perf_counter() - t0
            if res != {"FINISHED"}:
                raise DemoError(f"Fix keys failed: {bpy.context.window_manager.poseforge_job.last_error}")
    after_local, after_root = read_action(obj, rigmap, frames)
    after_pos = canonical_positions(after_local, after_root)
    pins_after = rig_heads(obj, rigmap, frames, pinned_joints)

    if render_images:
        t_r = 0.0
        for i in broken_idx[:3]:
            scene.frame_set(frames[i])
            t_r += render(out / f"after_f{frames[i]:03d}.png")
        timings["render_after_s"] = t_r

    from .backend.models.dposer import DPoser
    from .backend.tasks.snap import score_keys
    from .backend.weights import load_model
    import torch

    prior = load_model("dposer", DPoser).eval()
    score = lambda loc: score_keys(torch.as_tensor(loc, dtype=torch.float32), prior).tolist()  # noqa: E731
    err_before = per_joint_mm(before_pos, truth_pos)
    err_after = per_joint_mm(after_pos, truth_pos)
    broken_joints = [(i, JOINT_INDEX[j]) for i in broken_idx for j in what[frames[i]]]
    bj_before = float(np.mean([err_before[i, j] for i, j in broken_joints])) if broken_joints else 0.0
    bj_after = float(np.mean([err_after[i, j] for i, j in broken_joints])) if broken_joints else 0.0
    report = {
        "input": {"rig": rig.name if rig else "default rig (built by code)", "poses": source,
                  "rig_map": rigmap.source, "frames": frames},
        "broken": {str(k): [f"{j} pole flipped" for j in v] for k, v in what.items()},
        "pinned": list(PINNED),
        "retarget_error_mm": {"mean": float(retarget_mm.mean()), "max": float(retarget_mm.max())},
        "mpjpe_mm": {"broken_keys_before": float(err_before[broken_idx].mean()),
                     "broken_keys_after": float(err_after[broken_idx].mean())},
        "broken_joint_error_mm": {"before": bj_before, "after": bj_after},
        "other_joints_error_mm": {
            "before": float(np.mean([err_before[i, j] for i in broken_idx for j in range(NUM_JOINTS)
                                     if JOINT_NAMES[j] not in what[frames[i]]])),
            "after": float(np.mean([err_after[i, j] for i in broken_idx for j in range(NUM_JOINTS)
                                    if JOINT_NAMES[j] not in what[frames[i]]]))},
        "per_joint_error_mm": {
            "before": {n: float(err_before[broken_idx, j].mean()) for j, n in enumerate(JOINT_NAMES)},
            "after": {n: float(err_after[broken_idx, j].mean()) for j, n in enumerate(JOINT_NAMES)}},
        # on the rig itself, in its world units (mm if the rig is in metres)
        "pinned_drift_mm": float(per_joint_mm(pins_after, pins_before).max()) if pinned_joints else None,
        "untouched_keys_max_change_mm": float(
            per_joint_mm(after_pos, before_pos)[[i for i in range(len(frames)) if i not in broken_idx]].max())
        if len(broken_idx) < len(frames) else None,
        "implausibility": {"truth": score(keyed_local), "before": score(before_local), "after": score(after_local)},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    report["inbetween"] = _inbetween_demo(obj, rigmap, bvh, keys, seed, prior, timings)
    report["text_to_pose"] = _text_demo(obj, rigmap, seed, prior, timings, out if render_images else None)
    report["preview"] = _preview_demo(obj, report["inbetween"], timings, out)
    report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"), check_existing=False)
    return report


#: Frames between the keys of the in-between part of the demo (a key every half second at 30 fps).
INBETWEEN_STEP = 15


def _inbetween_demo(obj, rigmap, bvh, keys, seed, prior, timings) -> dict:
    """Key poses every :data:`INBETWEEN_STEP` frames on a new action and run "Fill Keyframe Gaps".

    With a clip, the keys are the clip's own frames, so the filled frames can be measured against
    the clip, next to Blender's own interpolation of the same keys (Bezier F-curves, what the
    animator sees before filling).  Without one, the keys are the snapped poses; then only the
    implausibility of the in-between frames under the DPoser prior is reported.
    """
    import bpy
    import torch

    from .backend.retarget import np_quat_to_matrix
    from .backend.tasks.snap import score_keys
    from .rig.bridge import read_action, write_pose

    n_keys = max(3, min(keys, 5))
    frames = [1 + i * INBETWEEN_STEP for i in range(n_keys)]
    if bvh is not None:
        from .backend.data.mocap import load_canonical_motion

        clip = load_canonical_motion(bvh)
        n = min(len(clip.rotations), frames[-1])
        if n < 2 * INBETWEEN_STEP + 1:
            return {"skipped": f"{bvh.name} is too short for the in-between part"}
        frames = [f for f in frames if f <= n]
        truth_local = np_quat_to_matrix(clip.rotations[:frames[-1]].astype(np.float64))
        truth_root = clip.root[:frames[-1]].astype(np.float64)
        key_local, key_root = truth_local[[f - 1 for f in frames]], truth_root[[f - 1 for f in frames]]
    else:
        key_local, key_root = read_action(obj, rigmap, [1 + i * 10 for i in range(min(n_keys, keys))])
        frames = frames[:len(key_local)]
    anim = obj.animation_data
    anim.action = None
    for f, l, r in zip(frames, key_local, key_root):
        write_pose(obj, rigmap, l, r, frame=f, keyframe=True)
    obj.animation_data.action.name = "PoseForge in-between demo"
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = frames[0], frames[-1]
    all_frames = list(range(frames[0], frames[-1] + 1))
    inner = [i for i, f in enumerate(all_frames) if f not in frames]
    blender_local, blender_root = read_action(obj, rigmap, all_frames)
    settings = scene.poseforge_inbetween
    settings.range_mode = "SCENE"
    settings.hypotheses = 3
    settings.seed = seed
    with bpy.context.temp_override(active_object=obj, object=obj):
        t0 = time.perf_counter()
        res = bpy.ops.poseforge.fill_keyframe_gaps()
        timings["fill_keyframe_gaps_s"] = time.perf_counter() - t0
        if res != {"FINISHED"}:
            raise DemoError(f"Fill keyframe gaps failed: {bpy.context.window_manager.poseforge_job.last_error}")
        bpy.ops.poseforge.inbetween_accept()
    filled_local, filled_root = read_action(obj, rigmap, all_frames)
    score = lambda loc: float(score_keys(torch.as_tensor(loc, dtype=torch.float32), prior).mean())  # noqa: E731
    rep = {"keys": frames, "filled_frames": len(inner),
           "implausibility_of_inbetweens": {"blender_interpolation": score(blender_local[inner]),
                                            "filled": score(filled_local[inner])}}
    if bvh is not None:
        truth_pos = canonical_positions(truth_local[[f - 1 for f in all_frames]][inner],
                                        truth_root[[f - 1 for f in all_frames]][inner])
        rep["implausibility_of_inbetweens"]["clip"] = score(truth_local[[f - 1 for f in all_frames]][inner])
        rep["mpjpe_mm_vs_clip"] = {
            "blender_interpolation": float(per_joint_mm(canonical_positions(blender_local[inner], blender_root[inner]),
                                                        truth_pos).mean()),
            "filled": float(per_joint_mm(canonical_positions(filled_local[inner], filled_root[inner]),
                                         truth_pos).mean())}
    return rep


def _preview_demo(obj, inbetween: dict, timings, out: Path) -> dict:
    """Render a textured preview of the in-between action with the add-on's "Render Textured
    Preview" (the rig's own mesh as the reference, 128 px high, the action's frames) into
    ``out/preview.mp4``; skipped with a reason when there are no DMM weights yet.

    The operator never writes inside the extension folder (the default ``out/demo`` of a checkout
    is), so the video is written to a temporary folder and moved into ``out``.
    """
    import shutil
    import tempfile

    import bpy

    from .backend.weights import default_weights_dir

    if "keys" not in inbetween:
        return {"skipped": "no in-between action to preview"}
    if not (default_weights_dir() / "dmm.safetensors").is_file():
        return {"skipped": "no DMM weights yet (dmm.safetensors in the weights folder)"}
    action = bpy.data.actions.get("PoseForge in-between demo")
    if action is None:
        return {"skipped": "the in-between action is gone"}
    scene = bpy.context.scene
    anim = obj.animation_data or obj.animation_data_create()
    anim.action = action
    if getattr(anim, "action_slot", "missing") is None and len(action.slots):  # Blender 4.4+: slotted actions
        anim.action_slot = action.slots[0]
    if scene.camera is None:
        setup_render(obj)
    frames = inbetween["keys"]
    settings = scene.poseforge_preview
    settings.range_mode, settings.frame_start, settings.frame_end = "CUSTOM", frames[0], frames[-1]
    settings.reference, settings.use_reference_frame, settings.height = "RENDER", False, 128
    tmp = Path(tempfile.mkdtemp(prefix="poseforge-demo-"))
    try:
        settings.output = str(tmp / "preview.mp4")
        with bpy.context.temp_override(active_object=obj, object=obj):
            t0 = time.perf_counter()
            res = bpy.ops.poseforge.render_preview()
            seconds = time.perf_counter() - t0
        if res != {"FINISHED"}:
            raise DemoError(f"Render textured preview failed: {bpy.context.window_manager.poseforge_job.last_error}")
        target = out / "preview.mp4"
        shutil.move(str(tmp / "preview.mp4"), target)
    finally:
        settings.output = ""
        shutil.rmtree(tmp, ignore_errors=True)
    timings["render_preview_s"] = seconds
    from .rig.preview_labels import preview_size

    width, height = preview_size(scene, 128)
    return {"file": target.name, "frames": frames[-1] - frames[0] + 1, "seconds": round(seconds, 2),
            "size": [width, height], "fps": scene.render.fps / scene.render.fps_base}


#: Prompts of the text-to-pose part of the demo, with the suite's checks on the result.
DEMO_PROMPTS = [
    ("Both hands are raised above the head.", [{"above": ["left_hand", "head", 0.05]}, {"above": ["right_hand", "head", 0.05]}]),
    ("Get low, like a catcher behind home plate.", [{"bend_gt": ["left_knee", 60]}, {"bend_gt": ["right_knee", 60]}]),
]
#: The edit applied to the first generated pose, and the body part it must confine itself to.
DEMO_EDIT = ("lower the left arm to the side", [{"below": ["left_hand", "spine3", 0.0]}])


def _text_demo(obj, rigmap, seed, prior, timings, out) -> dict:
    """Generate poses from prompts with the add-on's Generate operator on a new frame, accept the
    best candidate, then run Edit Pose with an instruction: report whether the checks of the
    prompt hold on the rig's pose (read back through the rig bridge), the DPoser implausibility,
    and which bones the edit changed."""
    import bpy
    import torch

    from .backend.bench.checks import face_forward, passes
    from .backend.tasks.snap import score_keys
    from .rig.bridge import read_pose

    scene = bpy.context.scene
    anim = obj.animation_data
    if anim is not None:
        anim.action = None
    scene.frame_set(1)
    rep: dict = {"prompts": []}

    def positions():
        local, _ = read_pose(obj, rigmap)
        return local, face_forward(canonical_positions(local[None], np.zeros((1, 3))))

    def run_op(op, label):
        with bpy.context.temp_override(active_object=obj, object=obj):
            t0 = time.perf_counter()
            res = op()
            timings[label] = time.perf_counter() - t0
            if res != {"FINISHED"}:
                raise DemoError(f"{label} failed: {bpy.context.window_manager.poseforge_job.last_error}")
            bpy.ops.poseforge.candidates_accept()

    settings = scene.poseforge_generate
    settings.candidates, settings.seed = 4, seed
    for i, (prompt, checks) in enumerate(DEMO_PROMPTS):
        settings.prompt = prompt
        run_op(bpy.ops.poseforge.generate_poses, f"generate_{i}_s")
        local, pos = positions()
        rep["prompts"].append({"prompt": prompt, "checks_pass": bool(passes(checks, pos)[0]),
                               "implausibility": float(score_keys(torch.as_tensor(local[None], dtype=torch.float32),
                                                                  prior)[0])})
        if out is not None:
            timings[f"render_generate_{i}_s"] = render(out / f"generate_{i}.png")
    settings.prompt = DEMO_PROMPTS[0][0]
    run_op(bpy.ops.poseforge.generate_poses, "generate_again_s")
    before, _ = positions()
    edit = scene.poseforge_edit
    edit.instruction, edit.candidates, edit.seed = DEMO_EDIT[0], 4, seed
    edit.pinned = "NONE"
    run_op(bpy.ops.poseforge.edit_pose, "edit_s")
    after, pos = positions()
    change = np.degrees(np.linalg.norm(
        __import__("scipy.spatial.transform", fromlist=["Rotation"]).Rotation.from_matrix(
            np.einsum("jab,jcb->jac", after, before)).as_rotvec(), axis=-1))
    rep["edit"] = {"instruction": DEMO_EDIT[0], "checks_pass": bool(passes(DEMO_EDIT[1], pos)[0]),
                   "changed_joints": [JOINT_NAMES[j] for j in range(NUM_JOINTS) if change[j] > 0.05],
                   "max_change_deg": float(change.max())}
    if out is not None:
        timings["render_edit_s"] = render(out / "edit.png")
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m poseforge.demo", description=__doc__.splitlines()[0])
    p.add_argument("--rig", type=Path, help="a rig to use (.blend, .fbx, .glb, .gltf) instead of the default rig")
    p.add_argument("--bvh", type=Path, help="a BVH clip to key on the rig instead of sampled poses")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--keys", type=int, default=6, help="number of keys (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-render", action="store_true", help="skip the PNG renders")
    args = p.parse_args(argv)
    from .backend.data.bvh import BVHError
    from .backend.data.mocap import MocapError
    from .backend.weights import WeightsError
    from .rig.bridge import RigError

    try:
        rep = run(args.out, args.rig, args.bvh, args.keys, args.seed, not args.no_render)
    except (DemoError, BVHError, MocapError, RigError, WeightsError) as exc:
        print(f"poseforge demo: {exc}", file=sys.stderr)
        return 1
    m, b = rep["mpjpe_mm"], rep["broken_joint_error_mm"]
    print(f"Broken knees/elbows: {b['before']:.0f} mm from where they belong before snapping, {b['after']:.0f} mm after; "
          f"broken keys' MPJPE {m['broken_keys_before']:.1f} -> {m['broken_keys_after']:.1f} mm; "
          f"pinned bones moved at most {rep['pinned_drift_mm']:.2f} mm")
    ib = rep.get("inbetween", {})
    if "mpjpe_mm_vs_clip" in ib:
        e = ib["mpjpe_mm_vs_clip"]
        print(f"Fill keyframe gaps ({ib['filled_frames']} frames between keys {ib['keys']}): "
              f"{e['blender_interpolation']:.0f} mm from the clip with Blender's interpolation, {e['filled']:.0f} mm filled")
    elif "implausibility_of_inbetweens" in ib:
        s = ib["implausibility_of_inbetweens"]
        print(f"Fill keyframe gaps ({ib['filled_frames']} frames between keys {ib['keys']}): implausibility of the "
              f"in-between frames {s['blender_interpolation']:.2f} with Blender's interpolation, {s['filled']:.2f} filled")
    tp = rep.get("text_to_pose", {})
    for p in tp.get("prompts", []):
        print(f"Generate '{p['prompt']}': checks {'pass' if p['checks_pass'] else 'FAIL'}, "
              f"implausibility {p['implausibility']:.2f}")
    if "edit" in tp:
        e = tp["edit"]
        print(f"Edit '{e['instruction']}': checks {'pass' if e['checks_pass'] else 'FAIL'}, "
              f"changed {', '.join(e['changed_joints']) or 'nothing'}")
    pv = rep.get("preview", {})
    if "file" in pv:
        print(f"Textured preview of the in-between action: {pv['frames']} frames at {pv['size'][0]}x{pv['size'][1]} "
              f"in {pv['seconds']:.1f} s, {args.out / pv['file']}")
    elif "skipped" in pv:
        print(f"Textured preview skipped: {pv['skipped']}")
    print(f"Wrote {args.out / 'demo.blend'}, {args.out / 'report.json'} and before/after renders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
