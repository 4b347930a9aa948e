"""BVH clips onto the canonical body: preset detection, reference T-pose, retargeting, 30 fps.

A clip is read with :func:`poseforge.backend.data.bvh.read_bvh`, matched to a rig preset
(``presets/rigs/*.json`` of kind ``"bvh"``) by its joint names, given a reference T-pose
(:func:`poseforge.backend.retarget.reference_tpose`, DESIGN.md "The rig bridge") and mapped with
:func:`poseforge.backend.retarget.source_to_canonical`.  The result is resampled to 30 fps
(slerp of rotations, lerp of the root) and returned as a :class:`CanonicalMotion`.

Presets may carry, beside the keys described in :mod:`poseforge.backend.presets`:

- ``"reference": "rest"``: the BVH rest pose (OFFSETs, no rotation) is the neutral pose ``S``.
- ``"reference": {"pose": {bone: [w, x, y, z], ...}, "from": "..."}``: ``S`` is the rest
  skeleton posed with these *local* rotations (bones not listed keep identity); used for the
  Bandai-Namco skeleton, whose rest pose is degenerate.  Made by :func:`neutral_pose_from_clip`.
- ``"floor": "pose"``: the neutral pose stands on the floor; every clip of the skeleton is
  shifted by the same height so that pose's canonical feet touch ``y = 0``
  (:func:`pose_floor_shift`).
- ``"frame_rate_by_folder": {"salsa": 60}``: clips in a folder of that name have this frame
  rate whatever their ``Frame Time`` says (the acLSTM CMU dance set: its readme gives salsa at
  60 fps while every header says 120; at 120 the salsa pelvis would move at walking speed).
- ``"floor": "clip"``: the clip's floor is not at height 0 in the source (the CMU dance BVH);
  each clip is shifted vertically so its lowest canonical foot joint touches ``y = 0``.

NumPy only (no torch, no bpy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..presets import PresetError, list_presets, load_preset
from ..retarget import (Reference, axis_conversion, np_matrix_to_quat, np_quat_to_matrix,
                        reference_tpose, source_to_canonical)
from ..skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, forward_kinematics_np
from .bvh import BVHError, BVHMotion, fk_local, read_bvh

TARGET_FPS = 30.0


class MocapError(ValueError):
    """A clip cannot be put on the canonical body (no matching preset, unmapped joints, ...)."""


@dataclass
class CanonicalMotion:
    """A motion on the canonical body (DESIGN.md "Canonical body").

    Attributes:
        rotations: ``(T, 22, 4)`` float32 local quaternions ``(w, x, y, z)`` relative to the
            canonical T-pose, SMPL joint order.
        root: ``(T, 3)`` float32 pelvis position, metres, Y up, +Z the initial facing as captured.
        fps: frames per second.
        source: where it came from (file name, or cache clip id).
    """
    rotations: np.ndarray
    root: np.ndarray
    fps: float
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def rotmats(self) -> np.ndarray:
        """``(T, 22, 3, 3)`` float64 local rotation matrices."""
        return np_quat_to_matrix(self.rotations)

    def joint_positions(self) -> np.ndarray:
        """``(T, 22, 3)`` canonical joint positions (metres, Y up) by forward kinematics."""
        pos, _ = forward_kinematics_np(self.rotmats(), self.root)
        return pos


# --- presets -----------------------------------------------------------------------------------

def bvh_presets() -> list[dict]:
    """All shipped presets of kind ``"bvh"``."""
    out = []
    for pid in list_presets():
        try:
            p = load_preset(pid)
        except PresetError:
            continue
        if p.get("kind") == "bvh":
            out.append(p)
    return out


def detect_preset(names: list[str], source: str = "") -> dict:
    """Pick the BVH preset whose mapped bones all exist in ``names``.

    Args:
        names: joint names of the clip.
        source: file name for messages.
    Returns:
        The preset dict (the one mapping most joints if several match).
    Raises:
        MocapError: no preset matches; names the closest preset and the bones it misses.
    """
    have = set(names)
    best, best_missing = None, None
    for p in bvh_presets():
        missing = sorted(b for b in p["bones"].values() if b not in have)
        if not missing:
            if best is None or best_missing or len(p["bones"]) > len(best["bones"]):
                best, best_missing = p, []
        elif best is None or (best_missing and len(missing) < len(best_missing)):
            best, best_missing = p, missing
    if best is None:
        raise MocapError(f"{source}: no BVH rig preset is installed")
    if best_missing:
        raise MocapError(f"{source}: skeleton matches no rig preset; closest is '{best['id']}', "
                         f"which needs joints {best_missing} (the clip has {len(names)} joints, "
                         f"e.g. {names[:8]}); pass a preset or add one in presets/rigs")
    return best


def _resolve_preset(preset, motion: BVHMotion) -> dict:
    if preset is None:
        return detect_preset(motion.names, motion.source)
    if isinstance(preset, dict):
        p = preset
    else:
        p = load_preset(preset)
    missing = sorted(b for b in p["bones"].values() if b not in motion.names)
    if missing:
        raise MocapError(f"{motion.source}: preset '{p.get('id', p.get('name'))}' names joints the "
                         f"clip lacks: {missing}")
    return p


def source_index(motion: BVHMotion, preset: dict) -> np.ndarray:
    """``(22,)`` int: BVH joint index of each canonical joint, ``-1`` where the preset maps none."""
    idx = np.full(NUM_JOINTS, -1, dtype=np.int64)
    for joint, bone in preset["bones"].items():
        idx[JOINT_INDEX[joint]] = motion.index(bone)
    return idx


# --- reference T-pose ---------------------------------------------------------------------------

def neutral_pose_from_clip(motion: BVHMotion, frame: int) -> dict[str, list[float]]:
    """Local rotations of one standing frame, to store as a preset's neutral pose.

    Used once per skeleton whose rest pose is not a usable neutral pose (Bandai-Namco: every
    rest bone lies along its parent's X axis).  Pick a frame where the actor stands upright,
    legs straight, arms hanging at the sides; :func:`poseforge.backend.retarget.reference_tpose`
    swings it onto the T-pose, which keeps the hanging arms' twist (palms down in the T-pose).

    Args:
        motion: a clip of the skeleton.
        frame: frame index.
    Returns:
        ``{joint name: [w, x, y, z]}`` local rotation of every joint, rounded to 6 decimals, for
        ``preset["reference"] = {"pose": ..., "from": "<clip> frame N"}``.
    """
    q = np_matrix_to_quat(motion.rotations[frame])
    return {n: [round(float(v), 6) for v in q[j]] for j, n in enumerate(motion.names)}


def neutral_pose(motion: BVHMotion, preset: dict) -> tuple[np.ndarray, np.ndarray]:
    """World rotations ``(J, 3, 3)`` and positions ``(J, 3)`` of the preset's neutral pose ``S``
    for this clip's skeleton, in the source axes and units (see module doc)."""
    ref = preset.get("reference", "rest")
    J = len(motion.names)
    local = np.tile(np.eye(3), (J, 1, 1))
    if isinstance(ref, dict):
        pose = ref.get("pose")
        if not isinstance(pose, dict):
            raise MocapError(f"preset '{preset.get('id')}': 'reference' needs a 'pose' object")
        for name, q in pose.items():
            if name in motion.names:
                local[motion.names.index(name)] = np_quat_to_matrix(np.asarray(q, dtype=np.float64))
    elif ref != "rest":
        raise MocapError(f"preset '{preset.get('id')}': unknown reference {ref!r}")
    return fk_local(local, motion.offsets, motion.parents)


def reference_for(motion: BVHMotion, preset: dict) -> Reference:
    """Reference T-pose (:class:`poseforge.backend.retarget.Reference`) of this clip's skeleton."""
    C = axis_conversion(preset.get("up", "Y"))
    rots, pos = neutral_pose(motion, preset)
    return reference_tpose(C @ rots, pos @ C.T, source_index(motion, preset),
                           hinge_axes=preset.get("hinge_axes"))


# --- resampling ---------------------------------------------------------------------------------

def resample(rotations: np.ndarray, root: np.ndarray, fps_in: float, fps_out: float = TARGET_FPS
             ) -> tuple[np.ndarray, np.ndarray]:
    """Resample a motion in time.

    Args:
        rotations: ``(T, J, 4)`` quaternions ``(w, x, y, z)``.
        root: ``(T, 3)`` positions.
        fps_in: source frame rate; fps_out: target frame rate.
    Returns:
        ``(rotations (T', J, 4), root (T', 3))`` sampled at ``k / fps_out`` seconds for every
        ``k`` with ``k / fps_out <= (T - 1) / fps_in``: slerp (shortest arc) between the two
        nearest source frames, lerp for the root.  An integer rate ratio picks frames exactly.
    """
    T = rotations.shape[0]
    if T == 0 or abs(fps_in - fps_out) < 1e-4 * fps_out:  # 0.0333333 s is 30 fps
        return rotations, root
    ratio = fps_in / fps_out
    n_out = int(np.floor((T - 1) / ratio + 1e-3)) + 1
    src_t = np.arange(n_out) * ratio
    if abs(ratio - round(ratio)) < 1e-4:
        idx = np.minimum(np.round(src_t).astype(np.int64), T - 1)
        return rotations[idx], root[idx]
    i0 = np.minimum(np.floor(src_t).astype(np.int64), T - 1)
    i1 = np.minimum(i0 + 1, T - 1)
    w = (src_t - i0)[:, None]
    root_out = root[i0] * (1 - w) + root[i1] * w
    q0 = rotations[i0].astype(np.float64)
    q1 = rotations[i1].astype(np.float64)
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot).clip(0, 1)
    theta = np.arccos(dot)
    s = np.sin(theta)
    wq = w[:, None, :]
    small = s < 1e-6
    a = np.where(small, 1 - wq, np.sin((1 - wq) * theta) / np.where(small, 1, s))
    b = np.where(small, wq, np.sin(wq * theta) / np.where(small, 1, s))
    q = a * q0 + b * q1
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.astype(rotations.dtype), root_out.astype(root.dtype)


# --- the whole path ------------------------------------------------------------------------------

def floor_offset(rotations: np.ndarray, root: np.ndarray) -> float:
    """Height (metres) of the lowest ankle or foot joint over a canonical motion (canonical FK)."""
    pos, _ = forward_kinematics_np(np_quat_to_matrix(rotations), root)
    feet = [JOINT_INDEX[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    return float(pos[:, feet, 1].min())


def pose_floor_shift(motion: BVHMotion, preset: dict, ref: Reference | None = None) -> float:
    """Vertical shift (metres) that puts the canonical feet of the neutral pose on the floor.

    For presets with ``"floor": "pose"``: the neutral pose ``S`` stands on the source floor, but
    the canonical body's proportions differ from the actor's (pelvis-to-hip drop, ankle height),
    so scaling the root height alone leaves the canonical feet a few centimetres off the floor.
    Retargeting ``S`` itself and measuring its lowest canonical ankle/foot joint gives the
    per-skeleton correction.
    """
    ref = reference_for(motion, preset) if ref is None else ref
    C = axis_conversion(preset.get("up", "Y"))
    rots, pos = neutral_pose(motion, preset)
    local, root = source_to_canonical(ref, (C @ rots)[None], (pos[ref.source_index[0]] @ C.T)[None])
    return -floor_offset(np_matrix_to_quat(local), root)


def source_frame_rate(motion: BVHMotion, preset: dict, path: str | Path | None = None) -> float:
    """Frame rate of a clip: the preset's ``frame_rate_by_folder`` entry for the folder the clip
    lies in (any ancestor folder name), else ``1 / Frame Time``."""
    table = preset.get("frame_rate_by_folder") or {}
    if path is not None and table:
        for folder in Path(path).parent.parts[::-1]:
            if folder in table:
                return float(table[folder])
    return motion.fps


def bvh_to_canonical(motion: BVHMotion, preset=None, fps: float | None = TARGET_FPS,
                     path: str | Path | None = None) -> CanonicalMotion:
    """Retarget a parsed BVH clip onto the canonical body.

    Args:
        motion: a :class:`BVHMotion`.
        preset: preset id, path or dict; ``None`` detects it from the joint names.
        fps: output frame rate (``None`` keeps the clip's rate).
        path: the clip's file, for the preset's ``frame_rate_by_folder`` (see module doc).
    Returns:
        :class:`CanonicalMotion` (float32).
    Raises:
        MocapError: no preset matches, or the preset names joints the clip lacks.
        poseforge.backend.retarget.RetargetError: the neutral pose cannot be laid on the T-pose.
    """
    p = _resolve_preset(preset, motion)
    ref = reference_for(motion, p)
    C = axis_conversion(p.get("up", "Y"))
    world_r, world_p = fk_local(motion.rotations, motion.translations, motion.parents)
    pelvis = ref.source_index[0]
    local, root = source_to_canonical(ref, C @ world_r, world_p[:, pelvis] @ C.T)
    quats = np_matrix_to_quat(local)
    src_fps = source_frame_rate(motion, p, path)
    if fps is not None:
        quats, root = resample(quats, root, src_fps, fps)
    out_fps = src_fps if fps is None else float(fps)
    if p.get("floor") == "clip" and len(root):
        root = root.copy()
        root[:, 1] -= floor_offset(quats, root)
    elif p.get("floor") == "pose":
        root = root.copy()
        root[:, 1] += pose_floor_shift(motion, p, ref)
    return CanonicalMotion(rotations=quats.astype(np.float32), root=root.astype(np.float32),
                           fps=out_fps, source=motion.source)


def load_canonical_motion(path: str | Path, preset=None, fps: float | None = TARGET_FPS) -> CanonicalMotion:
    """Read a BVH clip and put it on the canonical body at ``fps`` (default 30).

    Args:
        path: ``.bvh`` file.
        preset: preset id (``"bandai"``, ``"cmu"``, ``"lafan1"``), path or dict; ``None``
            detects it from the joint names.
        fps: output frame rate; ``None`` keeps the file's.
    Returns:
        :class:`CanonicalMotion`: ``rotations (T, 22, 4)`` float32 local quaternions, ``root
        (T, 3)`` float32 metres, Y up.
    Raises:
        BVHError: malformed file (names the line).
        MocapError: no preset matches the joint names (names the unmatched joints).
    """
    return bvh_to_canonical(read_bvh(path), preset, fps, path=path)


__all__ = ["CanonicalMotion", "MocapError", "BVHError", "load_canonical_motion", "bvh_to_canonical",
           "detect_preset", "neutral_pose_from_clip", "reference_for", "resample", "source_index",
           "pose_floor_shift", "source_frame_rate"]
