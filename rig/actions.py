"""One place that hides how Blender stores F-Curves in an Action.

* Blender 4.2 / 4.3: ``action.fcurves`` (a flat list, grouped by ``action.groups``).
* Blender 4.4 and later ("layered" / "slotted" actions): an Action has slots (one per animated
  data-block), layers, keyframe strips, and per slot a *channelbag* holding the F-Curves:
  ``action.layers[0].strips[0].channelbag(slot).fcurves``; ``action.fcurves`` was deprecated in
  4.4 and removed in 5.0.  The object's ``animation_data.action_slot`` says which slot it uses.

Everything here takes the armature object and works on the Action assigned to it, creating the
Action, slot, layer, strip and channelbag when asked to.  Frames are scene frames (floats allowed);
values are whatever the animated property holds (radians, metres in bone space, quaternion parts).
"""
from __future__ import annotations

import bpy

#: Blender from which Actions are layered (slots + channelbags).
LAYERED_ACTIONS = bpy.app.version >= (4, 4, 0)


def _bone_path(bone_name: str, prop: str) -> str:
    escaped = bone_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'pose.bones["{escaped}"].{prop}'


def bone_data_path(bone_name: str, prop: str) -> str:
    """F-Curve data path of a pose-bone property, e.g. ``pose.bones["Hips"].rotation_quaternion``."""
    return _bone_path(bone_name, prop)


def ensure_action(obj, name: str | None = None):
    """Action (and, on 4.4+, slot) animating ``obj``, created if the object has none.

    Args:
        obj: any animatable object (the armature object).
        name: name of a new Action (default ``"<object> Action"``).
    Returns:
        The ``bpy.types.Action`` assigned to ``obj.animation_data.action``; on 4.4+ the object
        also has an ``action_slot`` assigned afterwards.
    """
    anim = obj.animation_data or obj.animation_data_create()
    action = anim.action
    if action is None:
        action = bpy.data.actions.new(name or f"{obj.name} Action")
        anim.action = action
    if LAYERED_ACTIONS and anim.action_slot is None:
        slot = None
        for cand in action.slots:
            if cand.target_id_type in ("OBJECT", "UNSPECIFIED"):
                slot = cand
                break
        if slot is None:
            slot = action.slots.new(id_type="OBJECT", name=obj.name)
        anim.action_slot = slot
    return action


def _channelbag(obj, create: bool):
    """Channelbag of the object's assigned slot (4.4+), or ``None``."""
    anim = obj.animation_data
    if anim is None or anim.action is None or anim.action_slot is None:
        return None
    action, slot = anim.action, anim.action_slot
    if not create:
        for layer in action.layers:
            for strip in layer.strips:
                bag = strip.channelbag(slot)
                if bag is not None:
                    return bag
        return None
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def fcurve_owner(obj):
    """Where the object's F-Curves and F-Curve groups live, or ``None`` without an Action: the
    channelbag of its slot (Blender 4.4+ layered actions) or the Action itself (4.2, 4.3).
    Both have ``fcurves`` and ``groups`` collections with ``new`` / ``remove``."""
    if LAYERED_ACTIONS:
        return _channelbag(obj, create=False)
    anim = obj.animation_data
    return anim.action if anim is not None else None


def fcurves(obj) -> list:
    """All F-Curves animating ``obj`` through its Action (empty list when it has none)."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return []
    if LAYERED_ACTIONS:
        bag = _channelbag(obj, create=False)
        return list(bag.fcurves) if bag is not None else []
    return list(anim.action.fcurves)


def find_fcurve(obj, data_path: str, index: int = 0):
    """The F-Curve for ``data_path[index]`` on ``obj``'s Action, or ``None``."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return None
    if LAYERED_ACTIONS:
        bag = _channelbag(obj, create=False)
        return bag.fcurves.find(data_path, index=index) if bag is not None else None
    return anim.action.fcurves.find(data_path, index=index)


def ensure_fcurve(obj, data_path: str, index: int = 0, group: str | None = None):
    """The F-Curve for ``data_path[index]``, created (with its Action/slot) if missing.

    Args:
        obj: the animated object.
        data_path: RNA path relative to ``obj`` (see :func:`bone_data_path`).
        index: array index (0..3 for a quaternion).
        group: F-Curve group name for a new curve (the bone name for pose-bone channels).
    """
    action = ensure_action(obj)
    if LAYERED_ACTIONS:
        bag = _channelbag(obj, create=True)
        fc = bag.fcurves.find(data_path, index=index)
        if fc is None:
            fc = bag.fcurves.new(data_path, index=index)
            if group:
                grp = bag.groups.get(group) or bag.groups.new(group)
                fc.group = grp
        return fc
    fc = action.fcurves.find(data_path, index=index)
    if fc is None:
        if group:
            fc = action.fcurves.new(data_path, index=index, action_group=group)
        else:
            fc = action.fcurves.new(data_path, index=index)
    return fc


def insert_keyframe(obj, data_path: str, index: int, frame: float, value: float,
                    group: str | None = None) -> None:
    """Key ``value`` on ``data_path[index]`` at ``frame`` (replacing a key already there)."""
    fc = ensure_fcurve(obj, data_path, index, group)
    fc.keyframe_points.insert(frame, value, options={"FAST"})
    fc.update()


def key_pose_bone(obj, bone_name: str, props, frame: float) -> None:
    """Key the current values of pose-bone properties at ``frame``.

    Args:
        obj: the armature object.
        bone_name: pose-bone name (also the F-Curve group).
        props: property names, e.g. ``("rotation_quaternion", "location")``.
        frame: scene frame.
    """
    pb = obj.pose.bones[bone_name]
    for prop in props:
        value = getattr(pb, prop)
        path = bone_data_path(bone_name, prop)
        for i, v in enumerate(value):
            insert_keyframe(obj, path, i, frame, float(v), group=bone_name)


def bone_fcurves(obj, bone_name: str) -> list:
    """F-Curves of one pose bone (any property)."""
    prefix = bone_data_path(bone_name, "")
    return [fc for fc in fcurves(obj) if fc.data_path.startswith(prefix)]


def keyed_frames(obj, bone_name: str | None = None) -> list[float]:
    """Sorted frames that carry a key on a bone (or on any channel when ``bone_name`` is None)."""
    curves = fcurves(obj) if bone_name is None else bone_fcurves(obj, bone_name)
    frames = {round(kp.co[0], 4) for fc in curves for kp in fc.keyframe_points}
    return sorted(frames)


def remove_keys(obj, frame_start: float, frame_end: float, bone_name: str | None = None) -> int:
    """Delete keys with ``frame_start <= frame <= frame_end`` (one bone, or all channels).

    Returns:
        Number of keyframe points removed.
    """
    curves = fcurves(obj) if bone_name is None else bone_fcurves(obj, bone_name)
    removed = 0
    for fc in curves:
        points = fc.keyframe_points
        for i in range(len(points) - 1, -1, -1):
            if frame_start - 1e-6 <= points[i].co[0] <= frame_end + 1e-6:
                points.remove(points[i], fast=True)
                removed += 1
        fc.update()
    return removed
