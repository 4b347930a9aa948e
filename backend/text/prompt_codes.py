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

_DET = r"(?:the |your |my |his |her |their |one'?s |both )?"
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
    (r"\bin front of " + _DET + r"(face|eyes|nose|mouth|chin)\b", "hand_height", "head height"),
    (r"\b(to|on|on top of|near|next to|beside|by|under|touch\w*|behind|against|cover\w*|cup\w*|at) " + _DET
     + r"(face|head(?![- ](height|level))|mouth|chin|ears?|forehead|eyes?|cheeks?|temples?)\b|"
     r"\b(hold\w*|cup\w*|grab\w*|clutch\w*|cover\w*) " + _DET + r"(head|face)\b", "hand_head", "near"),
    (r"\bshoulder[- ](height|level)|\blevel with " + _DET + r"shoulders?", "hand_height", "shoulder height"),
    (r"\b(above|over) " + _DET + r"head|\boverhead\b|\bup high\b|\bhigh\b|\bstraight up\b|\bin the air\b|"
     r"\b(sky|ceiling|heavens)\b|\bas high\b|\bup\b|\braise[sd]?\b|\braising\b|\blift(s|ed|ing)?\b|\breach(es|ing)? up\b",
     "hand_height", "above head"),
    (r"\bhang(s|ing)?\b|\bdown\b|\bat " + _DET + r"sides?\b|\bby " + _DET + r"sides?\b|\blower(s|ed|ing)?\b|\blow\b",
     "hand_height", "low"),
    (r"\b(on|at|by|to|near|over) " + _DET + r"((left|right) )?(hips?|waist|holster|belt)\b", "hand_hip", "on"),
    (r"\b(out )?to " + _DET + r"sides?\b|\bsideways\b|\bspread\w*\b|\boutstretched\b|\bstretch\w* out\b|\bwide\b|"
     r"\bwings?\b|\bt[- ]pose\b|\bhorizontal\w*\b", "arm_out", "out"),
    (r"\bbehind " + _DET + r"(back|body)\b|\bon " + _DET + r"(lower |small of the )?back\b|\b(out |back |swept |flung )behind\b"
     r"(?! " + _DET + r"(head|neck|ears?)\b)", "hand_forward", "behind"),
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
_PALM_FACING = re.compile(r"\b(palms?|fingers) (are )?(facing |turned )?(up|upwards?|out|outwards?|down|downwards?|forwards?)\b")
_TARGETS = {"knee": "knee", "knees": "knee", "thigh": "thigh", "thighs": "thigh", "shoulder": "shoulder",
            "shoulders": "shoulder", "chest": "chest", "heart": "chest", "belly": "belly", "stomach": "belly",
            "tummy": "belly", "ankle": "ankle", "ankles": "ankle", "elbow": "elbow", "elbows": "elbow",
            "armpit": "shoulder", "armpits": "shoulder"}
_TARGET = re.compile(r"\b(on|onto|to|into|under|touch\w*|grab\w*|hold\w*|rest\w* on|against|over) " + _DET
                     + r"(?:(?P<side>left|right|other|opposite) )?(?P<t>" + "|".join(_TARGETS) + r")\b")
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
    elif re.search(r"\bkneel\w*|\b(collaps\w*|sink\w*|sank|dropp?\w*|fall\w*|fell) (down )?(on|onto) " + _DET
                   + r"knees\b", clause) or (re.search(r"\b(on|onto) (both|his|her|my|your|their) knees\b", clause) and not
                                              re.search(r"\b(hands?|palms?|fists?|fingers)\b", clause)) or re.search(r"\b(down|drop\w*|get\w*|go\w*|is|are|fall\w*|rest\w*|sits?|sitting) on " + _DET
                   + r"(knees|(left |right )?knee)\b|^on " + _DET + r"knees\b", clause):
        m = re.search(r"\b(left|right) knee\b", clause)
        if m:
            out.setdefault(f"{m.group(1)}_knee_floor", "on the floor")
        else:
            out.setdefault("pelvis_height", "kneeling")
            if re.search(r"\bknees\b", clause):
                out.setdefault("knees_floor", "on the floor")
    elif re.search(r"\b(sit|sits|sitting|seated)\b.*\b(floor|ground)\b|\bsit(s|ting)? down\b|"
                   r"\b(hips|bottom|buttocks|seat) (are |is )?on the (floor|ground)\b", clause):
        out.setdefault("pelvis_height", "sitting")
    elif re.search(r"\bstand\w* (up )?(straight|tall|upright)\b|\b(is|are) standing\b|\bupright\b", clause):
        out.setdefault("pelvis_height", "standing")
    if re.search(r"(?<!draw )(?<!draws )(?<!drawing )(?<!a )\bbow(s|ed|ing)?\b(?! and arrow)|\bcurtain[- ]call bow\b", clause):
        out.setdefault("lean_forward", "far forward" if re.search(r"\b(deep\w*|low)\b", clause) else "forward")
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


#: Phrasings where a hand is what holds or presses, not a target: "in both hands" is "with
#: both hands", "the back of his hand to the forehead" is "his hand to the forehead".
_HOLDING = re.compile(r"\bin ((?:both |his |her |their |my |your |the |one |each )?(?:(?:left|right) )?"
                      r"(?:hand|hands|fist|fists|arms))\b")
_BACK_OF = re.compile(r"\b(the )?(back|palm|heel) of (?=(his |her |their |my |your |the )?((left|right) )?(hand|fist)s?\b)")


def _grammar(text: str) -> dict[str, str]:
    """The posecode words the clauses of a lower-case prompt state, ``{posecode: word}``."""
    text = _BACK_OF.sub("", _HOLDING.sub(r"with \1", text))
    out: dict[str, str] = {}
    # pairs first, on the whole prompt (they span clauses: "hands together in front")
    if re.search(r"\b(hands|palms|fists) (are |held |placed |pressed )?((almost|nearly) )?(together|touching|close)|"
                 r"\bclasp\w*|\bclap\w*|\bprayer\b|\binterlac\w*|\binterlock\w*|\b(cross\w*|touch\w*) at the wrists\b|"
                 r"\bwrists (are )?(crossed|together|touching)\b|\bhands? (\w+ ){0,8}?close together\b", text):
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
        m = re.search(r"\b(?P<a>left|right) (foot|leg|heel|ankle|toes) (\w+ ){0,4}?(in front|forwards?|ahead)\b|"
                      r"\bstep\w* (forwards? )?with " + _DET + r"(?P<b>left|right)|\blunge\w* (forwards? )?with " + _DET
                      + r"(?P<c>left|right)", clause)
        if m:
            out.setdefault("feet_stagger", m.group("a") or m.group("b") or m.group("c"))
        m = re.search(r"\b(?P<a>left|right) (foot|leg) (\w+ ){0,3}?(behind|back)\b", clause)
        if m:
            out.setdefault("feet_stagger", "right" if m.group("a") == "left" else "left")
        clause = _PALM_FACING.sub(" ", clause)
        subjects = _subjects(clause)
        legs_named = any(k in ("knee", "leg") for k, _ in subjects)
        for kind, sides in subjects:
            for s in sides:
                if kind == "arm":
                    for pat, suffix, word in _ARM_RULES:
                        code = f"{s}_{suffix}"
                        if code in out or (suffix == "hand_height" and f"{s}_hand_head" in out):
                            continue
                        if suffix == "arm_out" and out.get(f"{s}_hand_height") == "low":
                            continue                  # "lower the arms to the sides": down, not out
                        if re.search(pat, clause):
                            out[code] = word
                    if re.search(r"\b(on|touch\w*|to|against) the (floor|ground|mat|track)\b", clause):
                        out.setdefault(f"{s}_hand_floor", "near")
                    m = _TARGET.search(clause)
                    if m:
                        t = _TARGETS[m.group("t")]
                        if t in ("chest", "belly"):
                            out.setdefault(f"{s}_hand_to_{t}", "near")
                        else:
                            ts = m.group("side") or s
                            ts = ("right" if s == "left" else "left") if ts in ("other", "opposite") else ts
                            out.setdefault(f"{s}_hand_to_{ts}_{t}", "near")
                    if re.search(r"\b(off |out |away )?to " + _DET + s + r"\b(?! (hand|arm|leg|foot|knee|elbow|wrist|shoulder|"
                                 r"hip|ankle|side)s?\b)", clause):
                        out.setdefault(f"{s}_arm_out", "out")
                    if not legs_named:            # "knees bent with the hands on the knees"
                        w = "straight" if re.search(r"\bstraight up\b", clause) else _bend_word(clause)
                        if w is None and re.search(r"\b(point(s|ed|ing)?|stretch(es|ed|ing)? out|outstretched)\b", clause):
                            w = "straight"
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
                        if re.search(r"\bhigh\b", clause):
                            out.setdefault(f"{s}_foot_raise", "high")
                    if kind == "leg" and re.search(r"\b(out )?to " + _DET + r"sides?\b|\bsideways\b", clause):
                        out.setdefault(f"{s}_foot_side", "out")
                elif kind == "foot":
                    if re.search(r"\b(lift\w*|raise[sd]?|raising|off the (floor|ground)|in the air|up)\b", clause):
                        out.setdefault(f"{s}_foot_height", "lifted")
                        if re.search(r"\bhigh\b", clause):
                            out.setdefault(f"{s}_foot_raise", "high")
                    elif re.search(r"\b(on the (floor|ground)|planted|flat)\b", clause):
                        out.setdefault(f"{s}_foot_height", "on the floor")
    return out


def _bent_knees(out: dict) -> None:
    """A squat or crouch means bent knees unless the prompt says otherwise."""
    if out.get("pelvis_height") in ("squatting", "crouching"):
        for s in ("left", "right"):
            out.setdefault(f"{s}_knee_bend", "bent")


def _hand_side(text: str) -> str | None:
    """The side a prompt names for a handed action ("left-handed", "with the left hand")."""
    m = re.search(r"\b(left|right)[- ]hand(ed)?\b|\b(?P<s>left|right) (arm|hand|fist|wrist|palm)\b", text)
    if m:
        return m.group(1) or m.group("s")
    return None


def _leg_side(text: str, on_is_stance: bool) -> str | None:
    """The moving leg a prompt names: "kick with the left leg" -> left; "on the left leg" -> the
    other leg for a balance (``on_is_stance``), that leg otherwise ("lunge on the left leg")."""
    m = re.search(r"\bon " + _DET + r"(left|right) (leg|foot)\b", text)
    if m:
        side = m.group(1)
        return ("right" if side == "left" else "left") if on_is_stance else side
    m = re.search(r"\b(left|right) (leg|foot|knee|ankle|heel)\b", text)
    return m.group(1) if m else None


#: Named poses an animator types ("tennis serve", "tree pose", "hands on hips"...): pattern,
#: whose side ("hand": the acting hand, "leg": the moving leg, "stance": the leg lifted off a
#: standing leg, None: both sides) and the posecode words, with ``{a}`` the acting side, ``{o}``
#: the other and ``both_`` both sides.  A side the prompt does not name is left open: the words
#: of either side are alternatives (:func:`prompt_constraints`).  PoseForge's own table.
NAMED_POSES: list[tuple[str, str | None, tuple[tuple[str, str], ...]]] = [
    # sports
    (r"\btennis serve|\bserv(e|es|ing) (a|the) (ball|tennis)|\bvolleyball spike|\bspik(e|es|ing) the ball|\bsmash\b",
     "hand", (("{a}_hand_height", "above head"), ("{a}_elbow_bend", "straight"))),
    (r"\bfree throw|\bjump shot|\bshoot\w* (a |the )?(basket|hoop|basketball)|\bbasketball shot|\bslam dunk|\bdunk\w*",
     "hand", (("{a}_hand_height", "above head"),)),
    (r"\bpitch(er|es|ing)?\b|\bthrow(s|n|ing|er|ers)?\b(?!-in)(?! (a |the )?(punch|jab|hook|kick))|\bjavelin|\bhurl\w*", "hand",
     (("{a}_hand_raise", "above shoulder"), ("feet_stagger", "{o}"), ("{a}_hand_forward", "behind"))),
    (r"\bpunch\w*|\bjab\w*", "hand", (("{a}_hand_forward", "front"), ("{a}_elbow_bend", "straight"))),
    (r"\b(boxing|boxer'?s?|fighting|fighter'?s?) (guard|stance)|\bon guard\b|\bguard up\b|\bput\w* up " + _DET
     + r"(fists|dukes)|\bfists up\b", None, (("both_hand_head", "near"),)),
    (r"\bgoal(ie|keeper|tender)|\bkeeper\b", None, (("pelvis_height", "crouching"),)),
    (r"\bstarting blocks|\bsprint\w* start|\bon your marks|\bsprinter\b|\bcrouch(ed)? start", "leg",
     (("both_hand_floor", "near"), ("lean_forward", "far forward"), ("feet_stagger", "{a}"))),
    (r"\bski(ing|er)? tuck|\btuck position|\bdownhill ski\w*", None,
     (("pelvis_height", "crouching"), ("lean_forward", "forward"))),
    (r"\bsurf\w*|\bskateboard\w*|\bsnowboard\w*", None,
     (("feet_distance", "wide"), ("both_knee_bend", "bent"), ("both_arm_out", "out"))),
    (r"\bgolf\w*|\bputt(s|ing)?\b", None, (("hands_distance", "close"), ("lean_forward", "forward"))),
    (r"\bbatting stance|\bbaseball bat|\bswing\w* (a |the )?bat\b|\bbatter\b", None, (("hands_distance", "close"),)),
    (r"\barcher\w*|\bdraw\w* (a |the )?bow\b|\bbow and arrow", "hand",
     (("{a}_arm_out", "out"), ("{a}_elbow_bend", "straight"), ("{o}_hand_head", "near"))),
    (r"\bside kick", "leg", (("{a}_foot_side", "out"), ("{a}_foot_height", "lifted"), ("{a}_knee_bend", "straight"))),
    (r"\bback kick|\bkick\w* (back|behind)", "leg", (("{a}_foot_forward", "behind"), ("{a}_foot_height", "lifted"))),
    (r"\bkick(s|ed|ing)?\b(?! back| behind| up behind)", "leg", (("{a}_foot_forward", "front"), ("{a}_foot_height", "lifted"),
                                                        ("{a}_foot_raise", "high"), ("{a}_knee_bend", "straight"))),
    # celebration and gestures with both arms
    (r"\bvictor\w*|\bcheer\w*|\bcelebrat\w*|\btriumph\w*|\bhoo?ray\b|\bhurrah|\btouchdown|\braise the roof|"
     r"\bhallelujah", None, (("both_hand_height", "above head"),)),
    (r"\bsurrender\w*|\bstick 'em up|\bdon'?t shoot|\bhands up\b", None, (("both_hand_raise", "above shoulder"),)),
    (r"\bymca\b|\b(the |a )?letter y\b|\bmake a y\b", None, (("both_hand_height", "above head"), ("hands_distance", "wide"))),
    (r"\bjumping jacks?|\bstar jump", None, (("both_hand_height", "above head"), ("feet_distance", "wide"))),
    (r"\bstretch\w* up|\breach\w* (up )?(for|to|towards?) the (ceiling|sky)|\b(morning|big|full[- ]body) stretch|"
     r"\bstretch\w* (tall|to the sky)", None, (("both_hand_height", "above head"),)),
    (r"\bt[- ]pose\b", None, (("both_arm_out", "out"), ("both_hand_height", "shoulder height"),
                               ("both_elbow_bend", "straight"))),
    (r"\bpray\w*|\bnamaste\b|\bprayer\b", None, (("hands_distance", "close"), ("both_hand_forward", "front"))),
    (r"\bcross\w* " + _DET + r"arms|\barms (are |folded |crossed )?(crossed|folded)|\bfold\w* " + _DET + r"arms",
     None, (("both_hand_cross", "across"), ("both_elbow_bend", "fully bent"))),
    (r"\bcarr(y|ies|ying)\b|\bhold\w* (a |the )?(box|tray|crate|package|parcel)|\blift\w* (a |the )?(box|crate)", None,
     (("both_hand_forward", "front"), ("hands_distance", "shoulder-width"))),
    (r"\bshrug\w*|\bi dunno\b|\bwho knows\b", None, (("both_elbow_bend", "bent"),)),
    (r"\b(head|face) (buried )?in " + _DET + r"hands\b", None, (("both_hand_head", "near"),)),
    (r"\bsumo\b", None, (("feet_distance", "wide"), ("pelvis_height", "crouching"))),
    (r"\btouch\w* " + _DET + r"(toes|feet|floor|ground)|\bforward fold|\buttanasana|\b(hands?|fingers|fingertips) "
     r"(\w+ )?(on|to|touch\w*|reach\w*) the (floor|ground|track)", None,
     (("both_hand_floor", "near"), ("lean_forward", "far forward"))),
    (r"\b(hands?|fingers|fingertips) (\w+ )?(below|past|under) " + _DET + r"knees", None, (("both_hand_floor", "near"),)),
    # gestures with one hand
    (r"\b(answer\w*|on|tak\w*|mak\w*) (a |the )?(phone|call)\b|\bphone call|\btalk\w* on the phone|\bphone to\b",
     "hand", (("{a}_hand_head", "near"), ("{a}_elbow_bend", "fully bent"))),
    (r"\bscratch\w* " + _DET + r"(head|chin)|\bface ?palm\w*|\bdrink\w*|\bsip\w*|\bbrush\w* " + _DET
     + r"(teeth|hair)|\bcomb\w* " + _DET + r"hair|\bshush\w*|\bblow\w* a kiss", "hand", (("{a}_hand_head", "near"),)),
    (r"\b(check\w*|look\w* at|glanc\w* at|read\w*) " + _DET + r"((left |right )?wrist)?watch|\bwhat time it is",
     "hand", (("{a}_hand_forward", "front"), ("{a}_elbow_bend", "bent"))),
    (r"\bsalut\w*", "hand", (("{a}_hand_head", "near"), ("{a}_elbow_bend", "fully bent"))),
    (r"\bwav(e|es|ing)\b", "hand", (("{a}_hand_raise", "above shoulder"),)),
    (r"\bhail\w* (a )?(taxi|cab)|\bflag\w* down", "hand", (("{a}_hand_height", "above head"),)),
    (r"\bthink\w* pose|\bthinker\b|\bchin (rest\w* |propped )?(on|in) " + _DET + r"((left|right) )?(hand|fist|palm)|"
     r"\bhand on " + _DET + r"chin|\bponder\w*", "hand", (("{a}_hand_head", "near"), ("{a}_elbow_bend", "fully bent"))),
    # yoga, dance and stretches
    (r"\btree pose|\bvrksasana", "stance", (("{a}_foot_height", "lifted"), ("{a}_knee_bend", "fully bent"))),
    (r"\bflamingo|\bon one (leg|foot)\b|\bbalanc\w* on (a single|one) (leg|foot)|\bone (foot|leg) (is )?(off|lifted|raised|"
     r"in the air|up)\b|\bone[- ]legged", "stance", (("{a}_foot_height", "lifted"),)),
    (r"\barabesque", "stance", (("{a}_foot_raise", "high"), ("{a}_foot_forward", "behind"), ("{a}_knee_bend", "straight"))),
    (r"\bpass[eé]\b|\bpirouette|\bretir[eé]\b", "stance", (("{a}_foot_height", "lifted"), ("{a}_knee_bend", "fully bent"))),
    (r"\bquad(riceps)? stretch", "stance",
     (("{a}_knee_bend", "fully bent"), ("{a}_foot_height", "lifted"), ("{a}_hand_to_{a}_ankle", "near"))),
    (r"\bwarrior (ii|2|two)\b", "leg", (("feet_distance", "wide"), ("both_arm_out", "out"), ("{a}_knee_bend", "bent"),
                                        ("{o}_knee_bend", "straight"))),
    (r"\bwarrior (i|1|one)\b", "leg", (("feet_stagger", "{a}"), ("{a}_knee_bend", "bent"), ("both_hand_height", "above head"))),
    (r"\bfencing lunge|\bfl[eè]che\b|\bfenc\w* (\w+ ){0,3}?lunge", "leg",
     (("{a}_hand_forward", "front"), ("{a}_elbow_bend", "straight"))),
    (r"\b(side|lateral) lunge", "leg", (("feet_distance", "wide"), ("{a}_knee_bend", "bent"), ("{o}_knee_bend", "straight"))),
    (r"\blung(e|es|ed|ing)\b", "leg", (("feet_stagger", "{a}"), ("{a}_knee_bend", "bent"), ("pelvis_height", "crouching"),
                                       ("{a}_foot_forward", "front"), ("{o}_foot_forward", "behind"))),
    (r"\b(fifth|5th) position", None, (("both_hand_height", "above head"),)),
    (r"\bside (stretch|bend)", "hand", (("lean_side", "{o}"), ("{a}_hand_height", "above head"))),
    # more sports, training and stances
    (r"\bhorse stance|\bhorse[- ]riding stance|\bgoddess pose|\bplie\b|\bpli[eé]\b", None,
     (("feet_distance", "wide"), ("both_knee_bend", "bent"))),
    (r"\bchair pose|\butkatasana", None, (("pelvis_height", "crouching"), ("both_hand_height", "above head"))),
    (r"\bmountain pose|\btadasana|\bstand\w* at attention|\bat attention\b|\bsoldier\w* (stance|pose)", None,
     (("pelvis_height", "standing"), ("both_hand_height", "low"), ("both_knee_bend", "straight"), ("feet_distance", "together"))),
    (r"\btriangle pose|\btrikonasana", "hand", (("feet_distance", "wide"), ("{a}_hand_height", "above head"), ("lean_side", "{o}"),
                                                ("{o}_hand_height", "low"))),
    (r"\bcrescent lunge|\bwarrior (i|1|one)\b", "leg", (("both_hand_height", "above head"),)),
    (r"\bwarrior (iii|3|three)\b", "stance", (("{a}_foot_raise", "high"), ("{a}_foot_forward", "behind"),
                                              ("lean_forward", "far forward"))),
    (r"\bdancer'?s? pose|\bnatarajasana", "stance", (("{a}_foot_height", "lifted"), ("{a}_foot_forward", "behind"),
                                                     ("{a}_hand_to_{a}_ankle", "near"))),
    (r"\bcrane (stance|pose|kick)|\bkarate kid", "stance", (("{a}_knee_raise", "raised"), ("both_arm_out", "out"))),
    (r"\bmarch\w*|\bhigh knees?\b", "leg", (("{a}_knee_raise", "raised"),)),
    (r"\bsprint(s|ing)?\b|\brunning\b|\bjog(s|ging)?\b|\bmid[- ]stride|\bstrid\w*|\bwalk\w*", "leg", (("feet_stagger", "{a}"),)),
    (r"\bdeadlift\w*|\brdl\b|\bgood morning exercise", None, (("lean_forward", "forward"),)),
    (r"\bdeadlift\w*|\bpick\w* (\w+ )?up (\w+ )?(from|off) the (floor|ground)|\bpick\w* up (a |the )?(box|bag|ball|coin|pen|something)"
     r"|\b(tie|ties|tied|tying) (\w+ )?(shoe|lace)", None, (("both_hand_floor", "near"),)),
    (r"\b(overhead|military|shoulder) press|\bpress\w* (\w+ )?overhead|\bclean and jerk|\bsnatch\b|\bhold\w* (\w+ )?"
     r"(barbell|weights?|trophy|cup) (\w+ )?(above|over) " + _DET + r"head|\bchin[- ]?up|\bpull[- ]?up|\bhang\w* from",
     None, (("both_hand_height", "above head"),)),
    (r"\bbiceps? curl|\bcurl\w* (a |the )?(dumbbell|weight)", None, (("both_elbow_bend", "fully bent"),)),
    (r"\bflex\w* (\w+ )?(muscles|biceps)|\bdouble biceps|\bbodybuilder|\bstrongman|\bmuscle pose", None,
     (("both_arm_out", "out"), ("both_elbow_bend", "fully bent"), ("both_hand_raise", "above shoulder"))),
    (r"\bvolleyball (bump|dig|pass)|\bforearm pass|\bbump the ball", None,
     (("hands_distance", "close"), ("both_elbow_bend", "straight"), ("both_hand_forward", "front"), ("both_knee_bend", "bent"))),
    (r"\bvolleyball set|\bset(ting)? the ball|\bblock\w* (at|above) the net|\bthrow-?in\b|\bheader\b", None,
     (("both_hand_height", "above head"),)),
    (r"\bdribbl\w*", "hand", (("{a}_hand_height", "low"), ("{a}_hand_forward", "front"))),
    (r"\bdefensive stance|\bdefen[cs]e stance|\bready (stance|position)|\bathletic stance|\bfencing|\ben garde|\btai chi",
     None, (("both_knee_bend", "slightly bent"),)),
    (r"\bthree[- ]point stance|\blineman|\bcrawl\w*|\bon (all fours|hands and knees)", None,
     (("both_hand_floor", "near"), ("lean_forward", "far forward"))),
    (r"\bcatcher\b|\bbaseball catcher", None, (("pelvis_height", "squatting"),)),
    (r"\bbowling|\bbowl(s|ed)? (a |the )?ball", "hand", (("feet_stagger", "{o}"), ("{o}_knee_bend", "bent"))),
    (r"\bcycl\w*|\bbik(e|ing)\b|\bride a bike", None, (("lean_forward", "forward"), ("both_hand_forward", "front"))),
    (r"\bhockey|\bsweep\w*|\bmop\w*|\bvacuum\w*|\bshovel\w*|\brak(e|ing)\b", None, (("lean_forward", "forward"),)),
    (r"\b(chop\w* wood|swing\w* (an |the )?(axe|hammer|sword) (\w+ )?(over|above))", None,
     (("both_hand_height", "above head"), ("hands_distance", "close"))),
    (r"\bdiv(e|es|ing)\b|\bdiver\b", None, (("both_hand_height", "above head"), ("hands_distance", "close"))),
    (r"\bswim\w*|\bfreestyle stroke|\bbreaststroke", "hand", (("{a}_hand_height", "above head"),)),
    (r"\bclimb\w*", "hand", (("{a}_hand_height", "above head"),)),
    (r"\bskat(e|es|ing|er)\b|\bspeed skat\w*", None, (("lean_forward", "forward"), ("both_knee_bend", "bent"))),
    # everyday actions, moods and characters
    (r"\bsit\w* on (a |the )?(chair|stool|bench|couch|sofa)|\bsitting in (a )?chair|\bseated on (a |the )?chair", None,
     (("both_knee_bend", "bent"), ("pelvis_height", "crouching"))),
    (r"\bmeditat\w*|\bcross[- ]legged|\blotus", None, (("pelvis_height", "sitting"),)),
    (r"\bzombie|\bsleepwalk\w*|\bmummy|\bfrankenstein", None,
     (("both_hand_forward", "front"), ("both_hand_height", "shoulder height"), ("both_elbow_bend", "straight"))),
    (r"\bairplane|\baeroplane|\bplane wings|\bfly(ing)? like a bird|\bbird wings|\bflap\w*", None,
     (("both_arm_out", "out"), ("both_elbow_bend", "straight"))),
    (r"\bstatue of liberty|\btorch (held )?(high|up)", "hand", (("{a}_hand_height", "above head"), ("{a}_elbow_bend", "straight"))),
    (r"\bhands? in " + _DET + r"pockets?", None, (("both_hand_height", "low"),)),
    (r"\bsuperhero landing|\bthree[- ]point landing", "leg", (("{a}_knee_floor", "on the floor"),)),
    (r"\bsuperhero(?! landing)|\bsuperman|\bpower pose|\bwonder woman|\bhands on (his |her |my |your |their |the )?hips", None,
     (("both_hand_hip", "on"),)),
    (r"\bhug\w*|\bembrac\w*", None, (("both_hand_forward", "front"), ("both_elbow_bend", "bent"))),
    (r"\bclap\w*|\bapplau\w*", None, (("hands_distance", "close"), ("both_hand_forward", "front"))),
    (r"\b(read\w*|hold\w*) (a |the )?(book|newspaper|tablet|map|letter)|\btext(s|ing|ed)?\b|\btyp(e|es|ing) on (a |the |my |his |her )?"
     r"phone|\bscroll\w* (on )?(a |the |my |his |her )?phone|\bselfie", None,
     (("both_hand_forward", "front"), ("both_elbow_bend", "bent"))),
    (r"\bthumbs? up\b", "hand", (("{a}_elbow_bend", "bent"), ("{a}_hand_forward", "front"))),
    (r"\bstop (sign|gesture)|\bhalt\b|\btalk to the hand", "hand", (("{a}_hand_forward", "front"), ("{a}_elbow_bend", "straight"))),
    (r"\bshad\w* " + _DET + r"eyes|\blook\w* (out |off )?(into|at) the (distance|horizon)|\bsearch\w* the horizon|\bspyglass",
     "hand", (("{a}_hand_head", "near"),)),
    (r"\bcup\w* " + _DET + r"ear|\bhand (to|behind) " + _DET + r"ear|\blisten\w* (closely|carefully)|\bcan'?t hear", "hand",
     (("{a}_hand_head", "near"),)),
    (r"\byawn\w*", None, (("both_hand_height", "above head"),)),
    (r"\bcower\w*|\bprotect\w* " + _DET + r"head|\bduck\w* (down|for cover)|\bafraid|\bscared|\bterrified|\bfrighten\w*",
     None, (("both_hand_head", "near"),)),
    (r"\bsneak\w*|\btiptoe\w*|\bcreep\w*|\bhid(e|es|ing)\b|\bstealth\w*", None, (("pelvis_height", "crouching"),)),
    (r"\bexhausted|\bout of breath|\bcatch\w* " + _DET + r"breath|\btired\b|\bwinded", None,
     (("lean_forward", "forward"), ("left_hand_to_left_knee", "near"), ("right_hand_to_right_knee", "near"))),
    (r"\bsad\b|\bdejected|\bdepressed|\bgloomy|\bslump\w*|\bhead (hung|hanging|down)\b", None, (("spine_bend", "forward"),)),
    (r"\bexcited|\bjoy\w*|\bhappy dance|\bjump\w* for joy|\bhooray|\bhurrah|\bwoo+\b|\byay\b|\bwin(s|ning)?\b|\bgoal!",
     None, (("both_hand_height", "above head"),)),
    (r"\bconduct\w* (an |the )?orchestra|\bconductor", None, (("both_hand_raise", "above shoulder"),)),
    (r"\bair guitar|\bplay\w* (the |a )?guitar", None, (("both_elbow_bend", "bent"), ("both_hand_forward", "front"))),
    (r"\bplay\w* (the |a )?violin|\bfiddl\w*", None, (("left_hand_head", "near"), ("right_hand_forward", "front"))),
    (r"\bpaint\w* (a |the )?(wall|ceiling)|\bwash\w* (a |the )?window|\bwip\w* (a |the )?(window|whiteboard)", "hand",
     (("{a}_hand_raise", "above shoulder"), ("{a}_hand_forward", "front"))),
    (r"\bpush\w* (a |the )?(door|cart|car|wall|box|trolley|stroller|pram)", None,
     (("both_hand_forward", "front"), ("lean_forward", "forward"))),
    (r"\bpull\w* (a |the |on a |on the )?rope|\btug[- ]of[- ]war", None, (("both_hand_forward", "front"), ("lean_forward", "back"))),
    (r"\bcurtsy\w*|\bcurtsey\w*", None, (("both_knee_bend", "bent"),)),
    (r"\bpropos\w*|\bon one knee|\bknight\w*", "leg", (("{o}_knee_floor", "on the floor"), ("{a}_foot_height", "on the floor"))),
    (r"\bhitchhik\w*", "hand", (("{a}_arm_out", "out"), ("{a}_elbow_bend", "straight"))),
    (r"\blightning bolt|\busain bolt|\bto di world", "hand",
     (("{a}_hand_height", "above head"), ("{a}_elbow_bend", "straight"), ("{o}_arm_out", "out"))),
    (r"\bdisco\b|\bsaturday night fever", "hand", (("{a}_hand_height", "above head"),)),
    (r"\bteapot", "hand", (("{o}_hand_hip", "on"), ("{a}_arm_out", "out"))),
    (r"\bcover\w* " + _DET + r"(head|face|eyes|ears)\b|\bcup\w* " + _DET + r"hands (around|to|over) " + _DET
     + r"mouth|\b(hands?|fingers) fram\w* " + _DET + r"face|\bvogu\w*|\bbinoculars|\btelescope|\bcamera to " + _DET + "eye",
     None, (("both_hand_head", "near"),)),
    (r"\b(bar|barbell|weights?|ball|sign|trophy|bag|box|baby|child|rock|log) (\w+ ){0,3}?(overhead|(over|above) " + _DET
     + r"head)|\block\w* out overhead", None, (("both_hand_height", "above head"),)),
    (r"\b(hold\w*|grip\w*|swing\w*) (\w+ ){0,8}?with both hands|\btwo[- ]handed\b|\bbinoculars", None,
     (("hands_distance", "close"),)),
    (r"\bt[- ]?rex\b", None, (("both_elbow_bend", "fully bent"), ("both_hand_forward", "front"))),
    (r"\bchicken\b|\bchicken wings", None, (("both_elbow_bend", "fully bent"),)),
    (r"\bkettlebell swing", "hand", (("{a}_hand_forward", "front"), ("{a}_hand_height", "shoulder height"),
                                    ("{a}_elbow_bend", "straight"))),
    (r"\bwall sit|\bthighs (level|parallel)", None, (("both_knee_bend", "bent"), ("pelvis_height", "crouching"))),
    (r"\bjazz hands", None, (("both_hand_raise", "above shoulder"), ("both_hand_forward", "front"))),
]
_NAMED = [(re.compile(p), role, words) for p, role, words in NAMED_POSES]


def _named(text: str) -> list[tuple[str | None, tuple[tuple[str, str], ...]]]:
    """``[(acting side or None for either, words)]`` of the named poses a prompt mentions."""
    found = []
    for pattern, role, words in _NAMED:
        if pattern.search(text):
            side = None if role is None else _hand_side(text) if role == "hand" else _leg_side(text, role == "stance")
            found.append((role and side, words, role))
    return found


def _expand(words, side: str | None) -> dict[str, str]:
    other = {"left": "right", "right": "left"}.get(side or "")
    out: dict[str, str] = {}
    for code, word in words:
        if code.startswith("both_"):
            for s_ in ("left", "right"):
                out.setdefault(f"{s_}_{code[5:]}", word)
            continue
        out.setdefault(code.format(a=side, o=other), word.format(a=side, o=other))
    return out


#: At most this many alternatives (sides left open) per prompt.
MAX_ALTERNATIVES = 4


def prompt_constraints(prompt: str) -> list[list[tuple[str, str]]]:
    """The posecode words a prompt states, as alternatives: ``[[(posecode, word), ...], ...]``;
    a pose should meet every word of one of them.  There is one alternative unless a named pose
    leaves its side open ("balance on one leg", "lunge"): then the left-side and right-side
    readings are both given (at most :data:`MAX_ALTERNATIVES`).  What the clauses say outright
    (the keyword grammar) comes first; a named pose ("tree pose", "salute", see
    :data:`NAMED_POSES`) adds only words the clauses do not set.  Empty alternatives are never
    returned: a prompt with no readable word gives ``[]``.

    Raises:
        ValueError: ``prompt`` is not a string.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be a string, got {type(prompt).__name__}")
    text = prompt.lower().replace("\u2019", "'")
    base = _grammar(text)
    alternatives = [dict(base)]
    pieces = re.split(f"({_CLAUSE.pattern})", text)       # clauses and their separators
    plain = "".join(p for p in pieces if p and not _CONTEXT.search(p))
    for side, words, role in _named(plain):
        sides = [side] if side or role is None else ["left", "right"]
        grown = []
        for alt in alternatives:
            for s_ in sides:
                new = dict(alt)
                for code, word in _expand(words, s_).items():
                    new.setdefault(code, word)
                if new not in grown:
                    grown.append(new)
        alternatives = grown[:MAX_ALTERNATIVES]
    for alt in alternatives:
        _bent_knees(alt)
    return [list(a.items()) for a in alternatives if a]


def prompt_posecodes(prompt: str) -> list[tuple[str, str]]:
    """The posecode words a prompt states, ``[(posecode, word), ...]``: the words every
    alternative of :func:`prompt_constraints` shares (see the module docstring).

    Example: "Crouch and reach forward with the right hand" -> ``[("pelvis_height", "crouching"),
    ("right_hand_forward", "front"), ("left_knee_bend", "bent"), ("right_knee_bend", "bent")]``.

    Raises:
        ValueError: ``prompt`` is not a string.
    """
    alternatives = prompt_constraints(prompt)
    if not alternatives:
        return []
    return [cw for cw in alternatives[0] if all(cw in a for a in alternatives[1:])]
