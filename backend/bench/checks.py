"""Geometric checks of the text-to-pose benchmark (``poseforge bench text2pose``).

A prompt of the suite comes with checks on the joints of the generated poses: ``{"above":
["left_wrist", "head", 0.05]}`` says the left wrist is at least 5 cm higher than the head. A
sample passes its prompt when every check holds; the benchmark reports the share of samples that
pass, the diversity of the samples (APD) and the generation latency, in the spirit of the
text-to-pose evaluation of PoseScript (Delmas et al., ECCV 2022) with posecode-like geometric
tests in place of a learned retrieval metric.

Frames and units: positions are ``(N, 22, 3)`` metres on the canonical body (joint order of
:data:`~poseforge.backend.skeleton.JOINT_NAMES`), Y up, the body facing +Z, +X the body's left.
:func:`face_forward` brings any pose into that frame (pelvis at the origin, hips along X);
:func:`run_suite` applies it to generated poses before checking them.

Check kinds (JSON objects with one key; ``a``/``b`` are joint names, ``m`` an optional margin in
metres, default 0, which may be negative to allow ``a`` slightly short of ``b``):

* ``{"above": [a, b, m]}``: ``y_a > y_b + m``;  ``{"below": [a, b, m]}``: ``y_a < y_b - m``
* ``{"in_front": [a, b, m]}``: ``z_a > z_b + m``;  ``{"behind": [a, b, m]}``: ``z_a < z_b - m``
* ``{"left_of": [a, b, m]}``: ``x_a > x_b + m`` (the body's left);  ``{"right_of": [a, b, m]}``:
  ``x_a < x_b - m``
* ``{"bend_lt": [j, deg]}`` / ``{"bend_gt": [j, deg]}``: the bend angle at ``j`` below / above
  ``deg`` degrees
* ``{"dist_lt": [a, b, d]}`` / ``{"dist_gt": [a, b, d]}``: ``|p_a - p_b|`` below / above ``d``
  metres
* ``{"height_lt": [j, h]}`` / ``{"height_gt": [j, h]}``: ``y_j - floor`` below / above ``h``
  metres
* ``{"lean": [dir, deg]}``: the torso tilts towards ``dir`` (forward, back, left, right) by at
  least ``deg`` degrees
* ``{"all": [c, ...]}``: every check holds; ``{"any": [c, ...]}``: at least one does;
  ``{"not": c}``: the check fails

Definitions:

* Bend angle (degrees, :func:`bend_angle`): at a knee the angle between the thigh (hip -> knee)
  and the shin (knee -> ankle); at an elbow between the upper arm (shoulder -> elbow) and the
  forearm (elbow -> wrist): 0 = straight, about 90 = a right angle. At a hip the angle between the
  torso's downward axis (neck -> pelvis) and the thigh (hip -> knee): 0 standing, about 90 sitting
  or with the leg lifted forward or out to the side. At a shoulder the angle between that downward
  axis and the upper arm (shoulder -> elbow): 0 arm hanging, 90 arm horizontal (T-pose or reaching
  forward), 180 arm straight up.
* Floor: the lowest of the four foot joints (ankles and feet) of each pose.
* Lean (:func:`lean_angles`): the torso axis pelvis -> neck seen in the sagittal plane (Y, Z) for
  forward/back and in the frontal plane (Y, X) for left/right; ``atan2`` of the horizontal
  component over the vertical one, so bending over past horizontal reads above 90.

Joint names: the 22 canonical names plus the aliases ``left_hand`` / ``right_hand`` (the wrists).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..skeleton import JOINT_INDEX, NUM_JOINTS

__all__ = [
    "CheckError", "ALIASES", "CHECK_KINDS", "BEND_JOINTS", "joint_index", "validate_check",
    "face_forward", "bend_angle", "lean_angles", "evaluate", "passes", "apd", "load_suite",
    "run_suite",
]


class CheckError(ValueError):
    """A check, a suite file or generated positions are malformed (the message names the problem
    and, for suite files, the line)."""


#: Extra joint names accepted by checks, mapped to canonical joints.
ALIASES: dict[str, str] = {"left_hand": "left_wrist", "right_hand": "right_wrist"}

_RELATIVE = {  # kind -> (axis, sign): holds when sign * (p_a - p_b)[axis] > margin
    "above": (1, 1.0), "below": (1, -1.0), "in_front": (2, 1.0), "behind": (2, -1.0),
    "left_of": (0, 1.0), "right_of": (0, -1.0),
}
_LEAN_DIRS = ("forward", "back", "left", "right")

#: Every check kind :func:`evaluate` understands.
CHECK_KINDS: tuple[str, ...] = (*_RELATIVE, "bend_lt", "bend_gt", "dist_lt", "dist_gt",
                                "height_lt", "height_gt", "lean", "all", "any", "not")

_J = JOINT_INDEX
_DOWN = None  # marker: the torso's downward axis (neck -> pelvis) as the first segment
#: Joints with a bend angle: joint -> (start of the first segment, end of it, end of the second
#: segment, which starts at the joint). ``None`` as the first pair means the torso's downward axis.
BEND_JOINTS: dict[str, tuple] = {
    "left_knee": ("left_hip", "left_knee", "left_ankle"),
    "right_knee": ("right_hip", "right_knee", "right_ankle"),
    "left_elbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "right_elbow": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_hip": (_DOWN, "left_hip", "left_knee"),
    "right_hip": (_DOWN, "right_hip", "right_knee"),
    "left_shoulder": (_DOWN, "left_shoulder", "left_elbow"),
    "right_shoulder": (_DOWN, "right_shoulder", "right_elbow"),
}
_FOOT_JOINTS = [_J["left_ankle"], _J["right_ankle"], _J["left_foot"], _J["right_foot"]]


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def joint_index(name, where: str = "") -> int:
    """Index of a joint name (canonical or alias) in the canonical joint order.

    Raises:
        CheckError: unknown name (the message lists the accepted ones).
    """
    if isinstance(name, str):
        canon = ALIASES.get(name, name)
        if canon in JOINT_INDEX:
            return JOINT_INDEX[canon]
    raise CheckError(f"{_where(where)}unknown joint {name!r}; use one of "
                     f"{', '.join(list(JOINT_INDEX) + list(ALIASES))}")


def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckError(f"{_where(where)}{what} must be a finite number, got {value!r}")
    return float(value)


def validate_check(check, where: str = "") -> None:
    """Check that a check is well formed: one known kind, known joints, numbers where numbers go.

    Args:
        check: a check object (see the module docstring).
        where: context for messages, e.g. ``"suite.jsonl line 12"``.
    Raises:
        CheckError: naming the unknown kind or joint, or the malformed argument.
    """
    if not isinstance(check, dict) or len(check) != 1:
        raise CheckError(f"{_where(where)}a check is an object with exactly one key, got {check!r}")
    (kind, args), = check.items()
    if kind not in CHECK_KINDS:
        raise CheckError(f"{_where(where)}unknown check kind {kind!r}; use one of {', '.join(CHECK_KINDS)}")
    if kind == "not":
        validate_check(args, where)
        return
    if kind in ("all", "any"):
        if not isinstance(args, list) or not args:
            raise CheckError(f"{_where(where)}{kind!r} takes a non-empty list of checks, got {args!r}")
        for sub in args:
            validate_check(sub, where)
        return
    if not isinstance(args, list):
        raise CheckError(f"{_where(where)}{kind!r} takes a list of arguments, got {args!r}")
    if kind in _RELATIVE:
        if len(args) not in (2, 3):
            raise CheckError(f"{_where(where)}{kind!r} takes [joint, joint] or [joint, joint, margin_m], got {args!r}")
        joint_index(args[0], where), joint_index(args[1], where)
        if len(args) == 3:
            _number(args[2], f"{kind!r} margin", where)
    elif kind in ("bend_lt", "bend_gt"):
        if len(args) != 2:
            raise CheckError(f"{_where(where)}{kind!r} takes [joint, degrees], got {args!r}")
        if args[0] not in BEND_JOINTS and ALIASES.get(args[0], args[0]) not in BEND_JOINTS:
            joint_index(args[0], where)  # unknown joint: say so first
            raise CheckError(f"{_where(where)}{kind!r}: no bend angle defined at {args[0]!r}; "
                             f"use one of {', '.join(BEND_JOINTS)}")
        _number(args[1], f"{kind!r} angle", where)
    elif kind in ("dist_lt", "dist_gt"):
        if len(args) != 3:
            raise CheckError(f"{_where(where)}{kind!r} takes [joint, joint, metres], got {args!r}")
        joint_index(args[0], where), joint_index(args[1], where)
        _number(args[2], f"{kind!r} distance", where)
    elif kind in ("height_lt", "height_gt"):
        if len(args) != 2:
            raise CheckError(f"{_where(where)}{kind!r} takes [joint, metres], got {args!r}")
        joint_index(args[0], where)
        _number(args[1], f"{kind!r} height", where)
    elif kind == "lean":
        if len(args) != 2 or args[0] not in _LEAN_DIRS:
            raise CheckError(f"{_where(where)}'lean' takes [direction, degrees] with direction one of "
                             f"{', '.join(_LEAN_DIRS)}, got {args!r}")
        _number(args[1], "'lean' angle", where)


def _as_positions(positions) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3):
        raise CheckError(f"expected joint positions of shape (N, {NUM_JOINTS}, 3), got {np.shape(positions)}")
    if not np.isfinite(pos).all():
        raise CheckError("joint positions contain NaN or infinite values")
    return pos


def face_forward(positions) -> np.ndarray:
    """Bring poses into the check frame: pelvis at the origin, turned about Y so the hips run
    along X (right hip -> left hip along +X), hence the body faces +Z.

    Args:
        positions: ``(N, 22, 3)`` (or ``(22, 3)``) metres, Y up, any heading.
    Returns:
        ``(N, 22, 3)`` float64 metres.
    Raises:
        CheckError: wrong shape or non-finite values.
    """
    pos = _as_positions(positions)
    pos = pos - pos[:, :1]
    across = pos[:, _J["left_hip"]] - pos[:, _J["right_hip"]]
    yaw = np.arctan2(-across[:, 2], across[:, 0])  # angle turning +X onto the hip line about Y
    c, s = np.cos(yaw), np.sin(yaw)
    # rotation about Y by -yaw: x' = c x - s z, z' = s x + c z
    x, z = pos[..., 0], pos[..., 2]
    out = pos.copy()
    out[..., 0] = c[:, None] * x - s[:, None] * z
    out[..., 2] = s[:, None] * x + c[:, None] * z
    return out


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    nu = np.linalg.norm(u, axis=-1)
    nv = np.linalg.norm(v, axis=-1)
    cos = np.einsum("...i,...i->...", u, v) / np.maximum(nu * nv, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def bend_angle(positions, joint: str) -> np.ndarray:
    """Bend angle at a knee, elbow, hip or shoulder (definitions in the module docstring).

    Args:
        positions: ``(N, 22, 3)`` metres, Y up.
        joint: one of :data:`BEND_JOINTS`.
    Returns:
        ``(N,)`` degrees in ``[0, 180]``; 0 = straight (knee, elbow) or along the torso (hip,
        shoulder).
    Raises:
        CheckError: no bend angle defined at that joint, or malformed positions.
    """
    pos = _as_positions(positions)
    if joint not in BEND_JOINTS:
        raise CheckError(f"no bend angle defined at {joint!r}; use one of {', '.join(BEND_JOINTS)}")
    start, mid, end = BEND_JOINTS[joint]
    m = pos[:, _J[mid]]
    first = (pos[:, _J["pelvis"]] - pos[:, _J["neck"]]) if start is _DOWN else (m - pos[:, _J[start]])
    return _angle_deg(first, pos[:, _J[end]] - m)


def lean_angles(positions) -> dict[str, np.ndarray]:
    """Torso tilt of each pose (pelvis -> neck axis, body frame), degrees.

    Returns:
        ``{"forward", "back", "left", "right"}`` -> ``(N,)`` signed degrees (a lean back reads
        negative under "forward" and positive under "back"; likewise left/right).
    """
    pos = _as_positions(positions)
    axis = pos[:, _J["neck"]] - pos[:, _J["pelvis"]]
    fwd = np.degrees(np.arctan2(axis[:, 2], axis[:, 1]))
    left = np.degrees(np.arctan2(axis[:, 0], axis[:, 1]))
    return {"forward": fwd, "back": -fwd, "left": left, "right": -left}


def _eval(check, pos: np.ndarray) -> np.ndarray:
    (kind, args), = check.items()
    if kind == "not":
        return ~_eval(args, pos)
    if kind == "all":
        return np.logical_and.reduce([_eval(c, pos) for c in args])
    if kind == "any":
        return np.logical_or.reduce([_eval(c, pos) for c in args])
    if kind in _RELATIVE:
        axis, sign = _RELATIVE[kind]
        margin = float(args[2]) if len(args) == 3 else 0.0
        diff = pos[:, joint_index(args[0]), axis] - pos[:, joint_index(args[1]), axis]
        return sign * diff > margin
    if kind in ("bend_lt", "bend_gt"):
        ang = bend_angle(pos, ALIASES.get(args[0], args[0]))
        return ang < args[1] if kind == "bend_lt" else ang > args[1]
    if kind in ("dist_lt", "dist_gt"):
        d = np.linalg.norm(pos[:, joint_index(args[0])] - pos[:, joint_index(args[1])], axis=-1)
        return d < args[2] if kind == "dist_lt" else d > args[2]
    if kind in ("height_lt", "height_gt"):
        h = pos[:, joint_index(args[0]), 1] - pos[:, _FOOT_JOINTS, 1].min(axis=1)
        return h < args[1] if kind == "height_lt" else h > args[1]
    if kind == "lean":
        return lean_angles(pos)[args[0]] >= args[1]
    raise CheckError(f"unknown check kind {kind!r}")  # unreachable after validate_check


def evaluate(check, positions) -> np.ndarray:
    """Whether each pose satisfies one check.

    Args:
        check: a check object (module docstring); validated first.
        positions: ``(N, 22, 3)`` (or ``(22, 3)``) metres in the check frame (Y up, facing +Z,
            +X body-left; see :func:`face_forward`).
    Returns:
        ``(N,)`` bool.
    Raises:
        CheckError: malformed check (unknown kind or joint) or positions.
    """
    validate_check(check)
    return _eval(check, _as_positions(positions))


def passes(checks: Iterable, positions) -> np.ndarray:
    """Whether each pose satisfies every check of a list (an empty list passes everything).

    Args:
        checks: list of check objects.
        positions: ``(N, 22, 3)`` metres in the check frame.
    Returns:
        ``(N,)`` bool.
    Raises:
        CheckError: as :func:`evaluate`.
    """
    pos = _as_positions(positions)
    ok = np.ones(pos.shape[0], dtype=bool)
    for c in checks:
        ok &= evaluate(c, pos)
    return ok


def apd(positions) -> float:
    """Average pairwise distance (APD) of a set of samples, the diversity measure of diverse
    human motion prediction (Yuan & Kitani, DLow, ECCV 2020) used by text-to-motion work: the
    mean over all pairs of samples ``i < k`` of the mean over joints of ``|p_i,j - p_k,j|``.

    Args:
        positions: ``(S, 22, 3)`` metres.
    Returns:
        metres; ``0.0`` for fewer than two samples.
    Raises:
        CheckError: malformed positions.
    """
    pos = _as_positions(positions)
    s = pos.shape[0]
    if s < 2:
        return 0.0
    iu, ku = np.triu_indices(s, k=1)
    return float(np.linalg.norm(pos[iu] - pos[ku], axis=-1).mean())


_WORDINGS = ("captioner", "free")


def load_suite(path) -> list[dict]:
    """Read a prompt suite: one JSON object per line, ``{"prompt": str, "checks": [check, ...],
    "wording": "captioner" | "free", "tags": [str, ...] (optional)}``; blank lines and lines
    starting with ``#`` are skipped.

    Args:
        path: the ``.jsonl`` file.
    Returns:
        list of the entries (``tags`` defaults to ``[]``), in file order.
    Raises:
        CheckError: missing file, invalid JSON, missing or wrong fields, unknown check kinds or
            joints; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"prompt suite {path} not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {n}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(entry, dict):
            raise CheckError(f"{where}: expected an object, got {type(entry).__name__}")
        unknown = set(entry) - {"prompt", "checks", "wording", "tags"}
        if unknown:
            raise CheckError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise CheckError(f"{where}: 'prompt' must be a non-empty string")
        checks = entry.get("checks")
        if not isinstance(checks, list) or not checks:
            raise CheckError(f"{where}: 'checks' must be a non-empty list")
        for c in checks:
            validate_check(c, where)
        if entry.get("wording") not in _WORDINGS:
            raise CheckError(f"{where}: 'wording' must be one of {', '.join(_WORDINGS)}, got {entry.get('wording')!r}")
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CheckError(f"{where}: 'tags' must be a list of strings")
        out.append({"prompt": entry["prompt"], "checks": checks, "wording": entry["wording"], "tags": tags})
    if not out:
        raise CheckError(f"prompt suite {path} holds no prompts")
    return out


def run_suite(generate: Callable[[str, int, int], np.ndarray], suite: list[dict], samples: int = 4,
              seed: int = 0, canonicalize: bool = True,
              clock: Callable[[], float] = time.perf_counter) -> dict:
    """Run the text-to-pose benchmark over a suite.

    Each prompt is generated once with the same ``seed`` (results do not depend on the order of
    the suite), timed with ``clock``, brought into the check frame by :func:`face_forward` (when
    ``canonicalize``) and checked.

    Args:
        generate: ``generate(prompt, samples, seed) -> (samples, 22, 3)`` joint positions,
            metres, Y up.
        suite: entries as returned by :func:`load_suite`.
        samples: candidates per prompt (>= 1).
        seed: passed to every ``generate`` call.
        canonicalize: turn each sample to face +Z with the pelvis at the origin before checking.
        clock: seconds counter (injectable for tests).
    Returns:
        ``{"prompts": [{"prompt", "wording", "tags", "pass_rate", "check_pass_rates", "apd_m",
        "latency_s"}], "summary": {"samples_per_prompt", "prompts", "pass_rate" (share of all
        samples passing all their checks), "prompt_pass_rate_mean", "pass_rate_by_wording",
        "prompts_all_passing", "apd_m_mean", "latency_s_mean", "latency_s_median"}}``.
    Raises:
        CheckError: ``samples < 1``, an empty suite, or a generator returning the wrong shape or
            non-finite values (the prompt is named).
    """
    if samples < 1:
        raise CheckError(f"samples must be >= 1, got {samples}")
    if not suite:
        raise CheckError("the prompt suite is empty")
    rows = []
    for entry in suite:
        t0 = clock()
        out = generate(entry["prompt"], samples, seed)
        latency = clock() - t0
        try:
            pos = _as_positions(out)
        except CheckError as exc:
            raise CheckError(f"generator output for {entry['prompt']!r}: {exc}") from None
        if pos.shape[0] != samples:
            raise CheckError(f"generator output for {entry['prompt']!r}: asked for {samples} samples, "
                             f"got {pos.shape[0]}")
        if canonicalize:
            pos = face_forward(pos)
        per_check = [evaluate(c, pos) for c in entry["checks"]]
        ok = np.logical_and.reduce(per_check)
        rows.append({"prompt": entry["prompt"], "wording": entry.get("wording", "captioner"),
                     "tags": list(entry.get("tags", [])), "pass_rate": float(ok.mean()),
                     "passed": int(ok.sum()),
                     "check_pass_rates": [float(c.mean()) for c in per_check],
                     "apd_m": apd(pos), "latency_s": float(latency)})
    total = len(rows) * samples
    by_wording = {}
    for w in _WORDINGS:
        sel = [r for r in rows if r["wording"] == w]
        if sel:
            by_wording[w] = sum(r["passed"] for r in sel) / (len(sel) * samples)
    lat = np.array([r["latency_s"] for r in rows])
    summary = {
        "samples_per_prompt": samples, "prompts": len(rows), "seed": seed,
        "pass_rate": sum(r["passed"] for r in rows) / total,
        "prompt_pass_rate_mean": float(np.mean([r["pass_rate"] for r in rows])),
        "pass_rate_by_wording": by_wording,
        "prompts_all_passing": sum(r["passed"] == samples for r in rows),
        "apd_m_mean": float(np.mean([r["apd_m"] for r in rows])),
        "latency_s_mean": float(lat.mean()), "latency_s_median": float(np.median(lat)),
    }
    return {"prompts": rows, "summary": summary}
