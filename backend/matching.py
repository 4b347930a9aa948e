"""Match the bones of an unknown humanoid skeleton to the canonical joints (pure Python).

Used by the Blender rig bridge when no shipped preset fits a rig, and by anything else that
meets a new skeleton (BVH files, glTF rigs).  No bpy, no NumPy needed.

Method (as in the VRM add-on's human-bone matcher, re-derived here):

1. **Canonicalise** each bone name: drop namespaces (``mixamorig:``), rig prefixes (``DEF-``,
   ``ORG-``, ``MCH-``, ``CC_Base_``, ``Bip01``), split camelCase, separators and digits into
   tokens, pull out the side marker (``Left``/``Right``, ``L``/``R``, ``.L``/``_l``, ...), and keep
   the remaining letters as a compact key (``LeftUpLeg`` -> side ``left``, key ``upleg``;
   ``DEF-upper_arm.L.001`` -> ``left``, ``upperarm``).
2. **Limbs by name plus the parent chain**: every sided joint (hip, knee, ankle, foot; collar,
   shoulder, elbow, wrist) is scored against keyword tables (exact key 1.0 or less for ambiguous
   words, containment 0.6); a candidate scores +0.5 when it descends from the bone chosen for
   the canonical parent (the knee must be below the hip, the ankle below the knee), loses a
   little per bone of distance, and a candidate that is not below the parent is accepted only
   with an exact name (IK foot bones parented to the rig root).  Names of fingers, twist, IK,
   pole and helper bones score zero.
3. **Trunk by structure**: the pelvis is the bone named pelvis/hips that is an ancestor of both
   thighs, else the thighs' lowest common ancestor; the chest is the lowest common ancestor of
   the two collars (or upper arms); the bones from the pelvis down to the chest become spine1 /
   spine2 / spine3 (first, middle, last; missing ones are left for retargeting to fill); the
   head is the bone named head below the chest (else the end of the chest's central chain) and
   the neck the first bone between chest and head.
4. **Chain fallback**: a canonical joint between two matched joints whose bones have exactly one
   bone between them gets that bone; an unmatched end joint (wrist, ankle, foot, head) gets the
   only child of its matched parent's bone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from .skeleton import JOINT_NAMES, PARENTS

#: Joints without which a skeleton is not treated as a humanoid body.
REQUIRED_JOINTS: tuple[str, ...] = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee",
                                    "left_ankle", "right_ankle")

_PREFIX = re.compile(r"^(?:DEF|ORG|MCH|CTRL|CTL|CC_Base|Bip\d*|b|bn|jnt|J)(?:[-_. ]+)", re.IGNORECASE)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SIDE_TOKENS = {"l": "left", "left": "left", "lf": "left", "lft": "left",
                "r": "right", "right": "right", "rt": "right", "rgt": "right"}
_EXCLUDE = {"thumb", "index", "middle", "ring", "pinky", "little", "finger", "fingers", "twist",
            "ik", "fk", "pole", "target", "tgt", "ctrl", "ctl", "mch", "roll", "end", "nub", "tip",
            "top", "ear", "eye", "jaw", "tongue", "teeth", "brow", "lid", "lip", "breast",
            "helper", "corrective", "mechanism", "weapon", "prop", "ik_", "poletarget", "metacarpal"}

# canonical limb part -> {compact key: score}
_LIMB_KEYS: dict[str, dict[str, float]] = {
    "hip": {"upleg": 1.0, "upperleg": 1.0, "thigh": 1.0, "hip": 0.9, "femur": 1.0, "legupper": 1.0},
    "knee": {"leg": 0.9, "lowerleg": 1.0, "lowleg": 1.0, "shin": 1.0, "calf": 1.0, "knee": 1.0,
             "tibia": 1.0, "leglower": 1.0, "crus": 0.8},
    "ankle": {"ankle": 1.0, "foot": 0.9, "tarsal": 0.7},
    "foot": {"toebase": 1.0, "toe": 1.0, "toes": 1.0, "ball": 1.0, "foot": 0.7, "forefoot": 1.0},
    "collar": {"clavicle": 1.0, "collar": 1.0, "collarbone": 1.0, "shoulder": 0.8, "clav": 0.9,
               "scapula": 0.8},
    "shoulder": {"upperarm": 1.0, "uparm": 1.0, "arm": 0.9, "shoulder": 0.7, "humerus": 1.0,
                 "armupper": 1.0},
    "elbow": {"forearm": 1.0, "lowerarm": 1.0, "lowarm": 1.0, "elbow": 1.0, "armlower": 1.0,
              "radius": 0.8},
    "wrist": {"hand": 1.0, "wrist": 1.0, "palm": 0.9},
}
_TRUNK_KEYS = {"pelvis": {"pelvis": 1.0, "hips": 1.0, "hip": 0.9},
               "neck": {"neck": 1.0},
               "head": {"head": 1.0}}


@dataclass(frozen=True)
class BoneName:
    """A canonicalised bone name: ``side`` in {"left", "right", None}, lowercase ``tokens``
    (side and digits removed), ``key`` = the tokens joined, ``digits`` = trailing numbers."""
    raw: str
    side: str | None
    tokens: tuple[str, ...]
    key: str
    digits: tuple[int, ...]


def canonicalise(name: str) -> BoneName:
    """Split a bone name into side, tokens and a compact key (see module doc, step 1)."""
    s = name.rsplit(":", 1)[-1] if ":" in name else name
    s = s.replace("|", "_")
    prev = None
    while prev != s:
        prev, s = s, _PREFIX.sub("", s)
    words: list[str] = []
    for chunk in re.split(r"[^A-Za-z0-9]+", s):
        words.extend(_CAMEL.findall(chunk))
    side = None
    tokens: list[str] = []
    digits: list[int] = []
    for i, w in enumerate(words):
        lw = w.lower()
        if lw.isdigit():
            digits.append(int(lw))
            continue
        if lw in _SIDE_TOKENS and (len(words) > 1):
            side = side or _SIDE_TOKENS[lw]
            continue
        tokens.append(lw)
    return BoneName(name, side, tuple(tokens), "".join(tokens), tuple(digits))


def _common_prefix(names: Sequence[str]) -> str:
    """A prefix shared by every bone name and ending at a separator (``Character1_``, ``Armature|``)."""
    if len(names) < 2:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    cut = max(first.rfind(sep, 0, n) for sep in ":_|. -")
    return first[:cut + 1] if cut >= 0 else ""


def _name_score(bn: BoneName, table: dict[str, float]) -> float:
    if not bn.key or any(t in _EXCLUDE for t in bn.tokens):
        return 0.0
    if bn.key in table:
        return table[bn.key]
    best = 0.0
    for k, v in table.items():
        if len(k) >= 3 and k in bn.key:
            best = max(best, 0.6 * v)
    return best


@dataclass
class MatchResult:
    """Outcome of :func:`match_skeleton`.

    Attributes:
        mapping: canonical joint name -> bone name, for the matched joints.
        unmatched: canonical joint names (SMPL order) left without a bone.
        confidence: 0..1, mean per-joint score over the 22 joints (1.0 = every joint matched by
            an exact name below its parent; structural assignments count 0.6).
        scores: canonical joint name -> score of its match.
    """
    mapping: dict[str, str]
    unmatched: list[str]
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def missing_required(self) -> list[str]:
        """Unmatched joints among :data:`REQUIRED_JOINTS`."""
        return [j for j in REQUIRED_JOINTS if j in self.unmatched]


class _Tree:
    def __init__(self, names: Sequence[str], parents: Sequence[int | str | None]):
        self.names = list(names)
        index = {n: i for i, n in enumerate(self.names)}
        self.parent: list[int] = []
        for p in parents:
            if p is None or p == -1:
                self.parent.append(-1)
            elif isinstance(p, str):
                self.parent.append(index.get(p, -1))
            else:
                self.parent.append(int(p))
        self.children: list[list[int]] = [[] for _ in self.names]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)

    def ancestors(self, i: int) -> list[int]:
        out = []
        p = self.parent[i]
        while p >= 0 and len(out) <= len(self.names):
            out.append(p)
            p = self.parent[p]
        return out

    def distance_below(self, i: int, anc: int) -> int:
        """Steps from ``anc`` down to ``i`` (-1 if ``i`` is not a descendant of ``anc``)."""
        for d, a in enumerate(self.ancestors(i), start=1):
            if a == anc:
                return d
        return -1

    def lca(self, a: int, b: int) -> int:
        anc_a = [a] + self.ancestors(a)
        set_b = set([b] + self.ancestors(b))
        for x in anc_a:
            if x in set_b:
                return x
        return -1

    def path_down(self, anc: int, desc: int) -> list[int]:
        """Bones strictly below ``anc`` down to ``desc`` inclusive (empty if not a descendant)."""
        chain = [desc]
        for a in self.ancestors(desc):
            if a == anc:
                return list(reversed(chain))
            chain.append(a)
        return []


_LEG = ("hip", "knee", "ankle", "foot")
_ARM = ("collar", "shoulder", "elbow", "wrist")


def match_skeleton(names: Sequence[str], parents: Sequence[int | str | None]) -> MatchResult:
    """Match bones to the 22 canonical joints by canonicalised names plus the hierarchy.

    Args:
        names: bone names, any order.
        parents: per bone, the parent's index into ``names`` or the parent's name; ``-1`` or
            ``None`` for roots.
    Returns:
        :class:`MatchResult` (mapping canonical joint -> bone name, the unmatched joints, a
        confidence).  Never raises for odd input: a non-humanoid skeleton simply comes back with
        its missing joints in ``unmatched`` (see :attr:`MatchResult.missing_required`).
    """
    if len(names) != len(parents):
        raise ValueError(f"{len(names)} bone names but {len(parents)} parents")
    tree = _Tree(names, parents)
    prefix = _common_prefix(names)
    bn = [canonicalise(n[len(prefix):]) for n in names]
    chosen: dict[str, int] = {}
    scores: dict[str, float] = {}
    used: set[int] = set()

    def pick(joint: str, table: dict[str, float], side: str | None, below: int | None,
             above: int | None = None) -> None:
        best, best_s = -1, 0.0
        for i, b in enumerate(bn):
            if i in used or b.side != side:
                continue
            s = _name_score(b, table)
            if s <= 0:
                continue
            if above is not None and tree.distance_below(above, i) < 0:
                continue
            total = s
            if below is not None:
                d = tree.distance_below(i, below)
                if d > 0:
                    total += 0.5 - 0.01 * d
                elif s < 0.9:
                    continue
            else:
                total -= 0.001 * len(tree.ancestors(i))
            if total > best_s:
                best, best_s = i, total
        if best >= 0:
            chosen[joint] = best
            scores[joint] = min(1.0, _name_score(bn[best], table))
            used.add(best)

    # limbs by name + parent chain
    for side in ("left", "right"):
        for chain in (_LEG, _ARM):
            prev = None
            for part in chain:
                joint = f"{side}_{part}"
                pick(joint, _LIMB_KEYS[part], side, prev)
                if joint in chosen:
                    prev = chosen[joint]

    # pelvis: named hips/pelvis above both thighs, else their lowest common ancestor
    lh, rh = chosen.get("left_hip"), chosen.get("right_hip")
    if lh is not None and rh is not None:
        common = tree.lca(lh, rh)
        best, best_s = -1, 0.0
        for i, b in enumerate(bn):
            s = _name_score(b, _TRUNK_KEYS["pelvis"]) if b.side is None else 0.0
            if s > best_s and i not in used and tree.distance_below(lh, i) > 0 and tree.distance_below(rh, i) > 0:
                best, best_s = i, s
        if best >= 0:
            chosen["pelvis"], scores["pelvis"] = best, best_s
        elif common >= 0:
            chosen["pelvis"], scores["pelvis"] = common, 0.6
        if "pelvis" in chosen:
            used.add(chosen["pelvis"])
    else:
        pick("pelvis", _TRUNK_KEYS["pelvis"], None, None)

    # chest: lowest common ancestor of the two arm chains
    chest = -1
    for part in ("collar", "shoulder"):
        a, b = chosen.get(f"left_{part}"), chosen.get(f"right_{part}")
        if a is not None and b is not None:
            chest = tree.lca(tree.parent[a] if part == "collar" else a,
                             tree.parent[b] if part == "collar" else b)
            if part == "shoulder" and chest in (a, b):
                chest = tree.parent[chest]
            break
    pelvis = chosen.get("pelvis")
    head_below = chest if chest >= 0 else pelvis
    if head_below is not None and head_below >= 0:
        pick("head", _TRUNK_KEYS["head"], None, None, above=head_below)
    if "head" not in chosen and chest >= 0:
        # end of the chest's central chain: follow unsided, unused children
        cur, end = chest, -1
        while True:
            nxt = [c for c in tree.children[cur] if bn[c].side is None and c not in used
                   and not any(t in _EXCLUDE for t in bn[c].tokens)]
            if not nxt:
                break
            cur = end = nxt[0]
        if end >= 0:
            chosen["head"], scores["head"] = end, 0.6
            used.add(end)
    if chest < 0 and pelvis is not None and "head" in chosen:
        # no arms: the chest is the bone below the neck/head chain
        path = tree.path_down(pelvis, chosen["head"])
        if len(path) >= 2:
            chest = path[-2]
    if "head" in chosen and chest >= 0:
        between = tree.path_down(chest, chosen["head"])[:-1]
        named = [i for i in between if _name_score(bn[i], _TRUNK_KEYS["neck"]) > 0]
        neck = named[0] if named else (between[0] if between else -1)
        if neck >= 0 and neck not in used:
            chosen["neck"], scores["neck"] = neck, 1.0 if named else 0.6
            used.add(neck)

    # spine: pelvis (exclusive) .. chest (inclusive)
    if pelvis is not None and chest >= 0 and chest != pelvis:
        path = [i for i in tree.path_down(pelvis, chest) if i not in used]
        n = len(path)
        if n >= 3:
            picks = {"spine1": path[0], "spine2": path[round((n - 1) / 2)], "spine3": path[-1]}
        elif n == 2:
            picks = {"spine1": path[0], "spine3": path[1]}
        elif n == 1:
            picks = {"spine3": path[0]}
        else:
            picks = {}
        for j, i in picks.items():
            chosen[j], scores[j] = i, 0.8
            used.add(i)

    # chain fallback
    for j, name in enumerate(JOINT_NAMES):
        if name in chosen or j == 0:
            continue
        p = PARENTS[j]
        pname = JOINT_NAMES[p]
        if pname not in chosen:
            continue
        kids = [k for k, pp in enumerate(PARENTS) if pp == j]
        kid_bones = [chosen[JOINT_NAMES[k]] for k in kids if JOINT_NAMES[k] in chosen]
        cand = -1
        if len(kid_bones) == 1:
            between = tree.path_down(chosen[pname], kid_bones[0])[:-1]
            if len(between) == 1:
                cand = between[0]
        elif not kids:
            ch = [c for c in tree.children[chosen[pname]] if c not in used
                  and not any(t in _EXCLUDE for t in bn[c].tokens)]
            if len(ch) == 1:
                cand = ch[0]
        if cand >= 0 and cand not in used:
            chosen[name], scores[name] = cand, 0.6
            used.add(cand)

    mapping = {n: names[chosen[n]] for n in JOINT_NAMES if n in chosen}
    unmatched = [n for n in JOINT_NAMES if n not in chosen]
    confidence = sum(scores.get(n, 0.0) for n in JOINT_NAMES) / len(JOINT_NAMES)
    return MatchResult(mapping, unmatched, round(confidence, 4), {n: scores[n] for n in mapping})


def find_preset(names: Sequence[str], kind: str | None = "armature") -> str | None:
    """Id of a shipped rig preset whose bone names are all present in ``names``.

    Args:
        names: bone names of the skeleton.
        kind: only presets of this kind ("armature" or "bvh"); ``None`` for any.
    Returns:
        The preset id mapping the most joints among those that fit (ties: alphabetical), or
        ``None`` when no preset fits.
    """
    from .presets import list_presets, load_preset

    have = set(names)
    best, best_n = None, 0
    for pid in list_presets():
        preset = load_preset(pid)
        if kind is not None and preset.get("kind", "armature") != kind:
            continue
        bones = list(preset["bones"].values())
        if bones and all(b in have for b in bones) and len(bones) > best_n:
            best, best_n = pid, len(bones)
    return best
