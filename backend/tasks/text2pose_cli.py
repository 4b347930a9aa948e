"""``poseforge generate | edit | variations | mix``: text to pose on the command line, as JSON files.

Pose files (read and written) hold poses of the canonical body (:mod:`poseforge.backend.skeleton`,
Y up, +Z forward, +X the body's left)::

    {"joints": [the 22 canonical joint names],
     "positions": N x 22 x 3 joint positions (metres, pelvis at the origin),
     "rotations": N x 22 x 4 local quaternions (w, x, y, z) relative to the rest T-pose,
     "match": N text-pose similarities, "implausibility": N DPoser scores (test-split mocap
     averages 0.37), "constraints": the posecode words read from the prompt, [[posecode, word]],
     "alternatives": the prompt's readings when it leaves a side open ("on one leg"), each a
     list of [posecode, word] a candidate meets one of,
     "command", "prompt", "seed", ...}

* ``generate --prompt TEXT``: ``N`` candidates for a prompt
  (:func:`poseforge.backend.tasks.text2pose.generate_poses`).
* ``edit --pose FILE --prompt TEXT``: re-predict the body parts the instruction names (or
  ``--parts``), keep every other joint and the ``--pinned`` ones
  (:func:`~poseforge.backend.tasks.text2pose.edit_poses`); adds ``"parts"``, ``"changed"`` (joint
  names re-predicted) and ``"message"``.
* ``variations --pose FILE --strength S``: re-sample a share ``S`` of the joints
  (:func:`~poseforge.backend.tasks.text2pose.variation_poses`); ``"changed"`` per candidate.
* ``mix --pose A --pose-b B --parts arms``: the named body parts from B, the rest from A, decoded
  together (:func:`~poseforge.backend.tasks.text2pose.mix_poses`); one pose.

An input pose file is either the output of these commands (``--index`` picks a candidate,
default 0) or a single pose ``{"joints": [...], "rotations": 22 x 4}`` (``1 x 22 x 4`` works
too).  The joints may be listed in any order: rotations are reordered by name; a missing,
unknown or repeated joint name is an error.  Without ``"joints"`` the canonical order is assumed.

Bad input (missing or malformed file, wrong joint names, empty prompt, a count out of range, an
unknown body part or pinned joint, missing weights) prints one line on stderr and exits with
status 2; nothing is written.  The output is written to a temporary file beside it and renamed,
so a failure never leaves a partial file or touches an existing one.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from ..skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS

#: Most candidates one command may ask for (as the backend's ``MAX_SAMPLES``).
MAX_SAMPLES = 64
#: Decimals written for positions and quaternions (0.001 mm; unit norm to about 1e-6).
DECIMALS = 6


class Text2PoseCliError(ValueError):
    """Bad command-line input: the message is the one line printed on stderr."""


# --------------------------------------------------------------------------------------------
# reading and writing pose files
# --------------------------------------------------------------------------------------------

def _load_json(path: Path, option: str):
    if not path.is_file():
        raise Text2PoseCliError(f"{option} {path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise Text2PoseCliError(f"{option} {path}: not a text (UTF-8 JSON) file") from None
    except json.JSONDecodeError as exc:
        raise Text2PoseCliError(f"{option} {path}: not valid JSON ({exc})") from None


def pose_from_json(data, index: int = 0, where: str = "pose file") -> np.ndarray:
    """One pose of a pose file's content, in the canonical joint order.

    Args:
        data: the parsed JSON: ``{"joints": [names], "rotations": (N, J, 4) | (J, 4)}`` (other keys
            ignored); without ``"joints"`` the 22 canonical joints in canonical order.
        index: which candidate of an ``(N, J, 4)`` list (0-based; negative counts from the end).
        where: names the file in messages.
    Returns:
        ``(22, 4)`` float64 local quaternions ``(w, x, y, z)``, canonical joint order (not
        normalised: the backend checks and normalises them).
    Raises:
        Text2PoseCliError: not an object, no ``"rotations"``, non-numeric or ragged values, a
            wrong shape, ``index`` out of range, missing / unknown / repeated joint names.
    """
    if not isinstance(data, dict):
        raise Text2PoseCliError(f"{where}: expected a JSON object with \"joints\" and \"rotations\", "
                                f"got {type(data).__name__}")
    if "rotations" not in data:
        raise Text2PoseCliError(f"{where}: no \"rotations\" (a 22 x 4 list of quaternions w, x, y, z)")
    joints = data.get("joints", list(JOINT_NAMES))
    if not isinstance(joints, list) or not all(isinstance(j, str) for j in joints):
        raise Text2PoseCliError(f"{where}: \"joints\" must be a list of joint names")
    unknown = [j for j in joints if j not in JOINT_INDEX]
    if unknown:
        raise Text2PoseCliError(f"{where}: unknown joint name(s) {', '.join(map(repr, unknown))}; "
                                f"the canonical joints are {', '.join(JOINT_NAMES)}")
    repeated = sorted({j for j in joints if joints.count(j) > 1})
    if repeated:
        raise Text2PoseCliError(f"{where}: joint name(s) {', '.join(map(repr, repeated))} listed more than once")
    missing = [j for j in JOINT_NAMES if j not in joints]
    if missing:
        raise Text2PoseCliError(f"{where}: missing joint(s) {', '.join(map(repr, missing))} "
                                f"(all {NUM_JOINTS} canonical joints are needed)")
    try:
        rot = np.asarray(data["rotations"], dtype=np.float64)
    except (TypeError, ValueError):
        raise Text2PoseCliError(f"{where}: \"rotations\" must be a list of [w, x, y, z] numbers "
                                "with the same length for every joint") from None
    if rot.ndim == 2:
        rot = rot[None]
    if rot.ndim != 3 or rot.shape[1:] != (NUM_JOINTS, 4):
        raise Text2PoseCliError(f"{where}: \"rotations\" must be {NUM_JOINTS} x 4 (one pose) or "
                                f"N x {NUM_JOINTS} x 4 (candidates), got {' x '.join(map(str, rot.shape))}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(rot) <= index < len(rot):
        raise Text2PoseCliError(f"--index {index}: {where} holds {len(rot)} pose(s) (0 to {len(rot) - 1})")
    pose = rot[int(index)]
    if not np.isfinite(pose).all():
        raise Text2PoseCliError(f"{where}: a rotation holds NaN or infinite values")
    order = [joints.index(name) for name in JOINT_NAMES]
    return pose[order]


def read_pose(path, index: int = 0, option: str = "--pose") -> np.ndarray:
    """``(22, 4)`` canonical local quaternions of candidate ``index`` of a pose file (see
    :func:`pose_from_json`).

    Raises:
        Text2PoseCliError: missing file, invalid JSON or a malformed pose.
    """
    path = Path(path)
    return pose_from_json(_load_json(path, option), index, f"{option} {path.name}")


def _plain(value):
    """numpy arrays and scalars -> JSON values (floats rounded to :data:`DECIMALS`)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.round(value.astype(np.float64), DECIMALS).tolist()
        return value.tolist()
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, DECIMALS) if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_json_atomic(path, data: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path`` (an existing
    file is replaced only once the new one is complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(data), indent=1) + "\n"
    # a plain open() (not mkstemp) so the file gets the usual permissions of the user's umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# option checks
# --------------------------------------------------------------------------------------------

def _check_prompt(prompt, option: str = "--prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise Text2PoseCliError(f"{option} is empty: say what the pose should do")
    return prompt.strip()


def _check_samples(samples) -> int:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= MAX_SAMPLES:
        raise Text2PoseCliError(f"--samples must be 1 to {MAX_SAMPLES}, got {samples}")
    return int(samples)


def _names(text, option: str) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; ``None`` stays ``None``."""
    if text is None:
        return None
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        return []
    if any(not s for s in items):
        raise Text2PoseCliError(f"{option} {text!r}: empty entry (write names separated by commas)")
    return items


def _check_pinned(text) -> list[str]:
    names = _names(text, "--pinned") or []
    bad = [n for n in names if n not in JOINT_INDEX]
    if bad:
        raise Text2PoseCliError(f"--pinned: unknown joint(s) {', '.join(map(repr, bad))}; "
                                f"the canonical joints are {', '.join(JOINT_NAMES)}")
    return names


def _check_parts(text, option: str = "--parts", required: bool = False) -> list[str] | None:
    from ..text.parts import BODY_PARTS, PART_GROUPS

    names = _names(text, option)
    if not names:
        if required:
            raise Text2PoseCliError(f"{option}: name at least one body part "
                                    f"({', '.join(sorted(set(PART_GROUPS) | set(BODY_PARTS)))})")
        return None
    bad = [n for n in names if n not in PART_GROUPS and n not in BODY_PARTS]
    if bad:
        raise Text2PoseCliError(f"{option}: unknown body part(s) {', '.join(map(repr, bad))}; use "
                                f"{', '.join(sorted(set(PART_GROUPS) | set(BODY_PARTS)))}")
    return names


def _check_out(out, *inputs) -> Path:
    out = Path(out)
    if out.is_dir():
        raise Text2PoseCliError(f"--out {out} is a folder: give a .json file name")
    for p in inputs:
        if p is not None and Path(p).exists() and out.resolve() == Path(p).resolve():
            raise Text2PoseCliError("--out must differ from the input pose file (it would be overwritten)")
    return out


def _device(device: str) -> str:
    from ..service import JobError
    from .jobs import resolve_device
    try:
        return resolve_device(device)
    except JobError as exc:
        raise Text2PoseCliError(f"--device: {exc.message}") from None


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------

def _backend_call(fn, *args, **kwargs) -> tuple[dict, float]:
    """Run a backend function; its :class:`Text2PoseError` becomes a one-line CLI error."""
    from ..service import JobError

    t0 = time.perf_counter()
    try:
        res = fn(*args, **kwargs)
    except JobError as exc:
        hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
        raise Text2PoseCliError(f"{exc.message}{hint}") from None
    return res, time.perf_counter() - t0


def _output(res: dict, command: str, **extra) -> dict:
    out = {"joints": list(res["joints"]), "positions": res["positions"], "rotations": res["rotations"]}
    out.update({"command": command, **extra})
    for key in ("match", "implausibility", "constraints", "alternatives", "parts", "changed", "message", "codes"):
        if key in res:
            out[key] = res[key]
    out["frame"] = {"up": "Y", "forward": "+Z", "left": "+X", "units": "metres",
                    "quaternions": "local, w x y z, relative to the rest T-pose"}
    return out


def generate_file(prompt: str, out, *, samples: int = 4, seed: int = 0, weights_dir=None,
                  text_encoder=None, device: str = "auto") -> dict:
    """``poseforge generate``: write ``samples`` candidates for ``prompt`` to ``out`` (JSON).

    Args:
        prompt: what the pose should do, in English.
        out: output ``.json`` (format in the module docstring).
        samples: candidates (1-64); seed: the same seed gives the same file.
        weights_dir: QPoser / text2pose / DPoser weights folder (default: the shipped ones).
        text_encoder: a local sentence-transformers folder (default: the bundled all-MiniLM-L6-v2).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    Returns:
        what was written (numpy arrays), plus ``"seconds"``.
    Raises:
        Text2PoseCliError: bad options, or the backend's error (missing weights, ...).
    """
    prompt = _check_prompt(prompt)
    samples = _check_samples(samples)
    out = _check_out(out)
    dev = _device(device)
    from .text2pose import generate_poses

    res, sec = _backend_call(generate_poses, prompt, samples, int(seed), weights_dir=weights_dir,
                             text_encoder=text_encoder, device=dev)
    data = _output(res, "generate", prompt=prompt, seed=int(seed), samples=samples)
    write_json_atomic(out, data)
    return dict(data, seconds=sec)


def edit_file(pose, prompt: str, out, *, index: int = 0, samples: int = 4, seed: int = 0, pinned=None,
              parts=None, weights_dir=None, text_encoder=None, device: str = "auto") -> dict:
    """``poseforge edit``: edit one pose of a pose file with an instruction, write the candidates.

    Args:
        pose: input pose file (see :func:`pose_from_json`); index: its candidate to edit.
        prompt: the instruction ("raise the left arm", "bend the knees more").
        pinned: ``"a,b"`` canonical joint names that must not move (they and their ancestors keep
            their rotations).
        parts: ``"arms,head"`` body parts to re-predict (default: those the instruction names, or
            the whole body when it names none).
        others: as :func:`generate_file`.
    Returns:
        what was written, plus ``"seconds"``.
    Raises:
        Text2PoseCliError: bad file or options, or the backend's error.
    """
    prompt = _check_prompt(prompt)
    samples = _check_samples(samples)
    out = _check_out(out, pose)
    rot = read_pose(pose, index)
    pins = _check_pinned(pinned)
    part_list = _check_parts(parts)
    dev = _device(device)
    from .text2pose import edit_poses

    res, sec = _backend_call(edit_poses, rot, prompt, samples, int(seed), pinned=pins, parts=part_list,
                             weights_dir=weights_dir, text_encoder=text_encoder, device=dev)
    data = _output(res, "edit", prompt=prompt, seed=int(seed), samples=samples, pinned=pins,
                   source={"pose": Path(pose).name, "index": int(index)})
    write_json_atomic(out, data)
    return dict(data, seconds=sec)


def variations_file(pose, out, *, strength: float = 0.3, index: int = 0, samples: int = 4, seed: int = 0,
                    pinned=None, weights_dir=None, device: str = "auto") -> dict:
    """``poseforge variations``: re-sample a share ``strength`` (0-1] of a pose's joints.

    Returns:
        what was written (``"changed"``: per candidate the joints re-sampled), plus ``"seconds"``.
    Raises:
        Text2PoseCliError: bad file, strength or options, or the backend's error.
    """
    samples = _check_samples(samples)
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise Text2PoseCliError(f"--strength must be a number in (0, 1], got {strength!r}") from None
    if not 0.0 < strength <= 1.0:
        raise Text2PoseCliError(f"--strength must be in (0, 1], got {strength}")
    out = _check_out(out, pose)
    rot = read_pose(pose, index)
    pins = _check_pinned(pinned)
    dev = _device(device)
    from .text2pose import variation_poses

    res, sec = _backend_call(variation_poses, rot, strength, samples, int(seed), pinned=pins,
                             weights_dir=weights_dir, device=dev)
    data = _output(res, "variations", strength=strength, seed=int(seed), samples=samples, pinned=pins,
                   source={"pose": Path(pose).name, "index": int(index)})
    write_json_atomic(out, data)
    return dict(data, seconds=sec)


def mix_file(pose, pose_b, parts, out, *, index: int = 0, index_b: int = 0, weights_dir=None,
             device: str = "auto") -> dict:
    """``poseforge mix``: the body parts ``parts`` (``"arms"``, ``"legs,head"``...) of pose B with
    the rest of pose A, decoded together into one pose.

    Returns:
        what was written, plus ``"seconds"``.
    Raises:
        Text2PoseCliError: bad files or parts, or the backend's error.
    """
    part_list = _check_parts(parts, required=True)
    out = _check_out(out, pose, pose_b)
    a = read_pose(pose, index)
    b = read_pose(pose_b, index_b, option="--pose-b")
    dev = _device(device)
    from .text2pose import mix_poses

    res, sec = _backend_call(mix_poses, a, b, part_list, weights_dir=weights_dir, device=dev)
    data = _output(res, "mix", source={"pose": Path(pose).name, "index": int(index),
                                       "pose_b": Path(pose_b).name, "index_b": int(index_b)})
    write_json_atomic(out, data)
    return dict(data, seconds=sec)


def _summary(info: dict) -> str:
    n = len(info["rotations"])
    what = f"{n} candidate{'s' if n != 1 else ''}"
    if info.get("changed") and info["command"] == "edit":
        what += f" (changed: {', '.join(info['parts'])})"
    imp = np.asarray(info.get("implausibility", []), dtype=np.float64)
    plaus = f", implausibility {imp.mean():.2f}" if imp.size and imp.any() else ""
    return f"{what}{plaus}, {info['seconds']:.2f} s"


def cli_main(args) -> int:
    """Entry point of ``poseforge generate | edit | variations | mix`` (argparse namespace of
    :mod:`poseforge.backend.cli`; ``args.command`` picks the command).

    Returns:
        0 on success; 2 for bad input (one line on stderr, nothing written).
    """
    cmd = args.command
    common = {"weights_dir": getattr(args, "weights_dir", None), "device": getattr(args, "device", "auto")}
    try:
        if cmd == "generate":
            info = generate_file(args.prompt, args.out, samples=args.samples, seed=args.seed,
                                 text_encoder=args.text_encoder, **common)
        elif cmd == "edit":
            info = edit_file(args.pose, args.prompt, args.out, index=args.index, samples=args.samples,
                             seed=args.seed, pinned=args.pinned, parts=args.parts,
                             text_encoder=args.text_encoder, **common)
        elif cmd == "variations":
            info = variations_file(args.pose, args.out, strength=args.strength, index=args.index,
                                   samples=args.samples, seed=args.seed, pinned=args.pinned, **common)
        elif cmd == "mix":
            info = mix_file(args.pose, args.pose_b, args.parts, args.out, index=args.index,
                            index_b=args.index_b, **common)
        else:  # pragma: no cover - argparse only routes the four commands here
            raise Text2PoseCliError(f"unknown command {cmd!r}")
    except Text2PoseCliError as exc:
        msg = " ".join(str(exc).split())
        print(f"poseforge {cmd}: error: {msg}", file=sys.stderr)
        return 2
    if info.get("message"):
        print(f"note: {info['message']}", file=sys.stderr)
    print(f"wrote {args.out}: {_summary(info)}")
    return 0


__all__ = ["Text2PoseCliError", "MAX_SAMPLES", "pose_from_json", "read_pose", "write_json_atomic",
           "generate_file", "edit_file", "variations_file", "mix_file", "cli_main"]
