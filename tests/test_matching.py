"""Bone-name canonicalising and skeleton matching (backend/matching.py); no Blender needed."""
from __future__ import annotations

import pytest

from poseforge.backend.matching import canonicalise, find_preset, match_skeleton
from poseforge.backend.presets import load_preset
from poseforge.backend.skeleton import JOINT_NAMES, PARENTS

ARMATURE_PRESETS = ["canonical", "smplx", "mixamo", "rigify", "unreal", "mpfb", "quaternius", "kaykit"]


def _hierarchy_from_preset(bones: dict[str, str]) -> tuple[list[str], list[str | None]]:
    """Mapped bones parented along the canonical chain (nearest mapped ancestor)."""
    names, parents = [], []
    for j, joint in enumerate(JOINT_NAMES):
        if joint not in bones:
            continue
        p = PARENTS[j]
        while p >= 0 and JOINT_NAMES[p] not in bones:
            p = PARENTS[p]
        names.append(bones[joint])
        parents.append(bones[JOINT_NAMES[p]] if p >= 0 else None)
    return names, parents


def _add(names, parents, name, parent):
    names.append(name)
    parents.append(parent)


def _realistic(pid: str, bones: dict[str, str]) -> tuple[list[str], list[str | None]]:
    """The preset's hierarchy plus the helper bones real rigs of that family carry."""
    names, parents = _hierarchy_from_preset(bones)
    wrist_l, wrist_r = bones["left_wrist"], bones["right_wrist"]
    if pid == "mixamo":
        for s, w in (("Left", wrist_l), ("Right", wrist_r)):
            prev = w
            for k in (1, 2, 3, 4):
                _add(names, parents, f"mixamorig:{s}HandIndex{k}", prev)
                prev = f"mixamorig:{s}HandIndex{k}"
            _add(names, parents, f"mixamorig:{s}HandThumb1", w)
            _add(names, parents, f"mixamorig:{s}Toe_End", bones[f"{s.lower()}_foot"])
        _add(names, parents, "mixamorig:HeadTop_End", bones["head"])
    elif pid == "unreal":
        names.insert(0, "root")
        parents.insert(0, None)
        parents[names.index("pelvis")] = "root"
        for s in ("l", "r"):
            _add(names, parents, f"upperarm_twist_01_{s}", f"upperarm_{s}")
            _add(names, parents, f"thigh_twist_01_{s}", f"thigh_{s}")
            _add(names, parents, f"index_01_{s}", f"hand_{s}")
        _add(names, parents, "ik_foot_root", "root")
        _add(names, parents, "ik_foot_l", "ik_foot_root")
        _add(names, parents, "ik_hand_root", "root")
        _add(names, parents, "ik_hand_l", "ik_hand_root")
    elif pid == "rigify":
        i = names.index("DEF-spine.006")
        parents[i] = "DEF-spine.005"
        _add(names, parents, "DEF-spine.005", "DEF-spine.004")
        for s in ("L", "R"):
            _add(names, parents, f"DEF-upper_arm.{s}.001", f"DEF-upper_arm.{s}")
            parents[names.index(f"DEF-forearm.{s}")] = f"DEF-upper_arm.{s}.001"
            _add(names, parents, f"DEF-thigh.{s}.001", f"DEF-thigh.{s}")
            parents[names.index(f"DEF-shin.{s}")] = f"DEF-thigh.{s}.001"
            _add(names, parents, f"DEF-pelvis.{s}", "DEF-spine")
            _add(names, parents, f"DEF-breast.{s}", "DEF-spine.003")
            _add(names, parents, f"DEF-f_index.01.{s}", f"DEF-hand.{s}")
            _add(names, parents, f"DEF-thumb.01.{s}", f"DEF-hand.{s}")
    elif pid == "mpfb":
        for s in ("L", "R"):
            # twist halves and helpers between the mapped bones, as in the MPFB default rig
            _add(names, parents, f"shoulder01.{s}", f"clavicle.{s}")
            parents[names.index(f"upperarm01.{s}")] = f"shoulder01.{s}"
            _add(names, parents, f"upperarm02.{s}", f"upperarm01.{s}")
            parents[names.index(f"lowerarm01.{s}")] = f"upperarm02.{s}"
            _add(names, parents, f"lowerarm02.{s}", f"lowerarm01.{s}")
            parents[names.index(f"wrist.{s}")] = f"lowerarm02.{s}"
            _add(names, parents, f"pelvis.{s}", "root")
            parents[names.index(f"upperleg01.{s}")] = f"pelvis.{s}"
            _add(names, parents, f"upperleg02.{s}", f"upperleg01.{s}")
            parents[names.index(f"lowerleg01.{s}")] = f"upperleg02.{s}"
            for t in (2, 3, 4, 5):
                _add(names, parents, f"toe{t}-1.{s}", f"foot.{s}")
            _add(names, parents, f"finger1-1.{s}", f"wrist.{s}")
        # spine05 -> spine04 -> spine03 -> spine02 -> spine01, neck01 -> neck02 -> head
        parents[names.index("spine03")] = "spine04"
        _add(names, parents, "spine04", "spine05")
        parents[names.index("spine01")] = "spine02"
        _add(names, parents, "spine02", "spine03")
        parents[names.index("head")] = "neck02"
        _add(names, parents, "neck02", "neck01")
    elif pid == "quaternius":
        # the real HumanArmature: IK feet and poles hang from the root bone "Bone"
        names.insert(0, "Bone")
        parents.insert(0, None)
        parents[names.index("Body")] = "Bone"
        for s in ("L", "R"):
            parents[names.index(f"Foot.{s}")] = "Bone"
            _add(names, parents, f"PoleTarget.{s}", "Bone")
            _add(names, parents, f"MiddleHand.{s}", f"Palm.{s}")
            _add(names, parents, f"Fingers.{s}", f"MiddleHand.{s}")
            _add(names, parents, f"Thumb1.{s}", f"Palm.{s}")
    elif pid == "kaykit":
        names.insert(0, "root")
        parents.insert(0, None)
        parents[names.index("hips")] = "root"
        for s in ("l", "r"):
            _add(names, parents, f"hand.{s}", f"wrist.{s}")
    elif pid in ("smplx", "canonical"):
        for s in ("left", "right"):
            _add(names, parents, f"{s}_index1", f"{s}_wrist")
            _add(names, parents, f"{s}_eye_smplhf", "head")
        _add(names, parents, "jaw", "head")
    return names, parents


@pytest.mark.parametrize("pid", ARMATURE_PRESETS)
def test_each_preset_is_matched_back_from_its_names(pid):
    bones = load_preset(pid)["bones"]
    names, parents = _realistic(pid, bones)
    res = match_skeleton(names, parents)
    wrong = {j: (res.mapping.get(j), b) for j, b in bones.items() if res.mapping.get(j) != b}
    assert not wrong, f"{pid}: (matched, expected) {wrong}"
    assert set(res.unmatched) == set(JOINT_NAMES) - set(bones)
    found = find_preset(names)
    assert found is not None and load_preset(found)["bones"] == bones


def _generic(style: str) -> tuple[list[str], list[str | None], dict[str, str]]:
    """A humanoid named in one of several conventions; returns names, parents, expected map."""
    parts = {
        "blender": {"hip": "thigh.{S}", "knee": "shin.{S}", "ankle": "foot.{S}", "foot": "toe.{S}",
                    "collar": "shoulder.{S}", "shoulder": "upper_arm.{S}", "elbow": "forearm.{S}",
                    "wrist": "hand.{S}", "S": ("L", "R")},
        "game": {"hip": "upperleg_{S}", "knee": "lowerleg_{S}", "ankle": "foot_{S}", "foot": "toes_{S}",
                 "collar": "clavicle_{S}", "shoulder": "upperarm_{S}", "elbow": "lowerarm_{S}",
                 "wrist": "hand_{S}", "S": ("l", "r")},
        "camel": {"hip": "Character1_{S}UpLeg", "knee": "Character1_{S}Leg", "ankle": "Character1_{S}Foot",
                  "foot": "Character1_{S}ToeBase", "collar": "Character1_{S}Shoulder",
                  "shoulder": "Character1_{S}Arm", "elbow": "Character1_{S}ForeArm",
                  "wrist": "Character1_{S}Hand", "S": ("Left", "Right")},
        "bip": {"hip": "Bip01 {S} Thigh", "knee": "Bip01 {S} Calf", "ankle": "Bip01 {S} Foot",
                "foot": "Bip01 {S} Toe0", "collar": "Bip01 {S} Clavicle", "shoulder": "Bip01 {S} UpperArm",
                "elbow": "Bip01 {S} Forearm", "wrist": "Bip01 {S} Hand", "S": ("L", "R")},
    }[style]
    trunk = {"blender": ("hips", ["spine", "spine.001", "chest"], "neck", "head"),
             "game": ("pelvis", ["spine_01", "spine_02", "spine_03"], "neck_01", "head"),
             "camel": ("Character1_Hips", ["Character1_Spine", "Character1_Spine1", "Character1_Spine2"],
                       "Character1_Neck", "Character1_Head"),
             "bip": ("Bip01 Pelvis", ["Bip01 Spine", "Bip01 Spine1", "Bip01 Spine2"], "Bip01 Neck",
                     "Bip01 Head")}[style]
    pelvis, spine, neck, head = trunk
    expected = {"pelvis": pelvis, "spine1": spine[0], "spine2": spine[1], "spine3": spine[2],
                "neck": neck, "head": head}
    names, parents = [pelvis], [None]
    prev = pelvis
    for s in spine:
        _add(names, parents, s, prev)
        prev = s
    _add(names, parents, neck, spine[-1])
    _add(names, parents, head, neck)
    for side, tag in zip(("left", "right"), parts["S"]):
        prev = pelvis
        for part in ("hip", "knee", "ankle", "foot"):
            n = parts[part].replace("{S}", tag)
            _add(names, parents, n, prev)
            expected[f"{side}_{part}"] = prev = n
        prev = spine[-1]
        for part in ("collar", "shoulder", "elbow", "wrist"):
            n = parts[part].replace("{S}", tag)
            _add(names, parents, n, prev)
            expected[f"{side}_{part}"] = prev = n
    return names, parents, expected


@pytest.mark.parametrize("style", ["blender", "game", "camel", "bip"])
def test_renamed_skeletons_match_by_name_and_hierarchy(style):
    names, parents, expected = _generic(style)
    # shuffle the bone order: matching must not depend on it
    order = list(reversed(range(len(names))))
    res = match_skeleton([names[i] for i in order], [parents[i] for i in order])
    assert res.mapping == expected
    assert res.unmatched == []
    assert res.confidence > 0.8


def test_canonicalise_sides_prefixes_and_camel_case():
    cases = {
        "mixamorig:LeftUpLeg": ("left", "upleg"),
        "DEF-upper_arm.L.001": ("left", "upperarm"),
        "upperleg_r": ("right", "upperleg"),
        "thigh.L": ("left", "thigh"),
        "RightForeArm": ("right", "forearm"),
        "ORG-spine.003": (None, "spine"),
        "Bip01 R Calf": ("right", "calf"),
        "Hips": (None, "hips"),
        "L_Hand": ("left", "hand"),
    }
    for raw, (side, key) in cases.items():
        bn = canonicalise(raw)
        assert (bn.side, bn.key) == (side, key), raw


def test_unmatched_joint_is_named():
    names, parents, expected = _generic("blender")
    # an amputated left forearm: no hand below it
    i = names.index("hand.L")
    del names[i], parents[i]
    res = match_skeleton(names, parents)
    assert "left_wrist" in res.unmatched
    assert res.mapping.get("right_wrist") == "hand.R"
    assert res.missing_required == []


def test_non_humanoid_chain_reports_required_joints():
    res = match_skeleton(["Bone", "Bone.001", "Bone.002"], [None, "Bone", "Bone.001"])
    assert set(res.missing_required) == {"pelvis", "left_hip", "right_hip", "left_knee",
                                         "right_knee", "left_ankle", "right_ankle"}
    assert res.confidence < 0.2
    assert find_preset(["Bone", "Bone.001", "Bone.002"]) is None


def test_parents_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="parents"):
        match_skeleton(["a", "b"], [None])
