"""Automatic pose captions from posecodes: text for text-to-pose training pairs.

The method follows the idea of PoseScript's posecodes (Delmas et al. 2022, "PoseScript: 3D Human
Poses from Natural Language", arXiv 2210.11795, Sec. 3): elementary measurements on the joint
positions (bend angles, distances, relative positions, orientation, ground contact) are binned
into words by thresholds, a random subset of the active ones is selected (the most salient always
kept), left/right pairs with the same word are aggregated ("both knees are bent"), and the result
is phrased with varied templates.  This is an independent implementation of that idea; nothing
of PoseScript's code is used.

Frames and units
----------------
Input poses are canonical (:mod:`poseforge.backend.skeleton`): 22 local quaternions ``(w, x, y,
z)`` relative to the rest T-pose, optional root (pelvis) positions in metres, Y up, +Z forward,
+X to the body's left.  Joint positions come from canonical forward kinematics (the canonical
bone lengths, about 1.7 m tall).  Every measurement is then taken in the **body frame**: the
pelvis is moved over the origin (its height kept) and the yaw of the body (from the hip and
shoulder lines) is removed so that the body faces +Z and its left is +X.  Pitch and roll are
kept, so leaning and lying stay measurable.

The floor: with ``root`` the floor is world ``y = 0`` (the canonical mocap cache puts it there).
Without ``root`` (or when a joint is more than 15 cm below ``y = 0``, i.e. the root is not
floor-referenced) the floor is the lowest knee / ankle / foot joint, so at least one foot or knee
touches it and "jumping" cannot be decided (its posecode is then ``(nan, None)``).

Thresholds (the word is ``None`` in the gaps between bins: the neutral zones)
----------------------------------------------------------------------------------------------
See :data:`THRESHOLDS` for the exact numbers.  Angles in degrees, distances in metres.

- ``{side}_knee_bend`` / ``{side}_elbow_bend``: angle between the upper and lower bone (0 =
  straight): straight < 15, slightly bent 25-50, bent 60-110, fully bent > 120.
- ``spine_bend``: forward pitch of the chest (spine3 -> neck) in the pelvis frame, minus the rest
  value: bent forward > 25, arched back < -15.
- ``lean_forward``: pitch of the torso (pelvis -> neck) from the vertical in the body frame,
  minus the rest value: forward 20-50, far forward > 50, back < -12.  ``lean_side``: roll,
  > 12 to the left, < -12 to the right.  ``torso_tilt``: angle of the torso from the vertical;
  > 60 is lying (on the back / face down / on the side from where the chest faces).
- ``hands_distance`` (wrist to wrist): close < 0.2, shoulder-width 0.3-0.5, wide > 0.8.
  ``feet_distance`` (ankles, horizontal): together < 0.12, shoulder-width 0.25-0.45, wide > 0.6.
  ``knees_distance``: together < 0.1, wide > 0.45.
- ``{side}_hand_head``: wrist to head < 0.22 -> near the face.  ``{side}_hand_hip``: wrist to
  the same-side hip < 0.2 with the elbow bent > 50 degrees -> on the hip.
- ``{side}_hand_height``: wrist height minus head-joint height: above the head > 0.08, head
  height -0.1 .. 0.04; minus shoulder height: shoulder height within +-0.07; the wrist below
  pelvis height + 0.1 -> low (hanging down).
- ``{side}_hand_forward``: wrist Z minus chest (spine3) Z: in front > 0.25, behind < -0.12.
  ``{side}_hand_cross``: the wrist's X on its own side (left +X); < -0.08 -> across the body.
  ``{side}_arm_out``: wrist X beyond the shoulder's by > 0.35 with the wrist within 0.2 of
  shoulder height -> stretched out to the side.
- ``{side}_knee_raise``: knee height minus hip height > -0.12 while that foot is lifted.
  ``feet_stagger``: left ankle Z minus right ankle Z: > 0.25 left foot in front, < -0.25 right.
- ``pelvis_height``: pelvis height above the floor / 0.93 m (canonical standing height):
  standing > 0.88, crouching 0.5-0.8 (knees bent > 40), squatting 0.3-0.5 (knees bent > 80),
  sitting < 0.25; kneeling when a knee is within 0.12 of the floor.
- ``{side}_foot_height`` (sole height: min of ankle - 0.054 and the foot joint): on the floor
  < 0.06, lifted > 0.12.  ``{side}_knee_floor``: knee height < 0.12 -> on the floor.
  ``jump``: the lower sole > 0.12 above a floor-referenced root -> in the air.

Public API: :func:`posecodes`, :func:`caption`, :func:`captioner_phrases`, :data:`VOCABULARY`,
:data:`THRESHOLDS`, :class:`CaptionError`.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..retarget import np_quat_to_matrix
from ..skeleton import JOINT_INDEX, NUM_JOINTS, forward_kinematics_np, rest_joint_positions


class CaptionError(ValueError):
    """Bad input to the captioner (wrong shape, NaN / inf, zero quaternion, bad labels)."""


_J = JOINT_INDEX
_REST = rest_joint_positions()
_STAND_PELVIS = float(_REST[0, 1] - min(_REST[_J["left_foot"], 1], _REST[_J["left_ankle"], 1]))
_ANKLE_ABOVE_SOLE = float(_REST[_J["left_ankle"], 1] - _REST[_J["left_foot"], 1])


def _sagittal(v: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(v[..., 2], v[..., 1]))


_REST_TORSO_PITCH = float(_sagittal(_REST[_J["neck"]] - _REST[0]))
_REST_CHEST_PITCH = float(_sagittal(_REST[_J["neck"]] - _REST[_J["spine3"]]))

#: Bins of every posecode: ``(low, high, word)``; a value in no bin gets the word ``None``.
#: Angles in degrees, distances in metres (canonical body, about 1.7 m tall).
THRESHOLDS: dict[str, tuple[tuple[float, float, str], ...]] = {
    "knee_bend": ((-1.0, 15.0, "straight"), (25.0, 50.0, "slightly bent"), (60.0, 110.0, "bent"),
                  (120.0, 181.0, "fully bent")),
    "elbow_bend": ((-1.0, 15.0, "straight"), (25.0, 50.0, "slightly bent"), (60.0, 110.0, "bent"),
                   (120.0, 181.0, "fully bent")),
    "spine_bend": ((35.0, 180.0, "forward"), (-180.0, -15.0, "back")),
    "lean_forward": ((20.0, 50.0, "forward"), (50.0, 180.0, "far forward"), (-180.0, -12.0, "back")),
    "lean_side": ((12.0, 180.0, "left"), (-180.0, -12.0, "right")),
    "hands_distance": ((0.0, 0.2, "close"), (0.3, 0.5, "shoulder-width"), (0.8, 9.0, "wide")),
    "feet_distance": ((0.0, 0.12, "together"), (0.25, 0.45, "shoulder-width"), (0.6, 9.0, "wide")),
    "knees_distance": ((0.0, 0.1, "together"), (0.45, 9.0, "wide")),
    "hand_head": ((0.0, 0.22, "near"),),
    "hand_hip": ((0.0, 0.2, "on"),),
    "hand_above_head": ((0.08, 9.0, "above head"), (-0.1, 0.04, "head height")),
    "hand_shoulder": ((-0.07, 0.07, "shoulder height"),),
    "hand_low": ((-9.0, 0.1, "low"),),
    "hand_forward": ((0.25, 9.0, "front"), (-9.0, -0.12, "behind")),
    "hand_cross": ((-9.0, -0.08, "across"),),
    "arm_out": ((0.35, 9.0, "out"),),
    "knee_raise": ((-0.12, 9.0, "raised"),),
    "feet_stagger": ((0.25, 9.0, "left"), (-9.0, -0.25, "right")),
    "torso_tilt": ((60.0, 181.0, "lying"),),
    "pelvis_height": ((0.88, 9.0, "standing"), (0.5, 0.8, "crouching"), (0.3, 0.5, "squatting"),
                      (-9.0, 0.25, "sitting")),
    "foot_height": ((-9.0, 0.06, "on the floor"), (0.12, 9.0, "lifted")),
    "knee_floor": ((-9.0, 0.12, "on the floor"),),
    "jump": ((0.12, 9.0, "in the air"),),
}
_ELBOW_FOR_HIP = 50.0
_ARM_OUT_HEIGHT = 0.2
_CROUCH_KNEE = 40.0
_SQUAT_KNEE = 80.0
_FLOOR_SANITY = -0.15


def _bin(kind: str, value: float) -> str | None:
    if not np.isfinite(value):
        return None
    for lo, hi, word in THRESHOLDS[kind]:
        if lo <= value < hi:
            return word
    return None


# --------------------------------------------------------------------------------------------
# input checking and geometry
# --------------------------------------------------------------------------------------------

def _check(rotations, root) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        q = np.asarray(rotations, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CaptionError(f"rotations must be a numeric array of quaternions: {exc}") from exc
    if q.ndim == 2:
        q = q[None]
    if q.ndim != 3 or q.shape[1:] != (NUM_JOINTS, 4):
        raise CaptionError(f"rotations must have shape (N, {NUM_JOINTS}, 4) or ({NUM_JOINTS}, 4) "
                           f"local quaternions (w, x, y, z), got {np.shape(rotations)}")
    bad = ~np.isfinite(q).all(axis=(1, 2))
    if bad.any():
        raise CaptionError(f"rotations contain NaN or inf (poses {np.flatnonzero(bad)[:10].tolist()})")
    norms = np.linalg.norm(q, axis=-1)
    if (norms < 1e-8).any():
        n, j = np.argwhere(norms < 1e-8)[0]
        raise CaptionError(f"zero quaternion at pose {n}, joint {j} (a rotation needs a non-zero norm)")
    r = None
    if root is not None:
        try:
            r = np.asarray(root, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CaptionError(f"root must be a numeric array of positions: {exc}") from exc
        if r.ndim == 1:
            r = r[None]
        if r.shape != (q.shape[0], 3):
            raise CaptionError(f"root must have shape ({q.shape[0]}, 3) metres to match the "
                               f"rotations, got {np.shape(root)}")
        if not np.isfinite(r).all():
            raise CaptionError("root contains NaN or inf")
    return q, r


def _body_frame(pos: np.ndarray, glob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N, 22, 3) in the body frame and the yaw rotations (N, 3, 3) used."""
    left = (pos[:, _J["left_hip"]] - pos[:, _J["right_hip"]]) \
        + (pos[:, _J["left_shoulder"]] - pos[:, _J["right_shoulder"]])
    left[:, 1] = 0.0
    small = np.linalg.norm(left, axis=-1) < 1e-3
    if small.any():  # hips and shoulders vertical (lying on the side): the pelvis' X axis
        alt = glob[:, 0, :, 0].copy()
        alt[:, 1] = 0.0
        left[small] = alt[small]
        still = np.linalg.norm(left, axis=-1) < 1e-6
        left[still] = (1.0, 0.0, 0.0)
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    fwd = np.stack([-left[:, 2], np.zeros(len(left)), left[:, 0]], -1)  # left x up
    up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), left.shape)
    yaw = np.stack([left, up, fwd], axis=1)  # rows: body axes in world coordinates
    centred = pos - np.stack([pos[:, 0, 0], np.zeros(len(pos)), pos[:, 0, 2]], -1)[:, None]
    return np.einsum("nij,nkj->nki", yaw, centred), yaw


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    c = np.sum(a * b, -1) / np.maximum(na * nb, 1e-12)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _measure(q: np.ndarray, root: np.ndarray | None) -> dict[str, np.ndarray]:
    """All posecode values, each (N,)."""
    world, glob = forward_kinematics_np(np_quat_to_matrix(q), root)
    p, yaw = _body_frame(world, glob)
    n = len(p)
    P = lambda name: p[:, _J[name]]  # noqa: E731
    v: dict[str, np.ndarray] = {}
    for s in ("left", "right"):
        v[f"{s}_knee_bend"] = _angle(P(f"{s}_knee") - P(f"{s}_hip"), P(f"{s}_ankle") - P(f"{s}_knee"))
        v[f"{s}_elbow_bend"] = _angle(P(f"{s}_elbow") - P(f"{s}_shoulder"), P(f"{s}_wrist") - P(f"{s}_elbow"))
    # chest pitch in the pelvis frame
    chest = np.einsum("nji,nj->ni", glob[:, 0], world[:, _J["neck"]] - world[:, _J["spine3"]])
    v["spine_bend"] = _sagittal(chest) - _REST_CHEST_PITCH
    torso = P("neck") - P("pelvis")
    v["lean_forward"] = _sagittal(torso) - _REST_TORSO_PITCH
    v["lean_side"] = np.degrees(np.arctan2(torso[:, 0], torso[:, 1]))
    v["torso_tilt"] = _angle(torso, np.array([0.0, 1.0, 0.0]))
    v["hands_distance"] = np.linalg.norm(P("left_wrist") - P("right_wrist"), axis=-1)
    v["feet_distance"] = np.linalg.norm((P("left_ankle") - P("right_ankle"))[:, [0, 2]], axis=-1)
    v["knees_distance"] = np.linalg.norm(P("left_knee") - P("right_knee"), axis=-1)
    v["feet_stagger"] = P("left_ankle")[:, 2] - P("right_ankle")[:, 2]
    # floor
    legs = [_J[k] for k in ("left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot")]
    lowest = p[:, legs, 1].min(1)
    if root is not None:
        floor_known = lowest > _FLOOR_SANITY
        floor = np.where(floor_known, 0.0, lowest)
    else:
        floor_known = np.zeros(n, bool)
        floor = lowest
    sole = {}
    for s in ("left", "right"):
        sole[s] = np.minimum(P(f"{s}_ankle")[:, 1] - _ANKLE_ABOVE_SOLE, P(f"{s}_foot")[:, 1]) - floor
        v[f"{s}_foot_height"] = sole[s]
        v[f"{s}_knee_floor"] = P(f"{s}_knee")[:, 1] - floor
    v["jump"] = np.where(floor_known, np.minimum(sole["left"], sole["right"]), np.nan)
    v["pelvis_height"] = (P("pelvis")[:, 1] - floor) / _STAND_PELVIS
    head_y, chest_z = P("head")[:, 1], P("spine3")[:, 2]
    for s, sign in (("left", 1.0), ("right", -1.0)):
        w = P(f"{s}_wrist")
        sh = P(f"{s}_shoulder")
        v[f"{s}_hand_height"] = w[:, 1] - head_y
        v[f"{s}_hand_shoulder"] = w[:, 1] - sh[:, 1]
        v[f"{s}_hand_low"] = w[:, 1] - P("pelvis")[:, 1]
        v[f"{s}_hand_forward"] = w[:, 2] - chest_z
        v[f"{s}_hand_cross"] = sign * w[:, 0]
        v[f"{s}_arm_out"] = sign * (w[:, 0] - sh[:, 0])
        v[f"{s}_hand_head"] = np.linalg.norm(w - P("head"), axis=-1)
        v[f"{s}_hand_hip"] = np.linalg.norm(w - P(f"{s}_hip"), axis=-1)
        v[f"{s}_knee_raise"] = P(f"{s}_knee")[:, 1] - P(f"{s}_hip")[:, 1]
    # chest facing (for lying on the back / face down): spine3's +Z axis, world Y component
    v["chest_up"] = glob[:, _J["spine3"], 1, 2]
    return v


def _words(v: dict[str, np.ndarray], i: int) -> dict[str, tuple[float, str | None]]:
    g = lambda k: float(v[k][i])  # noqa: E731
    out: dict[str, tuple[float, str | None]] = {}
    for s in ("left", "right"):
        out[f"{s}_knee_bend"] = (g(f"{s}_knee_bend"), _bin("knee_bend", g(f"{s}_knee_bend")))
        out[f"{s}_elbow_bend"] = (g(f"{s}_elbow_bend"), _bin("elbow_bend", g(f"{s}_elbow_bend")))
    tilt = g("torso_tilt")
    lying = _bin("torso_tilt", tilt) is not None
    out["spine_bend"] = (g("spine_bend"), _bin("spine_bend", g("spine_bend")))
    out["lean_forward"] = (g("lean_forward"), None if lying else _bin("lean_forward", g("lean_forward")))
    out["lean_side"] = (g("lean_side"), None if lying else _bin("lean_side", g("lean_side")))
    if lying:
        cu = g("chest_up")
        face = "on the back" if cu > 0.5 else "face down" if cu < -0.5 else "on the side"
        out["torso_tilt"] = (tilt, f"lying {face}")
    else:
        out["torso_tilt"] = (tilt, None)
    for k in ("hands_distance", "feet_distance", "knees_distance", "feet_stagger"):
        out[k] = (g(k), _bin(k, g(k)))
    for s in ("left", "right"):
        fh = g(f"{s}_foot_height")
        out[f"{s}_foot_height"] = (fh, _bin("foot_height", fh))
        kf = g(f"{s}_knee_floor")
        out[f"{s}_knee_floor"] = (kf, None if lying else _bin("knee_floor", kf))
    out["jump"] = (g("jump"), None if lying else _bin("jump", g("jump")))
    ph = g("pelvis_height")
    stance = None if lying else _bin("pelvis_height", ph)
    knees = 0.5 * (g("left_knee_bend") + g("right_knee_bend"))
    if stance == "crouching" and knees < _CROUCH_KNEE:
        stance = None
    if stance == "squatting" and knees < _SQUAT_KNEE:
        stance = None
    if not lying and out["jump"][1] is None and any(
            out[f"{s}_knee_floor"][1] is not None for s in ("left", "right")):
        stance = "kneeling"
    if out["jump"][1] is not None:
        stance = None
    out["pelvis_height"] = (ph, stance)
    for s in ("left", "right"):
        hh = g(f"{s}_hand_height")
        word = _bin("hand_above_head", hh)
        if word is None:
            word = _bin("hand_shoulder", g(f"{s}_hand_shoulder"))
        if word is None:
            word = _bin("hand_low", g(f"{s}_hand_low"))
        out[f"{s}_hand_height"] = (hh, word)
        out[f"{s}_hand_forward"] = (g(f"{s}_hand_forward"), _bin("hand_forward", g(f"{s}_hand_forward")))
        out[f"{s}_hand_cross"] = (g(f"{s}_hand_cross"), _bin("hand_cross", g(f"{s}_hand_cross")))
        out_word = _bin("arm_out", g(f"{s}_arm_out"))
        if abs(g(f"{s}_hand_shoulder")) > _ARM_OUT_HEIGHT:
            out_word = None
        out[f"{s}_arm_out"] = (g(f"{s}_arm_out"), out_word)
        out[f"{s}_hand_head"] = (g(f"{s}_hand_head"), _bin("hand_head", g(f"{s}_hand_head")))
        hip = _bin("hand_hip", g(f"{s}_hand_hip"))
        if g(f"{s}_elbow_bend") < _ELBOW_FOR_HIP:
            hip = None
        out[f"{s}_hand_hip"] = (g(f"{s}_hand_hip"), hip)
        kr = _bin("knee_raise", g(f"{s}_knee_raise"))
        if out[f"{s}_foot_height"][1] != "lifted":
            kr = None
        out[f"{s}_knee_raise"] = (g(f"{s}_knee_raise"), kr)
    return out


def posecodes(rotations, root=None) -> list[dict[str, tuple[float, str | None]]]:
    """Posecodes of one or many canonical poses (PoseScript-style, arXiv 2210.11795 Sec. 3.1).

    Args:
        rotations: ``(N, 22, 4)`` or ``(22, 4)`` local quaternions ``(w, x, y, z)`` relative to
            the canonical rest T-pose, SMPL joint order.
        root: ``None`` or ``(N, 3)`` / ``(3,)`` pelvis positions, metres, Y up, with the floor
            at ``y = 0``; needed to detect jumping.  Without it the floor is the lowest leg
            joint.
    Returns:
        One dict per pose: posecode name -> ``(value, word)``; ``value`` in degrees (``*_bend``,
        ``lean_*``, ``torso_tilt``), metres (distances, heights, offsets in the body frame) or
        a fraction of the standing pelvis height (``pelvis_height``); ``word`` is the bin (see
        :data:`THRESHOLDS`) or ``None`` when the value is in a neutral zone / not notable.
    Raises:
        CaptionError: wrong shapes, NaN / inf, zero quaternions.
    """
    q, r = _check(rotations, root)
    v = _measure(q, r)
    return [_words(v, i) for i in range(len(q))]


# --------------------------------------------------------------------------------------------
# phrasing
# --------------------------------------------------------------------------------------------

# (base, word, mode) -> templates (third-person verb phrase, imperative verb phrase, clause).
# mode "one" uses {side} / {other}; "both" is the aggregated left+right form; None: no side.
# {p} is "their" (third person) or "your" (imperative).
_T = tuple[str, str, str]
PHRASES: dict[tuple[str, str, str | None], tuple[_T, ...]] = {
    ("knee_bend", "straight", "one"): (
        ("keeps {p} {side} leg straight", "keep {p} {side} leg straight", "the {side} leg is straight"),
        ("has a straight {side} leg", "straighten {p} {side} leg", "the {side} knee is straight")),
    ("knee_bend", "straight", "both"): (
        ("keeps both legs straight", "keep both legs straight", "both legs are straight"),
        ("has {p} legs straight", "straighten {p} legs", "the legs are straight")),
    ("knee_bend", "slightly bent", "one"): (
        ("slightly bends {p} {side} knee", "bend {p} {side} knee slightly", "the {side} knee is slightly bent"),
        ("has {p} {side} knee a little bent", "flex {p} {side} knee a little", "the {side} knee is a little bent")),
    ("knee_bend", "slightly bent", "both"): (
        ("slightly bends both knees", "bend both knees slightly", "both knees are slightly bent"),
        ("has soft knees", "soften {p} knees", "the knees are slightly flexed")),
    ("knee_bend", "bent", "one"): (
        ("bends {p} {side} knee", "bend {p} {side} knee", "the {side} knee is bent"),
        ("flexes {p} {side} leg", "flex {p} {side} leg", "the {side} leg is bent at the knee")),
    ("knee_bend", "bent", "both"): (
        ("bends both knees", "bend both knees", "both knees are bent"),
        ("has {p} knees bent", "bend {p} knees", "the knees are bent")),
    ("knee_bend", "fully bent", "one"): (
        ("fully bends {p} {side} knee", "bend {p} {side} knee all the way", "the {side} knee is fully bent"),
        ("folds {p} {side} leg tightly", "fold {p} {side} leg tightly", "the {side} leg is tightly folded")),
    ("knee_bend", "fully bent", "both"): (
        ("fully bends both knees", "bend both knees fully", "both knees are fully bent"),
        ("folds both legs tightly", "fold {p} legs tightly", "the knees are deeply bent")),
    ("elbow_bend", "straight", "one"): (
        ("keeps {p} {side} arm straight", "keep {p} {side} arm straight", "the {side} arm is straight"),
        ("extends {p} {side} arm", "extend {p} {side} arm", "the {side} elbow is straight")),
    ("elbow_bend", "straight", "both"): (
        ("keeps both arms straight", "keep both arms straight", "both arms are straight"),
        ("has {p} arms extended", "extend {p} arms", "the elbows are straight")),
    ("elbow_bend", "slightly bent", "one"): (
        ("slightly bends {p} {side} elbow", "bend {p} {side} elbow slightly", "the {side} elbow is slightly bent"),
        ("keeps {p} {side} arm a little bent", "relax {p} {side} arm a little", "the {side} arm is a little bent")),
    ("elbow_bend", "slightly bent", "both"): (
        ("slightly bends both elbows", "bend both elbows slightly", "both elbows are slightly bent"),
        ("has {p} elbows a little bent", "relax {p} elbows a little", "the arms are a little bent")),
    ("elbow_bend", "bent", "one"): (
        ("bends {p} {side} elbow", "bend {p} {side} elbow", "the {side} elbow is bent"),
        ("has {p} {side} arm bent", "bend {p} {side} arm", "the {side} arm is bent at the elbow")),
    ("elbow_bend", "bent", "both"): (
        ("bends both elbows", "bend both elbows", "both elbows are bent"),
        ("has {p} arms bent", "bend {p} arms", "the arms are bent")),
    ("elbow_bend", "fully bent", "one"): (
        ("fully bends {p} {side} elbow", "bend {p} {side} elbow fully", "the {side} elbow is fully bent"),
        ("folds {p} {side} arm tight", "fold {p} {side} arm tight", "the {side} arm is folded tight")),
    ("elbow_bend", "fully bent", "both"): (
        ("fully bends both elbows", "bend both elbows fully", "both elbows are fully bent"),
        ("folds both arms tight", "fold {p} arms tight", "the arms are tightly folded")),
    ("hand_height", "above head", "one"): (
        ("raises {p} {side} hand above {p} head", "raise {p} {side} hand above {p} head", "the {side} hand is above the head"),
        ("lifts {p} {side} arm over {p} head", "lift {p} {side} arm over {p} head", "the {side} arm is raised overhead"),
        ("holds {p} {side} hand up high", "hold {p} {side} hand up high", "the {side} hand is up high")),
    ("hand_height", "above head", "both"): (
        ("raises both hands above {p} head", "raise both hands above {p} head", "both hands are above the head"),
        ("lifts both arms overhead", "lift both arms overhead", "both arms are raised overhead"),
        ("holds {p} hands up high", "put {p} hands up high", "the hands are up in the air")),
    ("hand_height", "head height", "one"): (
        ("raises {p} {side} hand to head height", "raise {p} {side} hand to head height", "the {side} hand is at head height"),
        ("holds {p} {side} hand level with {p} head", "hold {p} {side} hand level with {p} head", "the {side} hand is level with the head")),
    ("hand_height", "head height", "both"): (
        ("raises both hands to head height", "raise both hands to head height", "both hands are at head height"),
        ("holds {p} hands level with {p} head", "hold {p} hands level with {p} head", "the hands are level with the head")),
    ("hand_height", "shoulder height", "one"): (
        ("holds {p} {side} hand at shoulder height", "hold {p} {side} hand at shoulder height", "the {side} hand is at shoulder height"),
        ("lifts {p} {side} hand to shoulder level", "lift {p} {side} hand to shoulder level", "the {side} hand is level with the shoulders")),
    ("hand_height", "shoulder height", "both"): (
        ("holds both hands at shoulder height", "hold both hands at shoulder height", "both hands are at shoulder height"),
        ("lifts {p} hands to shoulder level", "lift {p} hands to shoulder level", "the hands are level with the shoulders")),
    ("hand_height", "low", "one"): (
        ("keeps {p} {side} hand low", "keep {p} {side} hand low", "the {side} hand is low"),
        ("lets {p} {side} arm hang down", "let {p} {side} arm hang down", "the {side} arm hangs down")),
    ("hand_height", "low", "both"): (
        ("keeps both hands low", "keep both hands low", "both hands are low"),
        ("lets {p} arms hang down", "let {p} arms hang down", "the arms hang down by the sides")),
    ("hand_forward", "front", "one"): (
        ("reaches forward with {p} {side} hand", "reach forward with {p} {side} hand", "the {side} hand is in front of the body"),
        ("holds {p} {side} hand out in front", "hold {p} {side} hand out in front", "the {side} hand is out in front")),
    ("hand_forward", "front", "both"): (
        ("reaches forward with both hands", "reach forward with both hands", "both hands are in front of the body"),
        ("holds both hands out in front", "hold both hands out in front", "the hands are out in front")),
    ("hand_forward", "behind", "one"): (
        ("puts {p} {side} hand behind {p} back", "put {p} {side} hand behind {p} back", "the {side} hand is behind the back"),
        ("moves {p} {side} hand behind {p} body", "move {p} {side} hand behind {p} body", "the {side} hand is behind the body")),
    ("hand_forward", "behind", "both"): (
        ("puts both hands behind {p} back", "put both hands behind {p} back", "both hands are behind the back"),),
    ("hand_cross", "across", "one"): (
        ("brings {p} {side} hand across {p} body", "bring {p} {side} hand across {p} body", "the {side} hand crosses to the {other} side"),
        ("reaches across to the {other} with {p} {side} hand", "reach across to the {other} with {p} {side} hand", "the {side} hand is past the middle of the body")),
    ("hand_cross", "across", "both"): (
        ("crosses {p} arms", "cross {p} arms", "the arms cross in front of the body"),),
    ("hand_head", "near", "one"): (
        ("brings {p} {side} hand to {p} face", "bring {p} {side} hand to {p} face", "the {side} hand is near the face"),
        ("touches {p} head with {p} {side} hand", "touch {p} head with {p} {side} hand", "the {side} hand is close to the head")),
    ("hand_head", "near", "both"): (
        ("brings both hands to {p} face", "bring both hands to {p} face", "both hands are near the face"),
        ("holds {p} head with both hands", "hold {p} head with both hands", "the hands are close to the head")),
    ("hand_hip", "on", "one"): (
        ("puts {p} {side} hand on {p} hip", "put {p} {side} hand on {p} hip", "the {side} hand rests on the hip"),),
    ("hand_hip", "on", "both"): (
        ("puts both hands on {p} hips", "put {p} hands on {p} hips", "both hands are on the hips"),),
    ("arm_out", "out", "one"): (
        ("stretches {p} {side} arm out to the side", "stretch {p} {side} arm out to the side", "the {side} arm is stretched out sideways"),
        ("extends {p} {side} arm sideways", "extend {p} {side} arm sideways", "the {side} arm points out to the side")),
    ("arm_out", "out", "both"): (
        ("spreads {p} arms out to the sides", "spread {p} arms out to the sides", "both arms are stretched out sideways"),
        ("holds {p} arms out wide", "hold {p} arms out wide", "the arms are spread wide")),
    ("hands_distance", "close", None): (
        ("holds {p} hands close together", "hold {p} hands close together", "the hands are close together"),
        ("brings {p} hands together", "bring {p} hands together", "the hands are almost touching")),
    ("hands_distance", "shoulder-width", None): (
        ("holds {p} hands about shoulder-width apart", "hold {p} hands about shoulder-width apart", "the hands are about shoulder-width apart"),),
    ("hands_distance", "wide", None): (
        ("holds {p} hands far apart", "hold {p} hands far apart", "the hands are far apart"),),
    ("feet_distance", "together", None): (
        ("keeps {p} feet together", "keep {p} feet together", "the feet are together"),),
    ("feet_distance", "shoulder-width", None): (
        ("places {p} feet shoulder-width apart", "place {p} feet shoulder-width apart", "the feet are shoulder-width apart"),),
    ("feet_distance", "wide", None): (
        ("spreads {p} feet wide apart", "spread {p} feet wide apart", "the feet are wide apart"),
        ("takes a wide stance", "take a wide stance", "the stance is wide")),
    ("knees_distance", "together", None): (
        ("keeps {p} knees together", "keep {p} knees together", "the knees are close together"),),
    ("knees_distance", "wide", None): (
        ("spreads {p} knees apart", "spread {p} knees apart", "the knees are wide apart"),),
    ("knee_raise", "raised", "one"): (
        ("lifts {p} {side} knee", "lift {p} {side} knee", "the {side} knee is raised"),
        ("raises {p} {side} knee up to hip height", "raise {p} {side} knee up to hip height", "the {side} knee is up at hip height")),
    ("knee_raise", "raised", "both"): (
        ("pulls both knees up", "pull both knees up", "both knees are raised"),),
    ("feet_stagger", "forward", "one"): (
        ("steps forward with {p} {side} foot", "step forward with {p} {side} foot", "the {side} foot is in front of the {other}"),
        ("puts {p} {side} foot ahead of the {other}", "put {p} {side} foot ahead of the {other}", "the {other} foot is behind the {side} one")),
    ("spine_bend", "forward", None): (
        ("hunches {p} back", "round {p} back", "the back is rounded forward"),
        ("curls {p} upper body forward", "curl {p} upper body forward", "the spine is bent forward")),
    ("spine_bend", "back", None): (
        ("arches {p} back", "arch {p} back", "the back is arched backwards"),),
    ("lean_forward", "forward", None): (
        ("leans forward", "lean forward", "the torso leans forward"),
        ("tilts {p} upper body forward", "tilt {p} upper body forward", "the upper body is tilted forward")),
    ("lean_forward", "far forward", None): (
        ("bends far forward at the waist", "bend far forward at the waist", "the torso is bent far forward"),
        ("bows deeply", "bow deeply", "the upper body is folded forward")),
    ("lean_forward", "back", None): (
        ("leans back", "lean back", "the torso leans backwards"),
        ("tilts {p} upper body back", "tilt {p} upper body back", "the upper body is tilted back")),
    ("lean_side", "lean", "one"): (
        ("leans to {p} {side}", "lean to {p} {side}", "the torso leans to the {side}"),
        ("tilts {p} torso to the {side}", "tilt {p} torso to the {side}", "the upper body tilts to the {side}")),
    ("torso_tilt", "lying on the back", None): (
        ("lies on {p} back", "lie on {p} back", "the body lies on its back"),),
    ("torso_tilt", "lying face down", None): (
        ("lies face down", "lie face down", "the body lies face down"),),
    ("torso_tilt", "lying on the side", None): (
        ("lies on {p} side", "lie on {p} side", "the body lies on its side"),),
    ("pelvis_height", "standing", None): (
        ("stands upright", "stand upright", "the body is upright"),
        ("is standing", "stand up straight", "the posture is upright")),
    ("pelvis_height", "crouching", None): (
        ("crouches", "crouch", "the body is in a crouch"),
        ("lowers {p} body into a crouch", "lower {p} body into a crouch", "the hips are lowered into a crouch")),
    ("pelvis_height", "squatting", None): (
        ("squats down", "squat down", "the body is in a deep squat"),
        ("is in a deep squat", "go into a deep squat", "the hips are low in a squat")),
    ("pelvis_height", "sitting", None): (
        ("sits on the floor", "sit on the floor", "the hips are on the floor"),),
    ("kneel", "kneeling", "one"): (
        ("kneels on {p} {side} knee", "kneel on {p} {side} knee", "the {side} knee touches the floor"),),
    ("kneel", "kneeling", "both"): (
        ("kneels on both knees", "kneel on both knees", "both knees are on the floor"),
        ("is kneeling", "kneel down", "the knees rest on the floor")),
    ("contact", "lifted", "one"): (
        ("lifts {p} {side} foot off the floor", "lift {p} {side} foot off the floor", "the {side} foot is off the ground"),
        ("stands on {p} {other} leg", "stand on {p} {other} leg", "only the {other} foot touches the floor"),
        ("balances on {p} {other} foot", "balance on {p} {other} foot", "the weight is on the {other} foot")),
    ("contact", "on the floor", "both"): (
        ("keeps both feet on the floor", "keep both feet on the floor", "both feet are on the floor"),
        ("has both feet on the ground", "plant both feet on the ground", "both feet touch the ground")),
    ("contact", "in the air", None): (
        ("jumps in the air", "jump", "both feet are off the ground"),
        ("is in mid-air", "leap into the air", "the body is in the air")),
}

#: Salience of each (base, word): how far it is from a neutral standing pose.  Items at or above
#: :data:`_MUST` are always kept (at most :data:`_MUST_MAX` of them).
SALIENCE: dict[tuple[str, str], float] = {
    ("knee_bend", "straight"): 0.2, ("knee_bend", "slightly bent"): 0.8, ("knee_bend", "bent"): 2.0,
    ("knee_bend", "fully bent"): 2.5,
    ("elbow_bend", "straight"): 0.4, ("elbow_bend", "slightly bent"): 0.5, ("elbow_bend", "bent"): 1.2,
    ("elbow_bend", "fully bent"): 1.8,
    ("hand_height", "above head"): 3.0, ("hand_height", "head height"): 2.2,
    ("hand_height", "shoulder height"): 1.5, ("hand_height", "low"): 0.3,
    ("hand_forward", "front"): 1.5, ("hand_forward", "behind"): 2.0,
    ("hand_cross", "across"): 2.0, ("hand_head", "near"): 2.5, ("hand_hip", "on"): 2.5,
    ("arm_out", "out"): 1.8,
    ("hands_distance", "close"): 1.8, ("hands_distance", "shoulder-width"): 0.6, ("hands_distance", "wide"): 0.5,
    ("feet_distance", "together"): 0.6, ("feet_distance", "shoulder-width"): 0.5, ("feet_distance", "wide"): 1.5,
    ("knees_distance", "together"): 0.8, ("knees_distance", "wide"): 1.2,
    ("knee_raise", "raised"): 3.0, ("feet_stagger", "forward"): 1.2,
    ("spine_bend", "forward"): 1.5, ("spine_bend", "back"): 1.8,
    ("lean_forward", "forward"): 2.0, ("lean_forward", "far forward"): 3.0, ("lean_forward", "back"): 2.0,
    ("lean_side", "lean"): 1.8,
    ("torso_tilt", "lying on the back"): 4.0, ("torso_tilt", "lying face down"): 4.0,
    ("torso_tilt", "lying on the side"): 4.0,
    ("pelvis_height", "standing"): 0.4, ("pelvis_height", "crouching"): 2.5,
    ("pelvis_height", "squatting"): 3.0, ("pelvis_height", "sitting"): 3.0,
    ("kneel", "kneeling"): 3.5,
    ("contact", "lifted"): 2.6, ("contact", "on the floor"): 0.2, ("contact", "in the air"): 3.5,
}
_MUST = 2.5
_MUST_MAX = 3
_GLOBAL = ("torso_tilt", "pelvis_height", "kneel", "contact", "lean_forward", "lean_side")

SUBJECTS: tuple[str, ...] = ("The person", "Someone", "A figure", "The character", "This person",
                             "A person", "The subject")

#: Bandai-Namco dataset-2 content labels -> gerund phrase (motion context).
CONTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("walking", "taking a step"),
    "run": ("running", "jogging"),
    "walk-turn-left": ("walking and turning left", "making a left turn on a walk"),
    "walk-turn-right": ("walking and turning right", "making a right turn on a walk"),
    "raise-up-left-hand": ("raising the left hand", "putting the left hand up"),
    "raise-up-right-hand": ("raising the right hand", "putting the right hand up"),
    "raise-up-both-hands": ("raising both hands", "putting both hands up"),
    "wave-left-hand": ("waving the left hand", "waving with the left hand"),
    "wave-right-hand": ("waving the right hand", "waving with the right hand"),
    "wave-both-hands": ("waving both hands", "waving with both hands"),
}
#: Bandai style labels -> manner phrase ("" for the neutral style).
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "normal": ("", "in a normal way"),
    "active": ("energetically", "in an active manner"),
    "elderly": ("in an elderly manner", "like an elderly person"),
    "exhausted": ("in an exhausted way", "wearily"),
    "feminine": ("in a feminine manner", "in a feminine style"),
    "masculine": ("in a masculine manner", "in a masculine style"),
    "youthful": ("in a youthful way", "youthfully"),
}
_CONTEXT_THIRD = (", while {g}{m}", ". {S} is {g}{m}", ". The pose comes from {g}{m}")
_CONTEXT_IMP = (", as if {g}{m}", ", like when {g}{m}")


def _items(codes: dict[str, tuple[float, str | None]]) -> list[tuple[str, str, str | None, str | None, float]]:
    """Active posecodes aggregated: (base, word, mode, side, salience)."""
    items = []

    def add(base, word, mode, side, sal_word=None):
        sal = SALIENCE[(base, sal_word or word)] + (0.3 if mode == "both" else 0.0)
        items.append((base, word, mode, side, sal))

    def pair(base, name, keyword=None):
        lw, rw = codes[f"left_{name}"][1], codes[f"right_{name}"][1]
        if lw is not None and lw == rw:
            add(base, keyword or lw, "both", None)
            return
        for s, w in (("left", lw), ("right", rw)):
            if w is not None:
                add(base, keyword or w, "one", s)

    lying = codes["torso_tilt"][1] is not None
    pair("knee_bend", "knee_bend")
    pair("elbow_bend", "elbow_bend")
    pair("hand_height", "hand_height")
    pair("hand_forward", "hand_forward")
    pair("hand_cross", "hand_cross")
    pair("hand_head", "hand_head")
    pair("hand_hip", "hand_hip")
    pair("arm_out", "arm_out")
    pair("knee_raise", "knee_raise")
    for k in ("hands_distance", "feet_distance", "knees_distance", "spine_bend", "lean_forward", "torso_tilt"):
        if codes[k][1] is not None:
            add(k, codes[k][1], None, None)
    if codes["feet_stagger"][1] is not None:
        add("feet_stagger", "forward", "one", codes["feet_stagger"][1])
    if codes["lean_side"][1] is not None:
        add("lean_side", "lean", "one", codes["lean_side"][1])
    stance = codes["pelvis_height"][1]
    if stance == "kneeling":
        pair("kneel", "knee_floor", "kneeling")
    elif stance is not None and not (stance == "standing" and "lifted" in (
            codes["left_foot_height"][1], codes["right_foot_height"][1])):
        add("pelvis_height", stance, None, None)  # "stands upright" + "stands on one leg" is redundant
    if not lying and stance != "kneeling":
        if codes["jump"][1] is not None:
            add("contact", "in the air", None, None)
        else:
            lf, rf = codes["left_foot_height"][1], codes["right_foot_height"][1]
            if lf == rf == "on the floor":
                add("contact", "on the floor", "both", None)
            elif {lf, rf} == {"on the floor", "lifted"}:
                add("contact", "lifted", "one", "left" if lf == "lifted" else "right")
    return items


def _render(t: str, side: str | None, poss: str) -> str:
    other = {"left": "right", "right": "left"}.get(side or "", "")
    return t.format(p=poss, side=side or "", other=other)


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _select(items, rng: np.random.Generator, k_range: tuple[int, int]):
    items = sorted(items, key=lambda it: -it[4])
    must = [it for it in items if it[4] >= _MUST][:_MUST_MAX]
    rest = [it for it in items if it not in must]
    k = int(rng.integers(k_range[0], k_range[1] + 1))
    extra = max(0, min(k - len(must), len(rest)))
    if extra:
        w = np.array([it[4] for it in rest]) + 0.2
        pick = rng.choice(len(rest), size=extra, replace=False, p=w / w.sum())
        chosen = must + [rest[i] for i in sorted(pick)]
    else:
        chosen = must
    # posture first, the rest in random order
    glob = [it for it in chosen if it[0] in _GLOBAL]
    other = [it for it in chosen if it[0] not in _GLOBAL]
    glob.sort(key=lambda it: _GLOBAL.index(it[0]))
    rng.shuffle(other)
    # items about the same body part side by side, so their clauses can be merged
    parts: dict[str, list] = {}
    for it in other:
        parts.setdefault(_part(it), []).append(it)
    return glob + [it for group in parts.values() for it in group]


_SUBJ = re.compile(r"^(the (left|right) (hand|arm) is |both hands are |the hands are )")
_HAND_BASES = ("hand_height", "hand_forward", "hand_cross", "hand_head", "hand_hip")


def _part(item) -> str:
    base, _, mode, side, _ = item
    if base in _HAND_BASES:
        return f"hand:{side if mode == 'one' else 'both'}"
    return base


def _merge_clauses(clauses: list[str]) -> list[str]:
    """"the left hand is A" + "the left hand is B" -> "the left hand is A and B" (aggregation
    of posecodes sharing a subject, arXiv 2210.11795 Sec. 3.2)."""
    groups: list[tuple[str | None, list[str]]] = []
    for c in clauses:
        m = _SUBJ.match(c)
        subj = m.group(0) if m else None
        if subj is not None and groups and groups[-1][0] == subj:
            groups[-1][1].append(c[len(subj):])
        else:
            groups.append((subj, [c] if subj is None else [c[len(subj):]]))
    out = [c[0] if subj is None else subj + _join(c) for subj, c in groups]
    return out


def _context(labels: dict | str | None, rng: np.random.Generator) -> tuple[str, str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = {"content": labels}
    if not isinstance(labels, dict):
        raise CaptionError(f"labels must be a dict like {{'content': 'walk', 'style': 'elderly'}}, "
                           f"a content string or None, got {type(labels).__name__}")
    content, style = labels.get("content"), labels.get("style")
    if not content and not style:
        return None
    g = ""
    if content:
        opts = CONTENT_PHRASES.get(str(content), (f"performing a {str(content).replace('-', ' ')} motion",))
        g = opts[int(rng.integers(len(opts)))]
    m = ""
    if style:
        opts = STYLE_PHRASES.get(str(style), (f"in a {str(style).replace('-', ' ')} style",))
        m = opts[int(rng.integers(len(opts)))]
    if not g:
        g, m = "moving", m
    return g, (" " + m if m else "")


def _sentence(chosen, rng: np.random.Generator, imperative: bool, context) -> str:
    def pick(it):
        base, word, mode, side, _ = it
        opts = PHRASES[(base, word, mode)]
        return opts[int(rng.integers(len(opts)))], side

    if imperative:
        vps = [_render(t[1], side, "your") for t, side in map(pick, chosen)]
        groups, i = [], 0
        while i < len(vps):
            size = int(rng.integers(2, 4))
            groups.append(vps[i:i + size])
            i += size
        sents = [_cap(_join(g)) for g in groups]
        if context is not None:
            tpl = _CONTEXT_IMP[int(rng.integers(len(_CONTEXT_IMP)))]
            sents[-1] += tpl.format(g=context[0], m=context[1])
        return ". ".join(sents) + "."
    subject = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
    style = rng.random()
    rendered = [pick(it) for it in chosen]
    if style < 0.2:  # all clauses: "Both knees are bent, the left hand is above the head."
        head, tail = [], rendered
    else:
        n_vp = min(len(rendered), int(rng.integers(1, 4)))
        head, tail = rendered[:n_vp], rendered[n_vp:]
    sents = []
    if head:
        sents.append(f"{subject} " + _join([_render(t[0], s, "their") for t, s in head]))
    clauses = _merge_clauses([_render(t[2], s, "their") for t, s in tail])
    i = 0
    while i < len(clauses):
        size = int(rng.integers(1, 3))
        sents.append(_cap(_join(clauses[i:i + size])))
        i += size
    if context is not None:
        tpl = _CONTEXT_THIRD[int(rng.integers(len(_CONTEXT_THIRD)))]
        sents[0 if tpl.startswith(",") else -1] += tpl.format(g=context[0], m=context[1], S=subject)
    return ". ".join(sents) + "."


def caption(rotations, root=None, *, rng: np.random.Generator | int | None = None, labels=None,
            n: int = 1, imperative_share: float = 0.2, label_prob: float = 0.8,
            k_range: tuple[int, int] = (3, 6)) -> list[list[str]]:
    """Random captions of canonical poses from their posecodes (arXiv 2210.11795 Sec. 3.2-3.3).

    Args:
        rotations: ``(N, 22, 4)`` or ``(22, 4)`` local quaternions ``(w, x, y, z)``.
        root: ``None`` or ``(N, 3)`` pelvis positions, metres, Y up, floor at ``y = 0``.
        rng: a ``numpy.random.Generator`` or an int seed (``None``: fresh entropy).  The same
            seed gives the same captions.
        labels: motion context appended as a phrase ("..., while walking in an elderly
            manner"): ``None``, one dict ``{"content": ..., "style": ...}`` (Bandai-2 labels as
            in the cache's ``index.json``), a content string, or a list of those (one per pose).
        n: captions per pose.
        imperative_share: share of captions in the imperative ("Raise your left hand ...").
        label_prob: probability to mention the labels when given.
        k_range: how many posecodes a caption describes (inclusive range; the salient ones
            are always kept, so a caption can describe more).
    Returns:
        ``N`` lists of ``n`` caption strings.
    Raises:
        CaptionError: bad poses (see :func:`posecodes`), bad labels, ``n < 1``.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise CaptionError(f"n must be a positive integer, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    codes = posecodes(rotations, root)
    if isinstance(labels, (list, tuple)):
        if len(labels) != len(codes):
            raise CaptionError(f"got {len(labels)} labels for {len(codes)} poses")
        per_pose = list(labels)
    else:
        per_pose = [labels] * len(codes)
    out = []
    for c, lab in zip(codes, per_pose):
        items = _items(c)
        caps = []
        for _ in range(n):
            imperative = bool(rng.random() < imperative_share)
            ctx = _context(lab, rng) if lab is not None and rng.random() < label_prob else None
            if not items:
                base = "Stand in a neutral pose" if imperative else \
                    f"{SUBJECTS[int(rng.integers(len(SUBJECTS)))]} stands in a neutral pose"
                if ctx is not None:
                    tpl = _CONTEXT_IMP[0] if imperative else _CONTEXT_THIRD[0]
                    base += tpl.format(g=ctx[0], m=ctx[1], S="")
                caps.append(base + ".")
                continue
            caps.append(_sentence(_select(items, rng, k_range), rng, imperative, ctx))
        out.append(caps)
    return out


# --------------------------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------------------------

#: Posecode kinds -> the words their bins can take.
VOCABULARY: dict[str, tuple[str, ...]] = {k: tuple(w for _, _, w in bins) for k, bins in THRESHOLDS.items()}


def captioner_phrases() -> set[str]:
    """Every fixed word sequence the captioner can emit, lower case.

    Each phrase template rendered for both sides and both possessives ("their", "your"), the
    subjects, the neutral-pose sentence and the motion-context phrases (content gerunds, style
    manners).  A caption is a concatenation of these joined by ", ", " and ", ". "; so a
    wording that contains none of these phrases is one the captioner never produces.
    """
    out: set[str] = set()
    for (_, _, mode), temps in PHRASES.items():
        sides = ("left", "right") if mode == "one" else (None,)
        for t in temps:
            for form in t:
                for s in sides:
                    for poss in ("their", "your"):
                        out.add(_render(form, s, poss).lower())
    for ph in list(out):  # merged clauses keep only the predicate after the shared subject
        m = _SUBJ.match(ph)
        if m:
            out.add(ph[len(m.group(0)):])
    out.update(s.lower() for s in SUBJECTS)
    out.update({"stands in a neutral pose", "stand in a neutral pose"})
    for opts in CONTENT_PHRASES.values():
        out.update(opts)
    for opts in STYLE_PHRASES.values():
        out.update(o for o in opts if o)
    out.update({"while", "as if", "like when", "the pose comes from", "moving"})
    return out


__all__ = ["CaptionError", "posecodes", "caption", "captioner_phrases", "VOCABULARY", "THRESHOLDS",
           "PHRASES", "SALIENCE", "SUBJECTS", "CONTENT_PHRASES", "STYLE_PHRASES"]
