"""The automatic pose captioner: posecodes on hand-built poses with known answers, captions that
vary with the seed and repeat with it, clear errors on bad input, and a real Bandai-2 frame."""
from __future__ import annotations

import re

import numpy as np
import pytest

from poseforge.backend.retarget import np_axis_angle_to_matrix, np_matrix_to_quat
from poseforge.backend.skeleton import JOINT_INDEX
from poseforge.backend.text import CaptionError, caption, captioner_phrases, posecodes
from poseforge.backend.text.captioner import CONTENT_PHRASES, PHRASES, STYLE_PHRASES, SUBJECTS

ALL = (30, 30)  # describe every active posecode


def pose(**degrees) -> np.ndarray:
    """(22, 4) quaternions: identity (T-pose) except the given joints' axis-angle in degrees."""
    q = np.zeros((22, 4))
    q[:, 0] = 1.0
    for name, aa in degrees.items():
        q[JOINT_INDEX[name]] = np_matrix_to_quat(np_axis_angle_to_matrix(np.radians(np.asarray(aa, float))))
    return q


ARMS_DOWN = dict(left_shoulder=[0, 0, -80], right_shoulder=[0, 0, 80])


def words(q, root=None) -> dict:
    return {k: w for k, (_, w) in posecodes(q, root)[0].items()}


def test_tpose_rest():
    w = words(pose())
    assert w["left_knee_bend"] == w["right_knee_bend"] == "straight"
    assert w["left_elbow_bend"] == w["right_elbow_bend"] == "straight"
    assert w["left_hand_height"] == w["right_hand_height"] == "shoulder height"
    assert w["left_arm_out"] == w["right_arm_out"] == "out"
    assert w["pelvis_height"] == "standing"
    assert w["lean_forward"] is None and w["lean_side"] is None and w["torso_tilt"] is None
    assert w["left_hand_cross"] is None and w["right_hand_cross"] is None
    assert w["left_hand_forward"] is None and w["left_hand_head"] is None
    caps = caption(pose(), rng=0, n=10, k_range=ALL)[0]
    assert all("above" not in c and "overhead" not in c for c in caps)
    assert any("arms out" in c or "arms are s" in c or "stretched out" in c for c in caps)


def test_arms_down_by_the_shoulders():
    w = words(pose(**ARMS_DOWN))
    assert w["left_hand_height"] == w["right_hand_height"] == "low"
    assert w["left_arm_out"] is None and w["hands_distance"] is None
    for c in caption(pose(**ARMS_DOWN), rng=1, n=10, k_range=ALL)[0]:
        assert "shoulder height" not in c and "above" not in c


def test_left_knee_bent_90_degrees_names_the_left_side_only():
    q = pose(left_knee=[90, 0, 0], **ARMS_DOWN)
    codes = posecodes(q)[0]
    assert codes["left_knee_bend"][1] == "bent" and 85 < codes["left_knee_bend"][0] < 100
    assert codes["right_knee_bend"][1] == "straight"
    assert codes["left_foot_height"][1] == "lifted" and codes["right_foot_height"][1] == "on the floor"
    caps = caption(q, rng=2, n=20, k_range=ALL)[0]
    for c in caps:
        low = c.lower()
        assert "left knee" in low or "left leg" in low
        assert not re.search(r"(both|the) knees are bent|right knee is bent|bends? (their|your) right knee", low)
        assert not re.search(r"(lifts?|raises?) (their|your) right (foot|knee)", low)


def test_left_hand_above_head_not_the_right():
    q = pose(left_shoulder=[0, 0, 80], right_shoulder=[0, 0, 80])
    w = words(q)
    assert w["left_hand_height"] == "above head"
    assert w["right_hand_height"] == "low"
    overhead = [t for key, temps in PHRASES.items() if key[:2] == ("hand_height", "above head") for t in temps]
    assert overhead
    for c in caption(q, rng=3, n=20)[0]:  # salient: kept even in short captions
        low = c.lower()
        assert re.search(r"left (hand|arm) (above|over|up)|left (hand|arm) is (above|raised|up)|"
                         r"left (hand|arm) is up high", low), c
        assert "both hands are above" not in low and "right hand above" not in low
        assert "right arm over" not in low and "right hand is above" not in low


def test_both_hands_above_head_are_aggregated():
    q = pose(left_shoulder=[0, 0, 80], right_shoulder=[0, 0, -80])
    w = words(q)
    assert w["left_hand_height"] == w["right_hand_height"] == "above head"
    for c in caption(q, rng=4, n=10)[0]:
        low = c.lower()
        assert "left hand" not in low and "right hand" not in low
        assert "both" in low or "hands" in low


def test_left_hand_reaching_across_the_body():
    q = pose(left_shoulder=[0, -130, 0], right_shoulder=[0, 0, 80])
    w = words(q)
    assert w["left_hand_cross"] == "across" and w["right_hand_cross"] is None
    assert w["left_hand_forward"] == "front"
    caps = caption(q, rng=6, n=10, k_range=ALL)[0]
    assert all("left hand" in c for c in caps)
    assert not any("right hand crosses" in c or "right hand across" in c for c in caps)


def test_squat_by_bending_hips_and_knees():
    q = pose(left_hip=[-100, 0, 0], right_hip=[-100, 0, 0], left_knee=[125, 0, 0], right_knee=[125, 0, 0],
             left_ankle=[-20, 0, 0], right_ankle=[-20, 0, 0], **ARMS_DOWN)
    w = words(q)
    assert w["pelvis_height"] == "squatting"
    assert w["left_knee_bend"] == w["right_knee_bend"] == "fully bent"
    for c in caption(q, rng=5, n=10)[0]:
        assert "squat" in c.lower()


def test_lying_on_the_back_and_jumping():
    w = words(pose(pelvis=[-90, 0, 0], **ARMS_DOWN))
    assert w["torso_tilt"] == "lying on the back" and w["pelvis_height"] is None
    # jumping needs a floor-referenced root: the pelvis 0.3 m above its standing height
    q = pose(**ARMS_DOWN)
    assert words(q, np.array([0.0, 0.93 + 0.3, 0.0]))["jump"] == "in the air"
    assert words(q, np.array([0.0, 0.93, 0.0]))["jump"] is None
    assert words(q)["jump"] is None  # no root: cannot tell
    assert all("jump" in c or "air" in c for c in caption(q, np.array([0.0, 1.25, 0.0]), rng=0, n=5)[0])


def test_left_and_right_survive_turning_the_body():
    q = pose(left_shoulder=[0, 0, 80], right_shoulder=[0, 0, 80], pelvis=[0, 120, 0])
    w = words(q)
    assert w["left_hand_height"] == "above head" and w["right_hand_height"] == "low"


def test_captions_vary_with_seed_and_repeat_with_it():
    q = np.stack([pose(left_knee=[90, 0, 0], left_shoulder=[0, 0, 80], right_shoulder=[0, 0, 80]),
                  pose(left_hip=[-100, 0, 0], right_hip=[-100, 0, 0], left_knee=[125, 0, 0],
                       right_knee=[125, 0, 0], **ARMS_DOWN)])
    a = caption(q, rng=7, n=5)
    assert a == caption(q, rng=np.random.default_rng(7), n=5)
    assert a != caption(q, rng=8, n=5)
    assert len(a) == 2 and all(len(x) == 5 for x in a)
    assert all(len(set(x)) >= 4 for x in a)  # five draws, (almost) all different


def test_imperative_and_motion_context():
    q = pose(left_shoulder=[0, 0, 80], right_shoulder=[0, 0, 80])
    imp = caption(q, rng=0, n=5, imperative_share=1.0)[0]
    assert all("your" in c and "their" not in c for c in imp)
    ctx = caption(q, rng=0, n=5, labels={"content": "walk", "style": "elderly"}, label_prob=1.0)[0]
    assert all(("walking" in c or "taking a step" in c) and "elderly" in c for c in ctx)
    none = caption(q, rng=0, n=5, imperative_share=0.0)[0]
    assert all("your" not in c and "walk" not in c for c in none)


def test_captioner_phrases_cover_what_it_says():
    phrases = captioner_phrases()
    assert "raise your left hand above your head" in phrases
    assert "both knees are bent" in phrases
    assert "put your left arm up in the air" not in phrases
    q = np.stack([pose(left_knee=[90, 0, 0], **ARMS_DOWN), pose(left_shoulder=[0, -130, 0], right_shoulder=[0, 0, 80])])
    for c in sum(caption(q, rng=0, n=10, labels={"content": "run", "style": "exhausted"}), []):
        parts = [p.strip().lower() for p in re.split(r"[.,]| and ", c) if p.strip()]
        for part in parts:  # every fragment is a known phrase, after an optional subject
            for subj in SUBJECTS:
                if part.startswith(subj.lower() + " "):
                    part = part[len(subj) + 1:]
                    break
            bare = re.sub(r"^(while|as if|like when|the pose comes from|is) ", "", part)
            context = {f"{g} {m}" for g in CONTENT_PHRASES["run"] for m in STYLE_PHRASES["exhausted"]}
            assert part in phrases or bare in phrases or bare in context, part


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((3, 21, 4)), "shape"),
    (np.zeros((22, 3)), "shape"),
    (np.full((22, 4), np.nan), "NaN"),
    (np.zeros((22, 4)), "zero quaternion"),
])
def test_bad_rotations_raise_caption_error(bad, msg):
    with pytest.raises(CaptionError, match=msg):
        posecodes(bad)
    with pytest.raises(CaptionError, match=msg):
        caption(bad)


def test_bad_root_labels_and_n():
    q = np.stack([pose(), pose()])
    with pytest.raises(CaptionError, match="root"):
        caption(q, np.zeros((3, 3)))
    with pytest.raises(CaptionError, match="NaN"):
        caption(q, np.full((2, 3), np.nan))
    with pytest.raises(CaptionError, match="labels"):
        caption(q, labels=[{"content": "walk"}])
    with pytest.raises(CaptionError, match="n must"):
        caption(q, n=0)


def test_bandai_raise_up_left_hand_mid_frame(bandai_dir):
    from poseforge.backend.data.mocap import load_canonical_motion
    m = load_canonical_motion(bandai_dir / "data" / "dataset-2_raise-up-left-hand_active_005.bvh")
    mid = m.num_frames // 2
    q, root = m.rotations[mid], m.root[mid]
    w = words(q, root)
    assert w["left_hand_height"] == "above head"
    assert w["right_hand_height"] != "above head"
    caps = caption(q, root, rng=0, n=10, labels={"content": "raise-up-left-hand", "style": "active"})[0]
    for c in caps:
        low = c.lower()
        assert re.search(r"left (hand|arm) (above|over|up)|left (hand|arm) is (above|raised|up)", low), c
        assert "both hands are above" not in low and "right hand above" not in low
