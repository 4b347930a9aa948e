"""``poseforge inbetween --bvh IN --keys 0,30,60 --out OUT.bvh``: keep only the listed frames of a
BVH clip and fill the frames between them with the in-between model, on the clip's own skeleton.

Path: the clip is read (:func:`poseforge.backend.data.bvh.read_bvh`) and put on the canonical body
at its own frame rate (:func:`poseforge.backend.data.mocap.bvh_to_canonical` with ``fps=None``,
so frame numbers stay the file's); the job ``"inbetween"`` of :mod:`poseforge.backend.service`
fills every frame between the first and the last key from the keyed frames alone; the filled
frames go back onto the source skeleton (:func:`poseforge.backend.retarget.canonical_to_source`),
and the output file is the input file with those frame lines replaced.  The key frames and the
frames before the first / after the last key are copied verbatim from the input; bones outside
the preset's canonical map keep their input channel values on every frame.

Bad input (fewer than two keys, keys not integers, out of range or repeated, a malformed BVH, a
skeleton no preset matches, a gap longer than the model's window) prints one line on stderr and
exits with status 2; nothing is written.  The output is written to a temporary file beside it and
renamed, so a failure never leaves a partial file.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.bvh import BVHError, BVHMotion, fk_local, read_bvh
from ..data.mocap import (TARGET_FPS, MocapError, bvh_to_canonical, detect_preset, reference_for,
                          source_frame_rate)
from ..presets import PresetError, load_preset
from ..retarget import RetargetError, axis_conversion, canonical_to_source, np_quat_to_matrix, source_to_canonical
from ..skeleton import NUM_JOINTS

#: Largest joint-position error (metres) of the key frames after canonical -> source, checked
#: on every run (the retargeting is exact up to float32 rounding of the canonical motion).
ROUND_TRIP_TOLERANCE = 1e-4
#: A frame rate this far from 30 fps (relative) gets a note: the model was trained at 30 fps.
FPS_NOTE_RATIO = 0.2
MAX_HYPOTHESIS = 8

_ROT = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}
_POS = {"xposition": 0, "yposition": 1, "zposition": 2}


class InbetweenCliError(ValueError):
    """Bad command-line input: the message is the one line printed on stderr."""


def parse_keys(text: str, num_frames: int) -> list[int]:
    """Key frame numbers from ``"0,30,60"`` (0 = the first frame of the file).

    Args:
        text: comma-separated integers (spaces allowed).
        num_frames: frames in the clip.
    Returns:
        The keys, sorted.
    Raises:
        InbetweenCliError: a key is not an integer, is out of ``[0, num_frames - 1]``, is listed
            twice, or there are fewer than two keys.
    """
    items = [s.strip() for s in str(text).split(",")]
    if any(not s for s in items):
        raise InbetweenCliError(f"--keys {text!r}: empty entry (write frame numbers like 0,30,60)")
    keys = []
    for s in items:
        try:
            keys.append(int(s))
        except ValueError:
            raise InbetweenCliError(f"--keys: {s!r} is not a whole frame number") from None
    if len(keys) < 2:
        raise InbetweenCliError(f"--keys: need at least two key frames to fill between, got {len(keys)}")
    bad = [k for k in keys if not 0 <= k < num_frames]
    if bad:
        raise InbetweenCliError(f"--keys: frame(s) {bad} out of range: the clip has frames 0 to {num_frames - 1}")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise InbetweenCliError(f"--keys: frame(s) {dup} listed more than once")
    return sorted(keys)


@dataclass
class _Frames:
    """The MOTION section of a BVH file as text: header lines verbatim, one string per frame."""
    header: list[str]
    lines: list[str]
    values: np.ndarray  # (T, channels) float64


def _frame_lines(path: Path, num_frames: int) -> _Frames:
    """Split a file :func:`read_bvh` accepted into its header (through 'Frame Time:') and frame lines."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().upper().startswith("MOTION"))
    seen = 0
    while seen < 2:  # 'Frames:' and 'Frame Time:' (read_bvh checked them)
        i += 1
        if lines[i].strip():
            seen += 1
    header = lines[:i + 1]
    data = [line for line in lines[i + 1:] if line.strip()][:num_frames]
    values = np.array([line.split() for line in data], dtype=np.float64).reshape(num_frames, -1)
    return _Frames(header, data, values)


def _channel_layout(motion: BVHMotion):
    """Per joint: (first column, rotation order, rotation columns, position columns by axis)."""
    out, col = [], 0
    for chans in motion.channels:
        order, rcols, pcols = "", [], {}
        for c in chans:
            lc = c.lower()
            if lc in _ROT:
                order += _ROT[lc]
                rcols.append(col)
            else:
                pcols[_POS[lc]] = col
            col += 1
        out.append((order, rcols, pcols))
    return out


def source_pose(motion: BVHMotion, preset: dict, ref, rotations: np.ndarray, root: np.ndarray,
                frames: np.ndarray, root_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical poses back on the clip's own skeleton.

    Mapped joints take the world rotation of :func:`canonical_to_source`; joints outside the map
    keep the clip's local rotation on that frame; the pelvis joint's world position is reached
    by moving the nearest joint (itself or an ancestor) that has position channels.

    Args:
        motion: the clip; preset: its preset; ref: its reference T-pose.
        rotations: ``(n, 22, 4)`` canonical local quaternions; root: ``(n, 3)`` metres (canonical,
            floor shift included).
        frames: ``(n,)`` frame indices of the clip these poses replace.
        root_shift: ``(3,)`` metres the canonical root was shifted by (floor rule of the preset).
    Returns:
        ``(local_rotations (n, J, 3, 3), translations (n, J, 3))`` in the clip's axes and units.
    """
    C = axis_conversion(preset.get("up", "Y"))
    W, pelvis_pos = canonical_to_source(ref, np_quat_to_matrix(rotations),
                                        (np.asarray(root, np.float64) - root_shift))
    W = C.T @ W                         # world rotations, source axes
    pelvis_pos = pelvis_pos @ C         # C^T p for row vectors: source axes, source units
    canon_of = {int(s): c for c, s in enumerate(ref.source_index) if s >= 0}
    local = motion.rotations[frames].copy()
    trans = motion.translations[frames].copy()
    glob = np.empty_like(local)
    for j, p in enumerate(motion.parents):
        par = np.broadcast_to(np.eye(3), glob[:, j].shape) if p < 0 else glob[:, p]
        if j in canon_of:
            glob[:, j] = W[:, canon_of[j]]
            local[:, j] = np.swapaxes(par, -1, -2) @ glob[:, j]
        else:
            glob[:, j] = par @ local[:, j]
    pelvis = int(ref.source_index[0])
    a = pelvis
    while a >= 0 and not any(c.lower() in _POS for c in motion.channels[a]):
        a = int(motion.parents[a])
    if a < 0:
        raise InbetweenCliError(f"{motion.source}: the pelvis joint '{motion.names[pelvis]}' and its "
                                "parents have no position channels, so root motion cannot be written")
    _, world_p = fk_local(local, trans, motion.parents)
    delta = pelvis_pos - world_p[:, pelvis]
    pa = int(motion.parents[a])
    if pa >= 0:
        delta = (np.swapaxes(glob[:, pa], -1, -2) @ delta[..., None])[..., 0]
    trans[:, a] += delta
    return local, trans


def _to_channels(motion: BVHMotion, layout, local: np.ndarray, trans: np.ndarray, base: np.ndarray,
                 mapped: set[int], pos_joint: int, prev: np.ndarray | None) -> np.ndarray:
    """Channel values ``(n, channels)``: ``base`` with the rotations of mapped joints and the
    position channels of ``pos_joint`` replaced; angles unwrapped against ``prev`` (a row)."""
    from scipy.spatial.transform import Rotation

    vals = base.copy()
    for j, (order, rcols, pcols) in enumerate(layout):
        if j in mapped and order:
            if len(order) != 3:
                raise InbetweenCliError(f"{motion.source}: joint '{motion.names[j]}' has {len(order)} rotation "
                                        "channels; writing mapped joints needs all three")
            vals[:, rcols] = Rotation.from_matrix(local[:, j]).as_euler(order, degrees=True)
        if j == pos_joint:
            for axis, c in pcols.items():
                vals[:, c] = trans[:, j, axis]
    rot_cols = [c for j, (o, rc, _) in enumerate(layout) if j in mapped for c in rc]
    if rot_cols and len(vals):
        ref = vals[:1, rot_cols] if prev is None else prev[None, rot_cols]
        seq = np.concatenate([ref, vals[:, rot_cols]])
        vals[:, rot_cols] = np.rad2deg(np.unwrap(np.deg2rad(seq), axis=0))[1:]
    return vals


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_inbetween_job(request: dict, device: str, log) -> dict:
    from ..service import JobContext, run_job, to_plain

    events = []
    last = [0.0]

    def emit(ev):
        events.append(ev)
        if ev.kind == "progress" and ev.fraction - last[0] >= 0.25:
            last[0] = ev.fraction
            log(f"  {ev.fraction * 100:3.0f} % {ev.message}")

    ctx = JobContext(job="inbetween-cli", emit=emit, device=device)
    run_job("inbetween", to_plain(request), ctx)
    final = events[-1] if events else None
    if final is not None and final.kind == "result":
        return final.data
    if final is not None and final.kind == "error":
        if final.message.startswith("Internal error"):
            raise RuntimeError(final.message + ("\n" + final.detail if final.detail else ""))
        hint = f" ({final.hint})" if final.hint else ""
        raise InbetweenCliError(final.message + hint)
    raise RuntimeError("the inbetween job ended without a result")


def inbetween_bvh(bvh: str | Path, keys: str, out: str | Path, *, preset: str | None = None,
                  hypothesis: int = 0, seed: int = 0, foot_contact: bool = False,
                  weights_dir: str | Path | None = None, device: str = "auto", log=print) -> dict:
    """Keep only the key frames of a BVH clip, fill the frames between them, write a BVH.

    Args:
        bvh: input ``.bvh`` file.
        keys: comma-separated frame numbers, 0 = the file's first frame (see :func:`parse_keys`).
        out: output ``.bvh`` (same skeleton, channels and frame count as the input).
        preset: BVH rig preset id or path; ``None`` detects it from the joint names.
        hypothesis: 0 = the deterministic answer, ``1..8`` = that stochastic hypothesis.
        seed: seed of the stochastic hypotheses.
        foot_contact: ask the job to keep planted feet from sliding.
        weights_dir: GFPose weights folder (default: the shipped ones).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        log: where notes go (a ``print``-like function).
    Returns:
        ``{"frames": T, "keys": [...], "filled": n, "fps": f, "preset": id, "round_trip_m": err,
        "seconds": s}``.
    Raises:
        InbetweenCliError: bad keys, options, skeleton, or a job error (gap too long, ...).
        BVHError: malformed input file.
    """
    bvh, out = Path(bvh), Path(out)
    if int(hypothesis) != hypothesis or not 0 <= hypothesis <= MAX_HYPOTHESIS:
        raise InbetweenCliError(f"--hypothesis must be 0 to {MAX_HYPOTHESIS}, got {hypothesis}")
    if not bvh.is_file():
        raise InbetweenCliError(f"--bvh {bvh}: no such file")
    if out.resolve() == bvh.resolve():
        raise InbetweenCliError("--out must differ from --bvh (the input would be overwritten)")
    motion = read_bvh(bvh)
    if motion.num_frames < 2:
        raise InbetweenCliError(f"{bvh.name}: the clip has {motion.num_frames} frame(s); nothing to fill")
    key_list = parse_keys(keys, motion.num_frames)
    try:
        p = detect_preset(motion.names, bvh.name) if preset is None else load_preset(preset)
        if p.get("kind") not in (None, "bvh"):
            raise InbetweenCliError(f"--preset {preset}: a preset of kind {p.get('kind')!r}, not a BVH skeleton")
        canon = bvh_to_canonical(motion, p, fps=None, path=bvh)
        ref = reference_for(motion, p)
    except (MocapError, PresetError, RetargetError, KeyError) as exc:
        raise InbetweenCliError(str(exc).strip("'\"")) from None
    fps = source_frame_rate(motion, p, bvh)
    if abs(fps - TARGET_FPS) > FPS_NOTE_RATIO * TARGET_FPS:
        log(f"note: {bvh.name} runs at {fps:.4g} fps; the model was trained at {TARGET_FPS:.0f} fps, so "
            f"motion between keys is filled as if one frame were 1/{TARGET_FPS:.0f} s")

    # the floor rule of the preset shifted the canonical root: recover the shift to undo it
    C = axis_conversion(p.get("up", "Y"))
    world_r, world_p = fk_local(motion.rotations, motion.translations, motion.parents)
    pelvis = int(ref.source_index[0])
    _, raw_root = source_to_canonical(ref, C @ world_r, world_p[:, pelvis] @ C.T)
    root_shift = np.mean(canon.root.astype(np.float64) - raw_root, axis=0)

    first, last = key_list[0], key_list[-1]
    T = last - first + 1
    rng = np.arange(first, last + 1)
    known_f = np.zeros(T, dtype=bool)
    known_f[np.asarray(key_list) - first] = True
    request = {
        "rotations": canon.rotations[rng], "root": canon.root[rng],
        "known": np.repeat(known_f[:, None], NUM_JOINTS, axis=1), "known_root": known_f,
        "fill": np.ones(T, dtype=bool), "hypotheses": int(hypothesis), "seed": int(seed),
        "foot_contact": bool(foot_contact), "device": device,
        "weights_dir": None if weights_dir is None else str(weights_dir),
    }
    t0 = time.perf_counter()
    result = _run_inbetween_job(request, device, log)
    seconds = time.perf_counter() - t0
    rot = np.asarray(result["rotations"], dtype=np.float32)
    root = np.asarray(result["root"], dtype=np.float32)
    if rot.shape[1:] != (T, NUM_JOINTS, 4) or root.shape[1:] != (T, 3) or rot.shape[0] <= hypothesis:
        raise RuntimeError(f"the inbetween job returned rotations {rot.shape}, root {root.shape} for "
                           f"{T} frames and hypothesis {hypothesis}")
    rot, root = rot[hypothesis], root[hypothesis]
    if not (np.isfinite(rot).all() and np.isfinite(root).all()):
        raise RuntimeError("the inbetween job returned NaN values")

    local, trans = source_pose(motion, p, ref, rot, root, rng, root_shift)
    # check the round trip on the key frames: same joint positions as the input
    _, pos_new = fk_local(local, trans, motion.parents)
    err = float(np.abs(pos_new[known_f] - world_p[rng][known_f]).max() * ref.scale)
    if err > ROUND_TRIP_TOLERANCE:
        raise RuntimeError(f"round trip canonical -> {bvh.name} moved the key frames' joints by {err * 1000:.3f} mm")

    frames = _frame_lines(bvh, motion.num_frames)
    layout = _channel_layout(motion)
    mapped = {int(s) for s in ref.source_index if s >= 0}
    pos_joint = pelvis
    while not layout[pos_joint][2]:
        pos_joint = int(motion.parents[pos_joint])
    fill = np.flatnonzero(~known_f)
    lines = list(frames.lines)
    # fill gap by gap, unwrapping Euler angles from the key before each gap
    for start, stop in zip(np.flatnonzero(known_f)[:-1], np.flatnonzero(known_f)[1:]):
        gap = np.arange(start + 1, stop)
        if not len(gap):
            continue
        vals = _to_channels(motion, layout, local[gap], trans[gap], frames.values[rng[gap]], mapped,
                            pos_joint, frames.values[rng[start]])
        for f, row in zip(rng[gap], vals):
            lines[f] = " ".join(f"{v:.6f}" for v in row)
    _write_atomic(out, "\n".join(frames.header + lines) + "\n")
    return {"frames": motion.num_frames, "keys": key_list, "filled": int(len(fill)), "fps": fps,
            "preset": p.get("id", p.get("name")), "round_trip_m": err, "seconds": seconds}


def cli_main(args) -> int:
    """Entry point of ``poseforge inbetween`` (argparse namespace of :mod:`poseforge.backend.cli`).

    Returns:
        0 on success; 2 for bad input (one line on stderr, nothing written); 1 for an internal error.
    """
    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        info = inbetween_bvh(args.bvh, args.keys, args.out, preset=args.preset, hypothesis=args.hypothesis,
                             seed=args.seed, foot_contact=args.foot_contact, weights_dir=args.weights_dir,
                             device=args.device, log=log)
    except (InbetweenCliError, BVHError) as exc:
        print(f"poseforge inbetween: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"poseforge inbetween: internal error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {info['filled']} frames filled between keys {info['keys']} "
          f"({info['preset']} skeleton, {info['frames']} frames, {info['seconds']:.2f} s)")
    return 0


__all__ = ["InbetweenCliError", "parse_keys", "source_pose", "inbetween_bvh", "cli_main"]
