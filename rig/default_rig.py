"""The built-in default rig: the canonical body as a Blender armature with a skinned mesh.

Bones are named after the canonical joints (preset ``canonical``), heads at
:func:`skeleton.rest_joint_positions` converted to Blender axes (Z up, the body facing -Y), tails
toward the primary child (leaves: a short tail along the bone's direction), zero roll.  The mesh is
one capsule-like cylinder per bone plus a head sphere, each vertex weighted 1.0 to its bone,
deformed by an Armature modifier, with one material.  Everything is made by code.
"""
from __future__ import annotations

import bmesh
import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..backend.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, PRIMARY_CHILD, bone_directions, rest_joint_positions
from .bridge import C_BLENDER

#: Capsule radius per joint's bone, metres.
_RADIUS = {"pelvis": 0.11, "spine1": 0.12, "spine2": 0.13, "spine3": 0.14, "neck": 0.05,
           "head": 0.10, "collar": 0.045, "shoulder": 0.05, "elbow": 0.04, "wrist": 0.035,
           "hip": 0.075, "knee": 0.055, "ankle": 0.045, "foot": 0.04}
_LEAF_LENGTH = {"head": 0.20, "left_foot": 0.06, "right_foot": 0.06, "left_wrist": 0.16,
                "right_wrist": 0.16}


def _radius(joint: str) -> float:
    return _RADIUS[joint.replace("left_", "").replace("right_", "")]


def default_rest_heads() -> np.ndarray:
    """``(22, 3)`` bone head positions of the default rig in Blender axes (Z up), metres."""
    return rest_joint_positions() @ C_BLENDER  # rows: C^T p


def build_default_rig(collection=None, name: str = "PoseForge Body"):
    """Build the canonical body as an armature object with a skinned mesh child.

    Args:
        collection: collection to link into (default: the scene's collection).
        name: armature object name (the mesh is ``name + " Mesh"``).
    Returns:
        The armature object (rest pose = canonical T-pose, 1.7 m tall, feet near z = 0).
    """
    collection = collection or bpy.context.scene.collection
    heads = default_rest_heads()
    dirs = bone_directions() @ C_BLENDER
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    collection.objects.link(obj)

    # edit bones need edit mode on an active object
    view_layer = bpy.context.view_layer
    prev_active = view_layer.objects.active
    view_layer.objects.active = obj
    if bpy.context.object and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.object.mode_set(mode="EDIT")
    ebones = {}
    for j, joint in enumerate(JOINT_NAMES):
        eb = arm.edit_bones.new(joint)
        eb.head = Vector(heads[j])
        c = PRIMARY_CHILD[j]
        tail = heads[c] if c >= 0 else heads[j] + dirs[j] * _LEAF_LENGTH[joint]
        eb.tail = Vector(tail)
        eb.roll = 0.0
        ebones[joint] = eb
    for j, joint in enumerate(JOINT_NAMES):
        if PARENTS[j] >= 0:
            parent = ebones[JOINT_NAMES[PARENTS[j]]]
            ebones[joint].parent = parent
            ebones[joint].use_connect = PRIMARY_CHILD[PARENTS[j]] == j
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    view_layer.objects.active = prev_active if prev_active is not None else obj

    mesh_obj = _build_mesh(obj, heads, dirs, name + " Mesh", collection)
    mesh_obj.parent = obj
    return obj


def _build_mesh(arm_obj, heads: np.ndarray, dirs: np.ndarray, name: str, collection):
    me = bpy.data.meshes.new(name)
    mesh_obj = bpy.data.objects.new(name, me)
    collection.objects.link(mesh_obj)
    groups = {joint: mesh_obj.vertex_groups.new(name=joint) for joint in JOINT_NAMES}
    bm = bmesh.new()
    deform = bm.verts.layers.deform.verify()
    for j, joint in enumerate(JOINT_NAMES):
        bone = arm_obj.data.bones[joint]
        length = bone.length
        vector = bone.tail_local - bone.head_local  # armature space (Bone.vector is not)
        r = _radius(joint)
        before = set(bm.verts)
        if joint == "pelvis":
            # the hips block: across the hip joints, so the thighs hang from it
            lh, rh = arm_obj.data.bones["left_hip"].head_local, arm_obj.data.bones["right_hip"].head_local
            res = bmesh.ops.create_cone(bm, cap_ends=True, segments=12, radius1=r, radius2=r,
                                        depth=(lh - rh).length + r)
            align = Matrix.Rotation(np.pi / 2, 4, "Y")  # cone axis Z -> X (across the body)
            m = Matrix.Translation((lh + rh + bone.head_local) / 3) @ align
        elif joint == "head":
            res = bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=10, radius=r)
            m = Matrix.Translation(bone.head_local + vector * 0.5) @ Matrix.Diagonal((0.9, 1.0, 1.15, 1.0))
        else:
            res = bmesh.ops.create_cone(bm, cap_ends=True, segments=12, radius1=r, radius2=r * 0.85,
                                        depth=length)
            # cone axis is Z, centred on the origin: put it along the bone (bone Y axis)
            align = bone.matrix_local.to_3x3() @ Matrix.Rotation(-np.pi / 2, 3, "X")
            m = Matrix.Translation(bone.head_local + vector * 0.5) @ align.to_4x4()
        bmesh.ops.transform(bm, matrix=m, verts=res["verts"])
        gi = groups[joint].index
        for v in set(bm.verts) - before:
            v[deform][gi] = 1.0
    bm.to_mesh(me)
    bm.free()
    for poly in me.polygons:
        poly.use_smooth = True
    mat = bpy.data.materials.get("PoseForge Body") or bpy.data.materials.new("PoseForge Body")
    mat.diffuse_color = (0.62, 0.66, 0.72, 1.0)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # always on (and deprecated) from 5.0
    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = (0.62, 0.66, 0.72, 1.0)
        bsdf.inputs["Roughness"].default_value = 0.6
    me.materials.append(mat)
    mod = mesh_obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_obj
    return mesh_obj
