"""Posecode words a prompt states outright, read by a small keyword grammar.

"Raise the left hand above the head", "squat", "feet wide apart", "lean forward": the prompt is
split into clauses (as :mod:`poseforge.backend.text.parts` does), each clause's moving limbs and
their sides are found (body words after "above", "on", "to"... are targets, not limbs), and the
clause's state words are mapped to the captioner's posecode words (:mod:`poseforge.backend.text.
captioner`): ``("left_hand_height", "above head")``, ``("pelvis_height", "squatting")``...  Those
become hard-weighted constraints of the text-to-pose refinement
(:func:`poseforge.backend.text.constraints.violation`), on top of what the learned generator and
posecode model make of the wording.  Words the grammar does not know give no constraint; it never
guesses a side the prompt does not name.

This is the inverse of the captioner's phrasing (PoseScript's posecodes, Delmas et al. 2022,
arXiv 2210.11795, Sec. 3), written for animators' instructions; no PoseScript code is used.
"""
from __future__ import annotations

import re

from .parts import _CLAUSE, _INSTRUMENT

_DET = r"(?:the |your |his |her |their |one'?s |both )?"
_SIDE_WORD = re.compile(r"\b(left|right|both)\b")
_ARM = {"arm", "arms", "hand", "hands", "fist", "fists", "palm", "palms", "wrist", "wrists", "forearm", "forearms",
        "fingers", "finger", "biceps", "bicep"}
_ELBOW = {"elbow", "elbows"}
_KNEE = {"knee", "knees"}
_LEG = {"leg", "legs", "thigh", "thighs"}
_FOOT = {"foot", "feet", "ankle", "ankles", "toe", "toes", "heel", "heels"}
_PLURAL = {"arms", "hands", "fists", "palms", "wrists", "forearms", "fingers", "elbows", "knees", "legs", "thighs",
           "feet", "ankles", "toes", "heels"}
_TARGET_PREP = {"above", "over", "on", "onto", "to", "toward", "towards", "behind", "near", "at", "beside",
                "touching", "touch", "touches", "against", "below", "under", "past", "across", "of", "than", "by",
                "from", "around", "between", "like", "in"}

# arm states, most specific first; each (pattern, posecode suffix, word)
_ARM_RULES = [
    (r"\bhead[- ](height|level)\b|\blevel with " + _DET + r"head\b", "hand_height", "head height"),
    (r"\b(to|on|near|touch\w*|behind|against|cover\w*|cup\w*|at) " + _DET
     + r"(face|head(?![- ](height|level))|mouth|chin|ears?|forehead|eyes?|cheeks?|temples?)\b|"
     r"\b(hold\w*|cup\w*|grab\w*|clutch\w*|cover\w*) " + _DET + r"(head|face)\b", "hand_head", "near"),
    (r"\bshoulder[- ](height|level)|\blevel with " + _DET + r"shoulders?", "hand_height", "shoulder height"),
    (r"\b(above|over) " + _DET + r"head|\boverhead\b|\bup high\b|\bhigh\b|\bstraight up\b|\bin the air\b|"
     r"\b(sky|ceiling|heavens)\b|\bas high\b|\bup\b|\braise[sd]?\b|\braising\b|\blift(s|ed|ing)?\b|\breach(es|ing)? up\b",
     "hand_height", "above head"),
    (r"\bhang(s|ing)?\b|\bdown\b|\bat " + _DET + r"sides?\b|\bby " + _DET + r"sides?\b|\blower(s|ed|ing)?\b|\blow\b",
     "hand_height", "low"),
    (r"\bon " + _DET + r"((left|right) )?(hips?|waist)\b", "hand_hip", "on"),
    (r"\b(out )?to " + _DET + r"sides?\b|\bsideways\b|\bspread\w*\b|\boutstretched\b|\bstretch\w* out\b|\bwide\b|"
     r"\bwings?\b|\bt[- ]pose\b|\bhorizontal\w*\b", "arm_out", "out"),
    (r"\bbehind " + _DET + r"(back|body)\b", "hand_forward", "behind"),
    (r"\bin front\b|\bforwards?\b|\bahead\b|\breach(es|ing)? out\b|\bpush\w*\b|\bpoint(s|ing)? at\b",
     "hand_forward", "front"),
    (r"\bacross\b|\bcross(es|ed|ing)?\b|\bpast the middle\b", "hand_cross", "across"),
]
_SLIGHT = r"\b(slightly|a little|a bit|softly|soft|gently|loosely|somewhat)\b"
_DEEP = r"\b(sharply|fully|tight|tightly|all the way|deep\w*|completely)\b"
_BENT = r"\b(bent|bend\w*|flex\w*|curl\w*|fold\w*|crook\w*)\b"
_STRAIGHT = r"\b(straight\w*|extended|extend\w*|locked|stiff)\b"
#: Motion context ("while waving the left hand in an elderly manner", "as if...") describes the
#: movement the pose comes from, not the pose: such clauses give no constraint.
_CONTEXT = re.compile(r"\bin an? [a-z]+ (manner|style|way)\b|\bpose comes from\b|\bas if\b|\blike when\b")
_TORSO = r"\b(torso|upper body|trunk|back|spine|waist|body|hips|chest)\b"


def _bend_word(clause: str) -> str | None:
    """The bend a clause gives its elbow or knee: straight, slightly bent, bent or fully bent."""
    if re.search(_STRAIGHT, clause) and not re.search(r"\bstraight up\b", clause):
        return "straight"
    if re.search(r"\bsoft(en|ens|ened)?\b", clause) or (re.search(r"\brelax\w*", clause) and re.search(_SLIGHT, clause)):
        return "slightly bent"
    if re.search(_BENT, clause):
        if re.search(_SLIGHT, clause):
            return "slightly bent"
        return "fully bent" if re.search(_DEEP, clause) else "bent"
    return None


def _subjects(clause: str) -> list[tuple[str, tuple[str, ...]]]:
    """``[(kind, sides)]`` of the limbs a clause moves (kind: arm, elbow, knee, leg, foot); a
    limb without a side gets both sides when plural (or "both"), none when singular."""
    words = re.findall(r"[a-z]+", clause)
    out, side, target = [], None, False
    for w in words:
        if w in ("left", "right", "both"):
            side = w
            continue
        if w in _INSTRUMENT:
            target = False
            continue
        if w in _TARGET_PREP:
            target = True
            continue
        kind = ("arm" if w in _ARM else "elbow" if w in _ELBOW else "knee" if w in _KNEE else
                "leg" if w in _LEG else "foot" if w in _FOOT else None)
        if kind is None:
            continue
        if not target:
            sides = (side,) if side in ("left", "right") else (
                ("left", "right") if side == "both" or w in _PLURAL else ())
            out.append((kind, sides))
        side = None
    return out


def _body(clause: str, out: dict) -> None:
    """Whole-body words of one clause: stance and torso."""
    if re.search(r"\bsquat\w*|\bsit\w* on " + _DET + r"heels\b|\bdeep crouch\w*", clause):
        out.setdefault("pelvis_height", "squatting")
    elif re.search(r"\bcrouch\w*|\bget(s|ting)? low\b|\blow stance\b|\blower(s|ing)? " + _DET + r"(hips|body)\b|"
                   r"\bdrop(s|ping)? " + _DET + r"hips\b", clause):
        out.setdefault("pelvis_height", "crouching")
    elif re.search(r"\bkneel\w*|\b(down|drop\w*|get\w*|go\w*|is|are|fall\w*|rest\w*|sits?|sitting) on " + _DET
                   + r"(knees|(left |right )?knee)\b|^on " + _DET + r"knees\b", clause):
        m = re.search(r"\b(left|right) knee\b", clause)
        if m:
            out.setdefault(f"{m.group(1)}_knee_floor", "on the floor")
        else:
            out.setdefault("pelvis_height", "kneeling")
    elif re.search(r"\b(sit|sits|sitting|seated)\b.*\b(floor|ground)\b|\bsit(s|ting)? down\b|"
                   r"\b(hips|bottom|buttocks|seat) (are |is )?on the (floor|ground)\b", clause):
        out.setdefault("pelvis_height", "sitting")
    elif re.search(r"\bstand\w* (up )?(straight|tall|upright)\b|\b(is|are) standing\b|\bupright\b", clause):
        out.setdefault("pelvis_height", "standing")
    if _subjects(clause) and not re.search(_TORSO, clause):
        return                                     # "bend the left arm forward" is not a lean
    if re.search(r"\bround\w* " + _DET + r"back\b|\b(back|spine) is (rounded|curved|bent forward)\b|\bcurl\w* " + _DET
                 + r"(upper body|torso|back|spine)\b|\bhunch\w*", clause):
        out.setdefault("spine_bend", "forward")            # the chest curls over the pelvis
    elif re.search(r"\barch\w* " + _DET + r"back\b|\bback is arched\b", clause):
        out.setdefault("spine_bend", "back")
    elif re.search(r"\b(lean\w*|bend\w*|bent|tilt\w*|fold\w*|hinge\w*)\b[^,;]*?\b(forwards?|over)\b|"
                   r"\bbow\w*\b|\bstoop\w*|\btouch\w* " + _DET + r"toes\b", clause):
        far = re.search(r"\b(deep\w*|far|low|at the waist|to the (floor|ground)|toes|all the way|double|fold\w*)\b",
                        clause)
        out.setdefault("lean_forward", "far forward" if far else "forward")
    elif re.search(r"\b(lean\w*|bend\w*|bent|tilt\w*)\b[^,;]*?\bback(wards?)?\b|\blook\w* up\b", clause) \
            and not re.search(r"\bbehind " + _DET + r"back\b", clause):
        out.setdefault("lean_forward", "back")
    m = re.search(r"\b(lean\w*|tilt\w*|bend\w*|bent)\b[^,;]*?\b(to )?(the |their |your |his |her )?(?P<s>left|right)\b"
                  r"(?! (hand|arm|leg|foot|knee|elbow|wrist|shoulder|hip|ankle)s?\b)", clause)
    if m:
        out.setdefault("lean_side", m.group("s"))


def prompt_posecodes(prompt: str) -> list[tuple[str, str]]:
    """The posecode words a prompt states, ``[(posecode, word), ...]`` (see the module docstring).

    Example: "Crouch and reach forward with the right hand" -> ``[("pelvis_height", "crouching"),
    ("right_hand_forward", "front"), ("left_knee_bend", "bent"), ("right_knee_bend", "bent")]``.

    Raises:
        ValueError: ``prompt`` is not a string.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be a string, got {type(prompt).__name__}")
    text = prompt.lower().replace("\u2019", "'")
    out: dict[str, str] = {}
    # pairs first, on the whole prompt (they span clauses: "hands together in front")
    if re.search(r"\b(hands|palms|fists) (are |held |placed |pressed )?((almost|nearly) )?(together|touching|close)|"
                 r"\bclasp\w*|\bclap\w*|\bprayer\b", text):
        out["hands_distance"] = "close"
    elif re.search(r"\b(hands|arms) (are |held )?(far|wide) apart\b|\bhands wide\b", text):
        out["hands_distance"] = "wide"
    elif re.search(r"\bhands (are )?(about |roughly )?shoulder[- ]width apart\b", text):
        out["hands_distance"] = "shoulder-width"
    m = re.search(r"\b(feet|legs|stance|ankles)\b(?:(?!\b(hands?|arms?|and)\b)[^,.;]){0,30}?\b(wide|apart|spread|straddl\w*)\b|"
                  r"\bwide stance\b|"
                  r"\bstraddl\w*", text)
    if m:
        out["feet_distance"] = "shoulder-width" if re.search(r"\bshoulder[- ]width\b", m.group(0)) else "wide"
    elif re.search(r"\b(feet|ankles) (are |kept |held |placed )?together\b", text):
        out["feet_distance"] = "together"
    if re.search(r"\bknees (are |kept |held |pressed )?(close )?together\b", text):
        out["knees_distance"] = "together"
    elif re.search(r"\bknees (are )?(wide |far )?apart\b|\bspread\w* " + _DET + r"knees\b", text):
        out["knees_distance"] = "wide"
    m = re.search(r"\b(stand\w*|balanc\w*|hop\w*) on " + _DET + r"(?P<a>left|right) (leg|foot)\b|\bonly " + _DET
                  + r"(?P<b>left|right) foot (touches|is on)\b|\bweight (is )?on " + _DET + r"(?P<c>left|right) (leg|foot)\b",
                  text)
    if m:
        s = m.group("a") or m.group("b") or m.group("c")
        out[f"{'right' if s == 'left' else 'left'}_foot_height"] = "lifted"
    for clause in _CLAUSE.split(text):
        clause = clause.strip()
        if not clause or _CONTEXT.search(clause):
            continue
        _body(clause, out)
        m = re.search(r"\b(?P<a>left|right) (foot|leg) (\w+ ){0,3}?(in front|forwards?|ahead)\b|"
                      r"\bstep\w* (forwards? )?with " + _DET + r"(?P<b>left|right)|\blunge\w* (forwards? )?with " + _DET
                      + r"(?P<c>left|right)", clause)
        if m:
            out.setdefault("feet_stagger", m.group("a") or m.group("b") or m.group("c"))
        m = re.search(r"\b(?P<a>left|right) (foot|leg) (\w+ ){0,3}?(behind|back)\b", clause)
        if m:
            out.setdefault("feet_stagger", "right" if m.group("a") == "left" else "left")
        subjects = _subjects(clause)
        legs_named = any(k in ("knee", "leg") for k, _ in subjects)
        for kind, sides in subjects:
            for s in sides:
                if kind == "arm":
                    for pat, suffix, word in _ARM_RULES:
                        code = f"{s}_{suffix}"
                        if code in out or (suffix == "hand_height" and f"{s}_hand_head" in out):
                            continue
                        if re.search(pat, clause):
                            out[code] = word
                    if not legs_named:            # "knees bent with the hands on the knees"
                        w = "straight" if re.search(r"\bstraight up\b", clause) else _bend_word(clause)
                        if w:
                            out.setdefault(f"{s}_elbow_bend", w)
                elif kind == "elbow":
                    w = _bend_word(clause)
                    if w:
                        out.setdefault(f"{s}_elbow_bend", w)
                elif kind in ("knee", "leg"):
                    w = _bend_word(clause)
                    if w:
                        out.setdefault(f"{s}_knee_bend", w)
                    if kind == "knee" and re.search(r"\b(raise[sd]?|raising|lift\w*|up|high|to " + _DET
                                                    + r"(hip|waist|chest))\b", clause):
                        out.setdefault(f"{s}_knee_raise", "raised")
                    elif kind == "knee" and re.search(r"\b(on|touch\w*) the (floor|ground)\b", clause):
                        out.setdefault(f"{s}_knee_floor", "on the floor")
                    elif kind == "leg" and re.search(r"\b(raise[sd]?|raising|lift\w*|off the (floor|ground)|in the air)\b",
                                                     clause):
                        out.setdefault(f"{s}_foot_height", "lifted")
                elif kind == "foot":
                    if re.search(r"\b(lift\w*|raise[sd]?|raising|off the (floor|ground)|in the air|up)\b", clause):
                        out.setdefault(f"{s}_foot_height", "lifted")
                    elif re.search(r"\b(on the (floor|ground)|planted|flat)\b", clause):
                        out.setdefault(f"{s}_foot_height", "on the floor")
    # a squat or crouch means bent knees unless the prompt says otherwise
    if out.get("pelvis_height") in ("squatting", "crouching"):
        for s in ("left", "right"):
            out.setdefault(f"{s}_knee_bend", "bent")
    return list(out.items())
