"""PoseForge properties: one PointerProperty per data type.

* ``Scene.poseforge_snap`` (:class:`POSEFORGE_PG_snap`, saved in the .blend): the options of
  "Snap to Plausible Pose" and "Find / Fix Implausible Keys".
* ``Object.poseforge_rig`` (:class:`POSEFORGE_PG_rig`, saved with the armature): which rig preset
  maps the armature onto the canonical body, the last automatic matching shown to the animator,
  and the joints the animator fixed by hand (overrides).  It belongs to the armature, not to the
  scene, because a scene can hold several characters of different rig families.
* ``Scene.poseforge_inbetween`` (:class:`POSEFORGE_PG_inbetween`, saved in the .blend): the options
  of "Fill Keyframe Gaps" (frame range, hypotheses, seed, feet planted).  The hypotheses waiting
  to be accepted live in memory only (operators/inbetween.py), never in the .blend.
* ``Scene.poseforge_generate`` (:class:`POSEFORGE_PG_generate`, saved in the .blend): the prompt,
  prompt preset, number of candidates and seed of "Generate Poses".
* ``Scene.poseforge_edit`` (:class:`POSEFORGE_PG_edit`, saved in the .blend): the instruction,
  candidates, seed and pinned bones of "Edit Pose", the strength of "Pose Variations", and the
  second pose of "Mix Poses" (another armature, or a pose stored as JSON) with the body parts taken
  from it.  Candidates waiting to be accepted live in memory only (operators/text2pose.py).
* ``Scene.poseforge_preview`` (:class:`POSEFORGE_PG_preview`, saved in the .blend): the options of
  "Render Textured Preview" (frame range, height, reference: the rig's mesh rendered once or an
  image file with the frame whose pose it shows, output .mp4 path).
* ``WindowManager.poseforge_job`` (:class:`POSEFORGE_PG_job`, never saved): the running job's
  progress and message, the last error, and the scored keys of "Find Implausible Keys".

Pinned bones (``pinned``): ``SELECTED`` pins the pose bones that are selected; ``LOCKED`` pins the
pose bones whose three rotation locks (Lock Rotation X, Y and Z in the Transform panel) are all
set; ``NONE`` pins nothing.  A pinned bone keeps its world-space position where the animator put
it while the rest of the body moves toward a plausible pose.
"""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)
from bpy.types import PropertyGroup

PINNED_ITEMS = [
    ("SELECTED", "Selected Bones", "Pin the selected pose bones: they stay where you put them"),
    ("LOCKED", "Locked Bones", "Pin the pose bones whose X, Y and Z rotation locks are all set"),
    ("NONE", "None", "Pin nothing: the whole body may move"),
]

SCOPE_ITEMS = [
    ("CURRENT_FRAME", "Current Frame", "Snap the pose at the current frame"),
    ("KEYS_IN_RANGE", "Keys in Range", "Snap every keyed frame of the action inside the scene frame range"),
]


def _preset_items() -> list[tuple[str, str, str]]:
    from .backend.presets import PresetError, list_presets, load_preset

    items = [("AUTO", "Automatic", "Try every shipped rig preset, then match bones by name and hierarchy")]
    for pid in list_presets():
        try:
            name = load_preset(pid).get("name", pid)
        except PresetError:
            continue
        items.append((pid, name, f"Bone names of the {name} rig family"))
    return items


#: Enum items of the rig preset choice (built once: Blender keeps references to the strings).
PRESET_ITEMS = _preset_items()

#: Set while an operator fills the joint list, so the update callback does not mark overrides.
_filling = False


class POSEFORGE_PG_snap(PropertyGroup):
    """Options of "Snap to Plausible Pose" and "Fix Implausible Keys" (``Scene.poseforge_snap``)."""

    strength: FloatProperty(
        name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
        description="How far the pose is pulled toward a plausible pose (0 keeps it, 1 trusts the prior most)")
    pinned: EnumProperty(name="Pinned", items=PINNED_ITEMS, default="SELECTED",
                         description="Bones that keep their world-space position")
    scope: EnumProperty(name="Frames", items=SCOPE_ITEMS, default="CURRENT_FRAME",
                        description="Which frames to snap")
    threshold: FloatProperty(
        name="Threshold", default=0.6, min=0.0, soft_max=10.0, precision=3,
        description="Keys whose implausibility score is above this are fixed (held-out mocap scores 0.35 "
                    "median, 0.6 at the 99th percentile under the shipped prior); lower fixes more keys")


INBETWEEN_RANGE_ITEMS = [
    ("SCENE", "Scene Range", "Every gap between keys inside the scene frame range (the preview range "
     "when it is in use)"),
    ("CUSTOM", "Custom Range", "Every gap between keys inside the start and end frames below"),
]


class POSEFORGE_PG_inbetween(PropertyGroup):
    """Options of "Fill Keyframe Gaps" (``Scene.poseforge_inbetween``)."""

    range_mode: EnumProperty(name="Frames", items=INBETWEEN_RANGE_ITEMS, default="SCENE",
                             description="Which frames to fill: the frames between keys inside this range")
    frame_start: IntProperty(name="Start", default=1, min=-1048574, max=1048574,
                             description="First frame of the custom range (keys before it are not looked at)")
    frame_end: IntProperty(name="End", default=250, min=-1048574, max=1048574,
                           description="Last frame of the custom range (keys after it are not looked at)")
    hypotheses: IntProperty(
        name="Hypotheses", default=4, min=1, max=8,
        description="How many different fills to compute; after the fill, Previous / Next show them in "
                    "turn and Accept keeps the one shown (1: one deterministic fill, nothing to choose)")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Random seed of the extra hypotheses: the same seed gives the same fills, "
                                  "another seed other variations")
    foot_contact: BoolProperty(
        name="Keep Feet Planted", default=True,
        description="Where a foot rests on the ground in the filled frames (slow and near the floor), lock "
                    "it in place with leg IK so it does not slide; keyed frames are never changed")


def _joint_bone_changed(self, context) -> None:
    if not _filling:
        self.override = bool(self.bone)


class POSEFORGE_PG_joint_bone(PropertyGroup):
    """One canonical joint and the bone it is mapped to."""

    joint: StringProperty(name="Joint", description="Canonical joint (SMPL order, e.g. left_knee)")
    bone: StringProperty(name="Bone", update=_joint_bone_changed,
                         description="Bone of this armature that plays the joint; set it to fix the matching by hand")
    override: BoolProperty(name="Set by Hand", default=False,
                           description="The animator chose this bone; automatic matching keeps it")


class POSEFORGE_PG_rig(PropertyGroup):
    """How an armature maps onto the canonical body (``Object.poseforge_rig``)."""

    preset: EnumProperty(name="Rig Preset", items=PRESET_ITEMS, default=0,
                         description="Bone-name map of the rig family; Automatic tries them all")
    joints: CollectionProperty(type=POSEFORGE_PG_joint_bone)
    matched_preset: StringProperty(name="Matched Preset", description="Preset or method of the last matching")
    unmatched: StringProperty(name="Unmatched Joints", description="Joints the last matching could not find")
    status: StringProperty(name="Status", description="Result of the last matching, one line")

    def overrides(self) -> dict[str, str]:
        """Joint -> bone name for the joints the animator set by hand."""
        return {item.joint: item.bone for item in self.joints if item.override and item.bone}


class POSEFORGE_PG_scored_key(PropertyGroup):
    frame: IntProperty(name="Frame")
    score: FloatProperty(name="Score", description="Implausibility under the DPoser prior (higher is worse)")


class POSEFORGE_PG_job(PropertyGroup):
    """Transient job state (``WindowManager.poseforge_job``); never saved in the .blend."""

    running: BoolProperty(name="Running", default=False)
    kind: StringProperty(name="Job")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(name="Message")
    last_error: StringProperty(name="Last Error")
    backend_status: StringProperty(name="Backend", description="Result of the last backend test")
    scored_object: StringProperty(name="Scored Armature")
    scored_keys: CollectionProperty(type=POSEFORGE_PG_scored_key)
    scored_count: IntProperty(name="Scored Keys")


def _prompt_presets() -> list[dict]:
    """The panel's prompt presets (presets/prompts/presets.json: ``[{"name", "prompt"}]``); an
    unreadable file gives no presets rather than breaking the add-on."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "presets" / "prompts" / "presets.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("name"), str)
            and isinstance(d.get("prompt"), str) and d["prompt"].strip()]


#: Prompt presets of the Generate panel, in file order.
PROMPT_PRESETS = _prompt_presets()
#: Enum items of the preset menu: "NONE" (the prompt typed by hand), then one per preset.
PROMPT_PRESET_ITEMS = [("NONE", "Presets", "Choose a preset to fill the prompt with it")] + [
    (f"P{i}", d["name"], d["prompt"]) for i, d in enumerate(PROMPT_PRESETS)]

#: Set while the preset callback fills the prompt (so the prompt callback keeps the preset shown).
_filling_prompt = False


def preset_prompt(identifier: str) -> str | None:
    """The prompt of a preset enum identifier ("P3"), or ``None`` for "NONE" / unknown."""
    if identifier.startswith("P") and identifier[1:].isdigit() and int(identifier[1:]) < len(PROMPT_PRESETS):
        return PROMPT_PRESETS[int(identifier[1:])]["prompt"]
    return None


def _preset_changed(self, context) -> None:
    global _filling_prompt
    prompt = preset_prompt(self.preset)
    if prompt is not None and self.prompt != prompt:
        _filling_prompt = True
        try:
            self.prompt = prompt
        finally:
            _filling_prompt = False


def _prompt_changed(self, context) -> None:
    if not _filling_prompt and self.preset != "NONE" and preset_prompt(self.preset) != self.prompt:
        self.preset = "NONE"  # typed by hand: the menu no longer names a preset


class POSEFORGE_PG_generate(PropertyGroup):
    """Options of "Generate Poses" (``Scene.poseforge_generate``)."""

    prompt: StringProperty(name="Prompt", update=_prompt_changed,
                           description="What the pose should do, in English (e.g. 'the left hand is raised "
                                       "above the head')")
    preset: EnumProperty(name="Preset", items=PROMPT_PRESET_ITEMS, default="NONE", update=_preset_changed,
                         description="Fill the prompt with a ready-made one")
    candidates: IntProperty(
        name="Candidates", default=4, min=1, max=16,
        description="How many different poses to make; Previous / Next show them on the armature in turn "
                    "and Accept keeps the one shown (1: the pose is set at once)")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Random seed: the same prompt and seed give the same candidates")


MIX_SOURCE_ITEMS = [
    ("ARMATURE", "Armature", "Take the second pose from another armature's current pose"),
    ("STORED", "Stored Pose", "Take the second pose from the pose stored with Store Pose"),
]


def _mix_armature_poll(self, obj) -> bool:
    """Armatures the Mix field offers: those a rig preset maps, or matched in the Rig panel."""
    if obj is None or obj.type != "ARMATURE":
        return False
    rig = getattr(obj, "poseforge_rig", None)
    if rig is not None and (rig.preset != "AUTO" or len(rig.joints)):
        return True
    from .backend.matching import find_preset

    return find_preset([b.name for b in obj.data.bones]) is not None


class POSEFORGE_PG_edit(PropertyGroup):
    """Options of "Edit Pose", "Pose Variations" and "Mix Poses" (``Scene.poseforge_edit``)."""

    instruction: StringProperty(name="Instruction",
                                description="How to change the current pose (e.g. 'raise the left arm', "
                                            "'bend the knees more'); only the body parts it names change")
    candidates: IntProperty(
        name="Candidates", default=4, min=1, max=16,
        description="How many different edits or variations to make; Previous / Next show them in turn "
                    "and Accept keeps the one shown (1: the pose is set at once)")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Random seed: the same pose, instruction and seed give the same candidates")
    pinned: EnumProperty(name="Pinned", items=PINNED_ITEMS, default="SELECTED",
                         description="Bones that keep their rotation, with the bones they hang from")
    strength: FloatProperty(
        name="Strength", default=0.3, min=0.05, max=1.0, subtype="FACTOR",
        description="Share of the bones a variation may change (0.05: one or two bones, 1: the whole body)")
    mix_source: EnumProperty(name="Second Pose", items=MIX_SOURCE_ITEMS, default="ARMATURE",
                             description="Where the body parts to mix in come from")
    mix_armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_mix_armature_poll,
                                  description="Armature whose current pose gives the body parts to mix in")
    stored_pose: StringProperty(name="Stored Pose",
                                description="A pose stored with Store Pose (canonical joint rotations, JSON)")
    mix_arms: BoolProperty(name="Arms", default=True, description="Take both arms from the second pose")
    mix_legs: BoolProperty(name="Legs", default=False, description="Take both legs from the second pose")
    mix_torso: BoolProperty(name="Torso", default=False, description="Take the spine from the second pose")
    mix_head: BoolProperty(name="Head", default=False, description="Take the neck and head from the second pose")

    def mix_parts(self) -> list[str]:
        """Body-part groups ticked for Mix (names of backend/text/parts.PART_GROUPS)."""
        return [p for p in ("arms", "legs", "torso", "head") if getattr(self, f"mix_{p}")]


PREVIEW_RANGE_ITEMS = [
    ("SCENE", "Scene Range", "Every frame of the scene frame range (the preview range when it is in use)"),
    ("CUSTOM", "Custom Range", "Every frame from the start to the end frame below"),
]

PREVIEW_REFERENCE_ITEMS = [
    ("RENDER", "Render the Rig", "Render the rig's own mesh once (Cycles, its materials, a neutral light) "
     "and use that image as the character to animate"),
    ("IMAGE", "Image File", "A picture of the character (a render or a drawing) in the pose of the rig "
     "at the reference frame, seen from the scene camera"),
]


#: String paths that may start with ``//`` (relative to the .blend): Blender 4.5+ warns unless told.
_BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()


class POSEFORGE_PG_preview(PropertyGroup):
    """Options of "Render Textured Preview" (``Scene.poseforge_preview``)."""

    range_mode: EnumProperty(name="Frames", items=PREVIEW_RANGE_ITEMS, default="SCENE",
                             description="Which frames the preview shows")
    frame_start: IntProperty(name="Start", default=1, min=-1048574, max=1048574,
                             description="First frame of the custom range")
    frame_end: IntProperty(name="End", default=250, min=-1048574, max=1048574,
                           description="Last frame of the custom range")
    height: IntProperty(
        name="Height", default=128, min=32, max=1024, step=4, subtype="PIXEL",
        description="Height of the video in pixels (a multiple of 4); the width follows the scene's "
                    "render aspect. The network was trained at 128: larger sizes are slower, not sharper")
    reference: EnumProperty(name="Reference", items=PREVIEW_REFERENCE_ITEMS, default="RENDER",
                            description="What the character looks like: the rig's own mesh rendered "
                                        "once, or an image file")
    reference_image: StringProperty(name="Image", subtype="FILE_PATH", default="", options=_BLEND_RELATIVE,
                                    description="Picture of the character in the pose of the reference "
                                                "frame, seen from the scene camera")
    use_reference_frame: BoolProperty(
        name="Reference Frame", default=False,
        description="Render the rig at a frame of your choice (off: the first frame of the range)")
    reference_frame: IntProperty(name="Frame", default=1, min=-1048574, max=1048574,
                                 description="Frame of the rig whose pose the reference shows")
    output: StringProperty(
        name="Output", subtype="FILE_PATH", default="", options=_BLEND_RELATIVE,
        description="The .mp4 to write (// is relative to the .blend); empty writes "
                    "<blend name>_preview.mp4 next to the saved .blend")


_CLASSES = (POSEFORGE_PG_snap, POSEFORGE_PG_joint_bone, POSEFORGE_PG_rig, POSEFORGE_PG_scored_key,
            POSEFORGE_PG_job, POSEFORGE_PG_inbetween, POSEFORGE_PG_generate, POSEFORGE_PG_edit,
            POSEFORGE_PG_preview)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.poseforge_snap = PointerProperty(type=POSEFORGE_PG_snap)
    bpy.types.Object.poseforge_rig = PointerProperty(type=POSEFORGE_PG_rig)
    bpy.types.WindowManager.poseforge_job = PointerProperty(type=POSEFORGE_PG_job)
    bpy.types.Scene.poseforge_inbetween = PointerProperty(type=POSEFORGE_PG_inbetween)
    bpy.types.Scene.poseforge_generate = PointerProperty(type=POSEFORGE_PG_generate)
    bpy.types.Scene.poseforge_edit = PointerProperty(type=POSEFORGE_PG_edit)
    bpy.types.Scene.poseforge_preview = PointerProperty(type=POSEFORGE_PG_preview)


def unregister() -> None:
    del bpy.types.Scene.poseforge_preview
    del bpy.types.Scene.poseforge_edit
    del bpy.types.Scene.poseforge_generate
    del bpy.types.Scene.poseforge_inbetween
    del bpy.types.WindowManager.poseforge_job
    del bpy.types.Object.poseforge_rig
    del bpy.types.Scene.poseforge_snap
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
