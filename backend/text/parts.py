"""Body parts of the canonical body, and which ones an edit instruction concerns.

Body parts are sets of canonical joints (:mod:`poseforge.backend.skeleton`); the pelvis is none
of them (its orientation and position belong to the root, which edits keep).  The instruction
parser is a small keyword grammar, not a learned model: it splits the instruction into clauses,
finds body-part words (with their side: "left", "right", "both", or a plural), and ignores
body words that only name a target ("above the **head**", "on the **hip**").
"""
from __future__ import annotations

import re

#: Body part -> canonical joint names (the pelvis belongs to none).
BODY_PARTS: dict[str, tuple[str, ...]] = {
    "left_arm": ("left_collar", "left_shoulder", "left_elbow", "left_wrist"),
    "right_arm": ("right_collar", "right_shoulder", "right_elbow", "right_wrist"),
    "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
    "torso": ("spine1", "spine2", "spine3"),
    "head": ("neck", "head"),
}

#: Groups a user may name for Mix (arms / legs / torso / head) -> body parts.
PART_GROUPS: dict[str, tuple[str, ...]] = {
    "arms": ("left_arm", "right_arm"), "legs": ("left_leg", "right_leg"), "torso": ("torso",),
    "head": ("head",), "left_arm": ("left_arm",), "right_arm": ("right_arm",),
    "left_leg": ("left_leg",), "right_leg": ("right_leg",),
}

_LIMB_WORDS = {
    "arm": "arm", "arms": "arm", "hand": "arm", "hands": "arm", "elbow": "arm", "elbows": "arm",
    "wrist": "arm", "wrists": "arm", "shoulder": "arm", "shoulders": "arm", "fist": "arm",
    "fists": "arm", "palm": "arm", "palms": "arm", "forearm": "arm", "forearms": "arm",
    "finger": "arm", "fingers": "arm",
    "leg": "leg", "legs": "leg", "knee": "leg", "knees": "leg", "foot": "leg", "feet": "leg",
    "ankle": "leg", "ankles": "leg", "thigh": "leg", "thighs": "leg", "toe": "leg", "toes": "leg",
    "heel": "leg", "heels": "leg", "shin": "leg", "shins": "leg",
}
_PLURAL = {"arms", "hands", "elbows", "wrists", "shoulders", "fists", "palms", "forearms", "fingers",
           "legs", "knees", "feet", "ankles", "thighs", "toes", "heels", "shins"}
_TORSO_WORDS = {"torso", "spine", "back", "chest", "waist", "trunk", "lean", "leans", "leaning",
                "bow", "bows", "bowing", "arch", "arches", "hunch", "hunched", "slouch", "twist",
                "twists", "upper", "body", "belly", "stomach", "hips"}
_HEAD_WORDS = {"head", "neck", "look", "looks", "looking", "nod", "chin", "face", "gaze", "tilt"}
#: Whole-body verbs: legs and torso.
_BODY_VERBS = {"squat", "squats", "squatting", "crouch", "crouches", "crouching", "kneel", "kneels",
               "kneeling", "sit", "sits", "sitting", "jump", "jumps", "jumping", "lunge", "lunges",
               "stand", "stands", "standing"}
_KICK = {"kick", "kicks", "kicking", "step", "steps", "stepping"}
_ARM_VERBS = {"wave", "waves", "waving", "point", "points", "pointing", "reach", "reaches", "reaching",
              "clap", "claps", "punch", "punches", "salute"}
#: Words after which a body word is a target, not the part that moves.
_TARGET_PREP = {"above", "over", "on", "onto", "to", "toward", "towards", "behind", "near", "at",
                "beside", "touching", "touch", "touches", "against", "below", "under", "past",
                "across", "of", "than", "by", "from", "around", "between"}
#: Words after which the named limb is the one that moves ("reach forward with the right hand").
_INSTRUMENT = {"with", "using"}
_BEND_OVER = re.compile(r"\bbend(s|ing)?\s+(forward|forwards|over|backward|backwards|back|down|sideways)\b")
_CLAUSE = re.compile(r"[,;.!?]|\band\b|\bthen\b|\bwhile\b|\bwhilst\b|\bbut\b")


def part_joints(parts) -> list[str]:
    """Canonical joint names of body parts (names of :data:`BODY_PARTS` or :data:`PART_GROUPS`).

    Raises:
        ValueError: an unknown part name (the known ones are listed).
    """
    out: list[str] = []
    for p in parts:
        names = PART_GROUPS.get(p, (p,) if p in BODY_PARTS else None)
        if names is None:
            raise ValueError(f"unknown body part {p!r} (known: {', '.join(sorted(set(PART_GROUPS) | set(BODY_PARTS)))})")
        for n in names:
            out.extend(j for j in BODY_PARTS[n] if j not in out)
    return out


def _sides(side: str | None, plural: bool) -> tuple[str, ...]:
    if side in ("left", "right"):
        return (side,)
    return ("left", "right") if (side == "both" or plural or side is None) else ()


def parts_for_instruction(text: str) -> list[str]:
    """The body parts an edit instruction concerns, in :data:`BODY_PARTS` order.

    "raise the left arm" -> ``["left_arm"]``; "bend the knees more" -> both legs; "lean
    forward" -> torso; "raise the right hand above the head" -> ``["right_arm"]`` (the head is
    only a target); "crouch" -> legs and torso.  A limb named without a side means both.

    Returns:
        An empty list when no body part is named (the caller decides: usually the whole body).
    Raises:
        ValueError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise ValueError(f"the instruction must be a string, got {type(text).__name__}")
    found: set[str] = set()
    if _BEND_OVER.search(text.lower()):
        found.add("torso")
    for clause in _CLAUSE.split(text.lower()):
        words = re.findall(r"[a-z]+", clause)
        side, target = None, False
        limb_seen = False
        pending: dict[str, str | None] = {}     # verb kind ("arm" / "leg") -> its side, until a limb names it
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
            if w in _LIMB_WORDS:
                kind = _LIMB_WORDS[w]
                if not target:
                    for s in _sides(side, w in _PLURAL):
                        found.add(f"{s}_{kind}")
                    limb_seen = True
                    pending.pop(kind, None)
                side = None
                continue
            if target:
                continue
            if w in _TORSO_WORDS and not (w == "hips" and limb_seen):
                found.add("torso")
            elif w in _HEAD_WORDS:
                found.add("head")
            elif w in _BODY_VERBS:
                found.update({"left_leg", "right_leg", "torso"})
            elif w in _KICK:
                pending["leg"] = side
                side = None
            elif w in _ARM_VERBS:
                pending["arm"] = side
                side = None
        for kind, s in pending.items():       # a verb whose limb was never named: its side, or both
            for one in _sides(s, False):
                found.add(f"{one}_{kind}")
    return [p for p in BODY_PARTS if p in found]
