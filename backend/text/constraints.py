"""Posecodes as differentiable constraints: what a caption's words require of the joints.

The captioner (:mod:`poseforge.backend.text.captioner`) turns measurements of a pose into words
by thresholds (PoseScript's posecodes, Delmas et al. 2022, arXiv 2210.11795, Sec. 3.1).  This
module runs the other way: a posecode word becomes one or more interval conditions on the same
measurements, and :func:`violation` is a hinge energy that is zero when a pose has the word and
grows with the distance to the bin, differentiable through forward kinematics.  The text-to-pose
refinement (:func:`poseforge.backend.tasks.text2pose.refine_poses`) minimises it together with
the DPoser prior, for the words a prompt states (:mod:`poseforge.backend.text.prompt_codes`).
Turning posecodes back into optimisation targets is PoseForge's own use of them; the
measurements and thresholds are the captioner's.

Frames and units: poses are canonical (Y up, +Z forward, +X the body's left), measured in the
captioner's body frame (pelvis over the origin, the body's yaw removed) with the floor at the
lowest knee / ankle / foot joint (no root position: jumping is not a constraint).  Words and bins
are the captioner's (:data:`~poseforge.backend.text.captioner.THRESHOLDS`).  Angles in degrees,
distances in metres, ``pelvis_height`` as a fraction of the standing pelvis height.
"""
from __future__ import annotations

import torch

from ..skeleton import JOINT_INDEX
from .captioner import (_ANKLE_ABOVE_SOLE, _ARM_OUT_HEIGHT, _CROUCH_KNEE, _ELBOW_FOR_HIP, _REST_CHEST_PITCH,
                        _REST_TORSO_PITCH, _SQUAT_KNEE, _STAND_PELVIS, THRESHOLDS)

_J = JOINT_INDEX
_SIDES = ("left", "right")

#: Posecodes the refinement can enforce: name -> the words it knows for it.  ``torso_tilt`` (lying)
#: needs the root orientation, ``jump`` a floor-referenced root: neither is a constraint.
WORDS: dict[str, tuple[str, ...]] = {}
for _s in _SIDES:
    WORDS[f"{_s}_knee_bend"] = tuple(w for _, _, w in THRESHOLDS["knee_bend"])
    WORDS[f"{_s}_elbow_bend"] = tuple(w for _, _, w in THRESHOLDS["elbow_bend"])
for _k in ("spine_bend", "lean_forward", "lean_side", "hands_distance", "feet_distance", "knees_distance",
           "feet_stagger"):
    WORDS[_k] = tuple(w for _, _, w in THRESHOLDS[_k])
WORDS["pelvis_height"] = ("standing", "crouching", "squatting", "sitting", "kneeling")
for _s in _SIDES:
    WORDS[f"{_s}_foot_height"] = tuple(w for _, _, w in THRESHOLDS["foot_height"])
    WORDS[f"{_s}_knee_floor"] = ("on the floor",)
    WORDS[f"{_s}_hand_height"] = ("above head", "head height", "shoulder height", "low")
    WORDS[f"{_s}_hand_forward"] = tuple(w for _, _, w in THRESHOLDS["hand_forward"])
    WORDS[f"{_s}_hand_cross"] = ("across",)
    WORDS[f"{_s}_arm_out"] = ("out",)
    WORDS[f"{_s}_hand_head"] = ("near",)
    WORDS[f"{_s}_hand_hip"] = ("on",)
    WORDS[f"{_s}_knee_raise"] = ("raised",)
del _s, _k

#: Measurements the captioner does not word, for the named poses of the prompt grammar ("touch
#: your toes", "hands on the knees", "the leg out to the side", "arabesque"): measurement name ->
#: {word: (low, high)} in metres.  ``{side}_hand_to_{target}`` is the wrist's distance to a body
#: point, ``{side}_hand_floor`` the wrist's height above the floor, ``{side}_foot_side`` /
#: ``{side}_foot_forward`` the ankle's offset from its hip outwards / from the pelvis forwards,
#: ``{side}_hand_raise`` the wrist's height above its shoulder, ``knees_floor`` the higher knee's
#: height above the lowest ankle or foot joint (kneeling on both knees), ``support`` the
#: horizontal distance of the pelvis from the point between the ankles.
HAND_TARGETS: dict[str, tuple[str, ...]] = {
    "left_knee": ("left_knee",), "right_knee": ("right_knee",),
    "left_thigh": ("left_hip", "left_knee"), "right_thigh": ("right_hip", "right_knee"),
    "left_shoulder": ("left_shoulder",), "right_shoulder": ("right_shoulder",),
    "left_elbow": ("left_elbow",), "right_elbow": ("right_elbow",),
    "left_ankle": ("left_ankle",), "right_ankle": ("right_ankle",),
    "chest": ("spine3",), "belly": ("spine1",),
}
EXTRA: dict[str, dict[str, tuple[float, float]]] = {}
for _s in _SIDES:
    for _t in HAND_TARGETS:
        EXTRA[f"{_s}_hand_to_{_t}"] = {"near": (0.0, 0.2)}
    EXTRA[f"{_s}_hand_floor"] = {"near": (-9.0, 0.25)}
    EXTRA[f"{_s}_foot_side"] = {"out": (0.3, 9.0)}
    EXTRA[f"{_s}_foot_forward"] = {"front": (0.3, 9.0), "behind": (-9.0, -0.3)}
    EXTRA[f"{_s}_foot_raise"] = {"high": (0.3, 9.0)}
    EXTRA[f"{_s}_hand_raise"] = {"above shoulder": (0.1, 9.0)}
EXTRA["knees_floor"] = {"on the floor": (-9.0, 0.12)}      # both knees down: the higher one, above the feet
EXTRA["support"] = {"over the feet": (0.0, 0.2)}          # the pelvis over the feet (a free root tilt)
for _k, _v in EXTRA.items():
    WORDS[_k] = tuple(_v)
del _s, _t, _k, _v

#: Scale of one unit of violation per measurement kind: 20 degrees, 10 cm, 0.1 of the standing
#: pelvis height.
_SCALE = {"deg": 20.0, "m": 0.1, "frac": 0.1}
_UNIT = {"bend": "deg", "spine_bend": "deg", "lean_forward": "deg", "lean_side": "deg", "pelvis_height": "frac"}


def _unit(measure: str) -> str:
    if measure.endswith("_bend"):
        return "deg"
    return _UNIT.get(measure, "m")


def _bin(kind: str, word: str) -> tuple[float, float]:
    for lo, hi, w in THRESHOLDS[kind]:
        if w == word:
            return lo, hi
    raise KeyError(f"no bin '{word}' for {kind}")


def conditions(code: str, word: str) -> list[tuple[str, float, float]]:
    """The interval conditions ``[(measurement, low, high), ...]`` a posecode word requires
    (the captioner's bins and its extra rules: a crouch also needs bent knees, an arm "out" the
    hand near shoulder height, a hand "on" the hip a bent elbow, a raised knee a lifted foot).

    Raises:
        KeyError: a posecode or word the refinement does not know (see :data:`WORDS`).
    """
    if code not in WORDS or word not in WORDS[code]:
        raise KeyError(f"unknown posecode word {code!r}: {word!r}")
    if code in EXTRA:
        return [(code, *EXTRA[code][word])]
    side = code.split("_", 1)[0] if code.startswith(_SIDES) else None
    base = code.split("_", 1)[1] if side else code
    if base in ("knee_bend", "elbow_bend", "foot_height") or code in (
            "spine_bend", "lean_forward", "lean_side", "hands_distance", "feet_distance", "knees_distance",
            "feet_stagger"):
        return [(code, *_bin(base, word))]
    if base == "knee_floor":
        return [(code, *_bin("knee_floor", word))]
    if code == "pelvis_height":
        if word == "kneeling":
            return [("min_knee_floor", -9.0, 0.12)]
        out = [(code, *_bin("pelvis_height", word))]
        if word == "crouching":
            out.append(("mean_knee_bend", _CROUCH_KNEE, 181.0))
        elif word == "squatting":
            out.append(("mean_knee_bend", _SQUAT_KNEE, 181.0))
        return out
    if base == "hand_height":
        if word in ("above head", "head height"):
            return [(code, *_bin("hand_above_head", word))]
        if word == "shoulder height":
            return [(f"{side}_hand_shoulder", *_bin("hand_shoulder", word))]
        return [(f"{side}_hand_low", *_bin("hand_low", word))]
    if base == "hand_forward":
        return [(code, *_bin("hand_forward", word))]
    if base == "hand_cross":
        return [(code, *_bin("hand_cross", word))]
    if base == "arm_out":
        return [(code, *_bin("arm_out", word)), (f"{side}_hand_shoulder", -_ARM_OUT_HEIGHT, _ARM_OUT_HEIGHT)]
    if base == "hand_head":
        return [(code, *_bin("hand_head", word))]
    if base == "hand_hip":
        return [(code, *_bin("hand_hip", word)), (f"{side}_elbow_bend", _ELBOW_FOR_HIP, 181.0)]
    if base == "knee_raise":
        return [(code, *_bin("knee_raise", word)), (f"{side}_foot_height", *_bin("foot_height", "lifted"))]
    raise KeyError(f"unknown posecode word {code!r}: {word!r}")  # pragma: no cover - WORDS covers all


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-9)
    return torch.rad2deg(torch.acos(c.clamp(-1 + 1e-6, 1 - 1e-6)))


def _sagittal(v: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(v[..., 2], v[..., 1]))


class Measures(dict):
    """The measurements of a batch of poses, computed when first read (a step of the refinement
    reads only the few its constraints need).  ``names`` lists every measurement it can give."""

    def __init__(self, batch_zero: torch.Tensor, makers: dict):
        super().__init__()
        self.zero, self._makers = batch_zero, makers

    @property
    def names(self) -> list[str]:
        return list(self._makers)

    def __missing__(self, key):
        if key not in self._makers:
            raise KeyError(key)
        value = self[key] = self._makers[key]()
        return value


def measure(pos: torch.Tensor, glob: torch.Tensor) -> Measures:
    """The captioner's posecode measurements, differentiable: the values of
    ``captioner.posecodes(rotations)`` without a root, except that a foot's (or knee's) height is
    measured from the floor the other leg joints define, so a foot that is itself the lowest
    joint gets a value <= 0 (the same word, "on the floor") with a gradient that can lift it.

    Args:
        pos: ``(B, 22, 3)`` joint positions, metres, Y up (any pelvis position).
        glob: ``(B, 22, 3, 3)`` global joint rotations (from forward kinematics).
    Returns:
        a mapping measurement name -> ``(B,)``, each computed when first read: the posecodes of
        :data:`WORDS` plus ``{side}_hand_shoulder``, ``{side}_hand_low``, ``mean_knee_bend`` and
        ``min_knee_floor``.
    """
    left = (pos[:, _J["left_hip"]] - pos[:, _J["right_hip"]]) + (pos[:, _J["left_shoulder"]] - pos[:, _J["right_shoulder"]])
    left = torch.stack([left[:, 0], torch.zeros_like(left[:, 0]), left[:, 2]], -1)
    alt = torch.stack([glob[:, 0, 0, 0], torch.zeros_like(left[:, 0]), glob[:, 0, 2, 0]], -1)
    small = left.norm(dim=-1, keepdim=True) < 1e-3
    left = torch.where(small, alt, left)
    left = left / left.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    fwd = torch.stack([-left[:, 2], torch.zeros_like(left[:, 0]), left[:, 0]], -1)
    up = torch.zeros_like(left)
    up[:, 1] = 1.0
    yaw = torch.stack([left, up, fwd], 1)
    centre = torch.stack([pos[:, 0, 0], torch.zeros_like(pos[:, 0, 0]), pos[:, 0, 2]], -1)
    p = torch.einsum("nij,nkj->nki", yaw, pos - centre[:, None])

    def P(name):
        return p[:, _J[name]]

    def torso():
        return P("neck") - P("pelvis")

    def floor():
        legs = [_J[k] for k in ("left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot")]
        return p[:, legs, 1].min(1).values

    def foot_height(s):
        # a joint's height above the floor the OTHER leg joints define: where the captioner's
        # floor is not this foot (or knee) itself the value is the same, and where it is, the
        # value is <= 0 ("on the floor" either way) but still has a gradient that lifts it
        o = "right" if s == "left" else "left"
        others = [_J[k] for k in (f"{o}_knee", f"{o}_ankle", f"{o}_foot", f"{s}_knee")]
        return torch.minimum(P(f"{s}_ankle")[:, 1] - _ANKLE_ABOVE_SOLE, P(f"{s}_foot")[:, 1]) - p[:, others, 1].min(1).values

    def knee_floor(s):
        o = "right" if s == "left" else "left"
        others = [_J[k] for k in (f"{o}_knee", f"{o}_ankle", f"{o}_foot", f"{s}_ankle", f"{s}_foot")]
        return P(f"{s}_knee")[:, 1] - p[:, others, 1].min(1).values

    def chest_pitch():
        chest = torch.einsum("nji,nj->ni", glob[:, 0], pos[:, _J["neck"]] - pos[:, _J["spine3"]])
        return _sagittal(chest) - _REST_CHEST_PITCH

    m: dict = {}
    v = Measures(pos.new_zeros(pos.shape[0]), m)
    for s in _SIDES:
        m[f"{s}_knee_bend"] = lambda s=s: _angle(P(f"{s}_knee") - P(f"{s}_hip"), P(f"{s}_ankle") - P(f"{s}_knee"))
        m[f"{s}_elbow_bend"] = lambda s=s: _angle(P(f"{s}_elbow") - P(f"{s}_shoulder"),
                                                  P(f"{s}_wrist") - P(f"{s}_elbow"))
    m["spine_bend"] = chest_pitch
    m["lean_forward"] = lambda: _sagittal(torso()) - _REST_TORSO_PITCH
    m["lean_side"] = lambda: torch.rad2deg(torch.atan2(torso()[:, 0], torso()[:, 1]))
    m["hands_distance"] = lambda: (P("left_wrist") - P("right_wrist")).norm(dim=-1)
    m["feet_distance"] = lambda: (P("left_ankle") - P("right_ankle"))[:, [0, 2]].norm(dim=-1)
    m["knees_distance"] = lambda: (P("left_knee") - P("right_knee")).norm(dim=-1)
    m["feet_stagger"] = lambda: P("left_ankle")[:, 2] - P("right_ankle")[:, 2]
    for s in _SIDES:
        m[f"{s}_foot_height"] = lambda s=s: foot_height(s)
        m[f"{s}_knee_floor"] = lambda s=s: knee_floor(s)
    m["pelvis_height"] = lambda: (P("pelvis")[:, 1] - floor()) / _STAND_PELVIS
    m["mean_knee_bend"] = lambda: 0.5 * (v["left_knee_bend"] + v["right_knee_bend"])
    m["min_knee_floor"] = lambda: torch.minimum(v["left_knee_floor"], v["right_knee_floor"])
    m["support"] = lambda: (0.5 * (P("left_ankle") + P("right_ankle")) - P("pelvis"))[:, [0, 2]].norm(dim=-1)
    m["knees_floor"] = lambda: p[:, [_J["left_knee"], _J["right_knee"]], 1].max(1).values - p[:, [
        _J[k] for k in ("left_ankle", "right_ankle", "left_foot", "right_foot")], 1].min(1).values
    for s, sign in (("left", 1.0), ("right", -1.0)):
        w, sh = f"{s}_wrist", f"{s}_shoulder"
        m[f"{s}_hand_height"] = lambda w=w: P(w)[:, 1] - P("head")[:, 1]
        m[f"{s}_hand_shoulder"] = lambda w=w, sh=sh: P(w)[:, 1] - P(sh)[:, 1]
        m[f"{s}_hand_low"] = lambda w=w: P(w)[:, 1] - P("pelvis")[:, 1]
        m[f"{s}_hand_forward"] = lambda w=w: P(w)[:, 2] - P("spine3")[:, 2]
        m[f"{s}_hand_cross"] = lambda w=w, sign=sign: sign * P(w)[:, 0]
        m[f"{s}_arm_out"] = lambda w=w, sh=sh, sign=sign: sign * (P(w)[:, 0] - P(sh)[:, 0])
        m[f"{s}_hand_head"] = lambda w=w: (P(w) - P("head")).norm(dim=-1)
        m[f"{s}_hand_hip"] = lambda w=w, s=s: (P(w) - P(f"{s}_hip")).norm(dim=-1)
        m[f"{s}_knee_raise"] = lambda s=s: P(f"{s}_knee")[:, 1] - P(f"{s}_hip")[:, 1]
        for t, joints in HAND_TARGETS.items():
            m[f"{s}_hand_to_{t}"] = lambda w=w, joints=joints: (P(w) - sum(P(j) for j in joints) / len(joints)).norm(dim=-1)
        m[f"{s}_hand_floor"] = lambda w=w: P(w)[:, 1] - floor()
        m[f"{s}_hand_raise"] = m[f"{s}_hand_shoulder"]
        m[f"{s}_foot_side"] = lambda s=s, sign=sign: sign * (P(f"{s}_ankle")[:, 0] - P(f"{s}_hip")[:, 0])
        m[f"{s}_foot_forward"] = lambda s=s: P(f"{s}_ankle")[:, 2] - P("pelvis")[:, 2]
        m[f"{s}_foot_raise"] = lambda s=s: v[f"{s}_foot_height"]
    return v


_NONNEG = ("hands_distance", "feet_distance", "knees_distance", "_hand_head", "_hand_hip", "support",
           *(f"_hand_to_{t}" for t in HAND_TARGETS))


def _bounds(name: str, lo: float, hi: float) -> tuple[float | None, float | None]:
    """The bin's bounds that constrain anything (open ends and the 0 of a distance dropped)."""
    deg = _unit(name) == "deg"
    lo_on = lo > (-1.0 if deg else -8.0) and not (lo <= 0.0 and name.endswith(_NONNEG))
    hi_on = hi < (180.0 if deg else 8.0)
    return (lo if lo_on else None), (hi if hi_on else None)


def _can_go_further(name: str, lo) -> bool:
    """Whether a one-sided bin leaves room past its edge: not a "straight" joint (0 degrees is
    the limit) nor a foot "on the floor"."""
    return lo is not None or not (name.endswith("_bend") or name.endswith("_foot_height"))


#: How far inside a bin that is open on one side ("above head": 8 cm or more) the refinement
#: aims, in the same units as ``margin`` (at the default margin: 15 degrees / 7.5 cm): a prompt's
#: "above the head" means well above it.  Two-sided bins ("bent": 60-110 degrees) keep ``margin``,
#: and so do bins whose open side ends at a limit ("straight" elbows, a foot "on the floor").
#: Chosen on the dev prompt sets: 0.25 / 0.5 / 0.75 gave 44.6 / 45.8 / 48.3 % on the third,
#: 90.8 / 93.3 / 95.8 % on the first, at 0.03 more implausibility for 0.75 (with the limits
#: kept as they are: 47.1 / 83.8 / 95.0 % on the third / second / first).
OPEN_MARGIN = 0.75


def violation(values: dict[str, torch.Tensor], constraints, margin: float = 0.25) -> torch.Tensor:
    """Hinge energy of posecode constraints, the same ones for every pose of the batch.

    Args:
        values: :func:`measure`'s output, each ``(B,)``.
        constraints: ``[(posecode, word, weight), ...]``.
        margin: how far inside each bin to aim, in units of the measurement's scale (20 degrees,
            10 cm, 0.1 of the pelvis height); the default aims 5 degrees / 2.5 cm inside a
            two-sided bin and ``OPEN_MARGIN / 0.25`` times as far inside a one-sided one; 0 is
            the bin itself.
    Returns:
        ``(B,)``: sum over constraints of ``weight * (relu(low + m - x) + relu(x - high + m)) / scale``
        (open bounds contribute nothing); 0 when every word holds with the margin.
    Raises:
        KeyError: an unknown posecode word.
    """
    out = values.zero if isinstance(values, Measures) else torch.zeros_like(next(iter(values.values())))
    for code, word, weight in constraints:
        for name, lo, hi in conditions(code, word):
            scale = _SCALE[_unit(name)]
            x = values[name]
            lo, hi = _bounds(name, lo, hi)
            m = margin if lo is not None and hi is not None or not _can_go_further(name, lo) \
                else OPEN_MARGIN * margin / 0.25
            if lo is not None:
                out = out + weight * torch.relu(lo + m * scale - x) / scale
            if hi is not None:
                out = out + weight * torch.relu(x - hi + m * scale) / scale
    return out


def violation_any(values: dict[str, torch.Tensor], alternatives, margin: float = 0.25) -> torch.Tensor:
    """``(B,)``: the smallest :func:`violation` over alternative constraint lists (a prompt that
    leaves a side open, "balance on one leg", is met by either side's words); 0 without any."""
    alternatives = [a for a in alternatives if a]
    if not alternatives:
        return values.zero if isinstance(values, Measures) else torch.zeros_like(next(iter(values.values())))
    return torch.stack([violation(values, a, margin) for a in alternatives]).min(0).values


def satisfied(values: dict[str, torch.Tensor], code: str, word: str) -> torch.Tensor:
    """``(B,)`` bool: the word's conditions hold (no margin)."""
    ok = None
    for name, lo, hi in conditions(code, word):
        x = values[name]
        c = (x >= lo) & (x < hi)
        ok = c if ok is None else ok & c
    return ok


__all__ = ["WORDS", "EXTRA", "HAND_TARGETS", "Measures", "conditions", "measure", "violation", "violation_any", "satisfied"]
