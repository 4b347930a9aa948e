"""Training data of "Render textured preview" made with Blender (``poseforge data preview-set``).

For each clip: a character (the built-in default body, or a Quaternius / KayKit character file)
is animated with a window of a canonical mocap clip through :func:`.bridge.write_pose`, given a
random procedural texture on every material (stripes, checker, noise and Voronoi colour maps,
text images drawn with NumPy, plain colours), a random sun and ambient light, a camera at a random
yaw, height, lens and distance that keeps the whole animation in frame (framed from the deformed
mesh at every frame), and a plain or gradient background.  Then it renders

- the ground-truth frames with Cycles (few samples, no denoising, a new noise seed every frame;
  EEVEE on request: it runs on the CPU through Mesa here and is several hundred times slower),
  rendered on a transparent film and laid over the background in NumPy,
- the body-part label maps with Workbench: every face coloured (a colour attribute) by the part
  of its vertices' dominant-weight bones, bones mapped to canonical joints through the rig map
  (bones outside the map count as their nearest mapped ancestor), flat light, no anti-aliasing,
  'Standard' view transform, no dither, transparent film, decoded back to ids exactly
  (backend/data/preview.py ``decode_label_colors``),
- a reference image and label map: same character, texture, light and camera, the pose of a
  mocap frame outside the window.

Held-out clips: a ``"test"`` clip takes its motion from the canonical cache's test split (Bandai-2
takes divisible by 5, ``dataset.split_of``) and its texture seed from the odd numbers, a train
clip from the train split and the even numbers, so no test motion or texture seed is ever seen in
training.  Files are written atomically (``.tmp`` then renamed); the index is rewritten after every
clip, so an interrupted run leaves a readable dataset of the clips done so far.

Blender-side only: bpy, mathutils, NumPy and the NumPy parts of the backend (never torch).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import bpy
import numpy as np
from mathutils import Euler, Vector

from ..backend.data.dataset import DatasetError
from ..backend.data.dataset import load_index as load_canonical_index
from ..backend.data.preview import (INDEX_NAME, JOINT_LABEL, NUM_PARTS, PART_COLORS, PREVIEW_VERSION,
                                    PreviewDataError, decode_label_colors)
from ..backend.retarget import np_quat_to_matrix
from ..backend.skeleton import JOINT_INDEX, JOINT_NAMES
from .bridge import RigError, RigMap, write_pose
from .default_rig import build_default_rig

REPO_ROOT = Path(__file__).resolve().parents[1]
CHARACTER_SUFFIXES = (".blend", ".gltf", ".glb", ".fbx")
PATTERNS = ("stripes", "checker", "noise", "voronoi", "text", "plain")
PART_ATTRIBUTE = "PoseForge Part"


class PreviewRenderError(RuntimeError):
    """The preview dataset cannot be made as asked (message names the file, clip or setting)."""


# --- characters ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Character:
    """A character to animate: ``path`` None means the built-in default body."""
    name: str
    path: Path | None = None


def shared_characters_dir() -> Path | None:
    """``$POSEFORGE_SHARED_DATA/characters``, else ``../shared/data/characters`` beside the checkout."""
    env = os.environ.get("POSEFORGE_SHARED_DATA")
    cand = (Path(env) if env else REPO_ROOT.parent / "shared" / "data") / "characters"
    return cand if cand.is_dir() else None


def _files_in(folder: Path) -> list[Path]:
    """Character files of a folder (recursive): .blend and .gltf, plus .glb / .fbx files whose stem
    has no .blend / .gltf twin.  KayKit's ``Med_*.glb`` animation libraries are left out."""
    files = [f for f in sorted(folder.rglob("*")) if f.suffix.lower() in CHARACTER_SUFFIXES]
    primary = {(f.parent, f.stem) for f in files if f.suffix.lower() in (".blend", ".gltf")}
    out = []
    for f in files:
        if f.suffix.lower() in (".glb", ".fbx") and ((f.parent, f.stem) in primary or f.stem.startswith("Med_")):
            continue
        out.append(f)
    return out


def find_characters(specs: Sequence[str] | None = None) -> list[Character]:
    """Resolve ``--character`` arguments.

    Args:
        specs: each ``"default"`` (the built-in body), a character file (.blend, .gltf, .glb,
            .fbx) or a folder of them; ``None``: the default body plus every character of
            :func:`shared_characters_dir` when it exists.
    Returns:
        The characters, named ``default`` or after the file stem.
    Raises:
        PreviewRenderError: a path that does not exist, a file of another type, a folder
            without characters.
    """
    if specs is None:
        specs = ["default"] + ([str(shared_characters_dir())] if shared_characters_dir() else [])
    out: list[Character] = []
    for spec in specs:
        if spec == "default":
            out.append(Character("default"))
            continue
        p = Path(spec).expanduser()
        if p.is_dir():
            files = _files_in(p)
            if not files:
                raise PreviewRenderError(f"no character files ({', '.join(CHARACTER_SUFFIXES)}) in {p}")
        elif p.is_file():
            if p.suffix.lower() not in CHARACTER_SUFFIXES:
                raise PreviewRenderError(f"'{p.name}' is not a character file (use {', '.join(CHARACTER_SUFFIXES)})")
            files = [p]
        else:
            raise PreviewRenderError(f"no character file or folder at {p}")
        out.extend(Character(f.stem, f) for f in files)
    names = [c.name for c in out]
    return [Character(c.name if names.count(c.name) == 1 else f"{c.name}_{i}", c.path) for i, c in enumerate(out)]


def load_character(ch: Character):
    """Start an empty scene holding only the character.

    Returns:
        ``(armature object, its RigMap, [deformed mesh objects])``, the armature in its rest pose
        with no action.
    Raises:
        PreviewRenderError: unreadable file, no humanoid armature, no mesh deformed by it.
    """
    if ch.path is None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        arm = build_default_rig()
        rm = RigMap.from_armature(arm)
    else:
        ext = ch.path.suffix.lower()
        try:
            if ext == ".blend":
                bpy.ops.wm.open_mainfile(filepath=str(ch.path))
            else:
                bpy.ops.wm.read_factory_settings(use_empty=True)
                if ext == ".fbx":
                    bpy.ops.import_scene.fbx(filepath=str(ch.path))
                else:
                    bpy.ops.import_scene.gltf(filepath=str(ch.path))
        except RuntimeError as exc:
            raise PreviewRenderError(f"cannot read character {ch.path.name}: {exc}") from exc
        arm, rm, errors = None, None, []
        for obj in bpy.context.scene.objects:
            if obj.type == "ARMATURE":
                try:
                    rm = RigMap.from_armature(obj)
                    arm = obj
                    break
                except RigError as exc:
                    errors.append(str(exc))
        if arm is None:
            raise PreviewRenderError(f"no humanoid armature in {ch.path.name}" + (f" ({'; '.join(errors)})" if errors else ""))
    scene = bpy.context.scene
    meshes = [o for o in scene.objects if o.type == "MESH" and o.find_armature() == arm]
    if not meshes:
        raise PreviewRenderError(f"character '{ch.name}': no mesh is deformed by armature '{arm.name}'")
    keep = {arm, *meshes}
    for obj in list(scene.objects):  # lights, cameras, floors, props: nothing unlabelled is drawn
        if obj not in keep and obj.type not in ("ARMATURE", "EMPTY"):
            bpy.data.objects.remove(obj, do_unlink=True)
    for obj in keep:
        obj.hide_render = False
        obj.hide_set(False)
    if arm.animation_data is not None:
        arm.animation_data.action = None
    for pb in arm.pose.bones:
        pb.matrix_basis.identity()
    for con in (c for pb in arm.pose.bones for c in pb.constraints if c.type in ("IK", "SPLINE_IK")):
        con.mute = True
    bpy.context.view_layer.update()
    return arm, rm, meshes


# --- body-part labels --------------------------------------------------------------------------------

def bone_labels(arm, rigmap: RigMap) -> dict[str, int]:
    """Part id (1..K) of every bone: the part of its canonical joint, or of its nearest mapped
    ancestor for bones outside the map (fingers, twist and helper bones); bones above the pelvis
    (rig roots) and unmapped chains count as the pelvis."""
    joint_of = {b: j for j, b in rigmap.bones.items()}
    out = {}
    for bone in arm.data.bones:
        b = bone
        while b is not None and b.name not in joint_of:
            b = b.parent
        joint = joint_of[b.name] if b is not None else "pelvis"
        out[bone.name] = int(JOINT_LABEL[JOINT_INDEX[joint]])
    return out


def _nearest_bone_label(arm, labels: dict[str, int], points: np.ndarray) -> np.ndarray:
    """Part id of the nearest bone segment (rest pose, world) for each point ``(N, 3)``."""
    Mw = arm.matrix_world
    heads = np.array([Mw @ b.head_local for b in arm.data.bones])
    tails = np.array([Mw @ b.tail_local for b in arm.data.bones])
    ids = np.array([labels[b.name] for b in arm.data.bones])
    d = tails - heads
    t = np.clip(((points[:, None] - heads[None]) * d[None]).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0, 1)
    dist = np.linalg.norm(points[:, None] - (heads[None] + t[..., None] * d[None]), axis=-1)
    return ids[dist.argmin(1)]


def face_labels(mesh_obj, arm, rigmap: RigMap) -> np.ndarray:
    """Part id (1..K) of every face of a skinned mesh.

    Each vertex takes the part of its dominant-weight bone (:func:`bone_labels`); vertices
    without bone weights take the part of the bone they are parented to, else of the nearest bone
    in the rest pose.  A face takes the part most of its vertices have (ties: the first), so every
    face is one flat colour and the label render has no blended colours.

    Returns:
        ``(n_faces,)`` uint8.
    """
    labels = bone_labels(arm, rigmap)
    me = mesh_obj.data
    group_label = {vg.index: labels.get(vg.name, 0) for vg in mesh_obj.vertex_groups}
    nv = len(me.vertices)
    vert = np.zeros(nv, dtype=np.int64)
    for v in me.vertices:
        best, w = 0, 0.0
        for g in v.groups:
            lab = group_label.get(g.group, 0)
            if lab and g.weight > w:
                best, w = lab, g.weight
        vert[v.index] = best
    missing = vert == 0
    if missing.any():
        if mesh_obj.parent == arm and mesh_obj.parent_type == "BONE" and mesh_obj.parent_bone in labels:
            vert[missing] = labels[mesh_obj.parent_bone]
        else:
            co = np.empty(nv * 3)
            me.vertices.foreach_get("co", co)
            co = co.reshape(-1, 3)[missing]
            Mw = np.array(mesh_obj.matrix_world)
            world = co @ Mw[:3, :3].T + Mw[:3, 3]
            vert[missing] = _nearest_bone_label(arm, labels, world)
    n_f = len(me.polygons)
    start = np.empty(n_f, dtype=np.int64)
    total = np.empty(n_f, dtype=np.int64)
    me.polygons.foreach_get("loop_start", start)
    me.polygons.foreach_get("loop_total", total)
    loop_vert = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vert)
    out = np.zeros(n_f, dtype=np.uint8)
    for f in range(n_f):
        labs = vert[loop_vert[start[f]:start[f] + total[f]]]
        counts = np.bincount(labs, minlength=NUM_PARTS + 1)
        top = counts.max()
        out[f] = next(int(x) for x in labs if counts[x] == top)
    return out


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def paint_parts(mesh_obj, arm, rigmap: RigMap) -> np.ndarray:
    """Store each face's part colour (:data:`PART_COLORS`) in a face-corner colour attribute made
    active for rendering (Workbench 'Attribute' colour).  Returns the face labels."""
    labs = face_labels(mesh_obj, arm, rigmap)
    me = mesh_obj.data
    old = me.color_attributes.get(PART_ATTRIBUTE)
    if old is not None:
        me.color_attributes.remove(old)
    attr = me.color_attributes.new(PART_ATTRIBUTE, "FLOAT_COLOR", "CORNER")
    start = np.empty(len(me.polygons), dtype=np.int64)
    total = np.empty(len(me.polygons), dtype=np.int64)
    me.polygons.foreach_get("loop_start", start)
    me.polygons.foreach_get("loop_total", total)
    loop_face = np.zeros(len(me.loops), dtype=np.int64)
    for f, (s, t) in enumerate(zip(start, total)):
        loop_face[s:s + t] = f
    lin = _srgb_to_linear(PART_COLORS.astype(np.float64) / 255.0)
    rgba = np.ones((len(me.loops), 4))
    rgba[:, :3] = lin[labs[loop_face]]
    attr.data.foreach_set("color", rgba.ravel().astype(np.float32))
    me.color_attributes.active_color = attr
    idx = list(me.color_attributes).index(attr)
    me.color_attributes.render_color_index = idx
    return labs


# --- textures -----------------------------------------------------------------------------------------

_FONT = {  # 3 x 5 glyphs, rows top to bottom
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "R": "110101110101101", "S": "011100010001110", "T": "111010010010010", "U": "101101101101111",
    "V": "101101101101010", "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010",
    "Z": "111001010100111", "0": "111101101101111", "1": "010110010010111", "2": "110001010100111",
    "3": "110001010001110", "4": "101101111001001", "5": "111100110001110", "6": "011100111101111",
    "7": "111001010010010", "8": "111101111101111", "9": "111101111001110",
}
_GLYPHS = {k: np.array([int(c) for c in v], dtype=bool).reshape(5, 3) for k, v in _FONT.items()}


def text_image(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, str]:
    """A texture of random capital letters and digits drawn with a 3x5 pixel font.

    Returns:
        ``(size, size, 4)`` float32 linear RGBA (rows bottom to top, Blender's order) and the text.
    """
    bg, fg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    if np.abs(bg - fg).max() < 0.4:
        fg = 1.0 - bg
    img = np.empty((size, size, 3))
    img[:] = bg
    cell = int(rng.integers(3, 7))  # pixels per font pixel
    gw, gh = 4 * cell, 6 * cell
    keys = sorted(_GLYPHS)
    letters = []
    for row in range(size // gh):
        for col in range(size // gw):
            ch = keys[int(rng.integers(len(keys)))] if rng.random() > 0.15 else " "
            letters.append(ch)
            if ch == " ":
                continue
            g = np.kron(_GLYPHS[ch], np.ones((cell, cell), dtype=bool))
            y, x = row * gh + cell // 2, col * gw + cell // 2
            img[y:y + 5 * cell, x:x + 3 * cell][g] = fg
        letters.append("\n")
    out = np.ones((size, size, 4), dtype=np.float32)
    out[..., :3] = _srgb_to_linear(img[::-1])
    return out, "".join(letters)


def _random_color(rng: np.random.Generator) -> list[float]:
    """A random linear RGB colour (hue uniform, saturation and value spread)."""
    import colorsys
    h, s, v = rng.uniform(), rng.uniform(0.1, 1.0), rng.uniform(0.15, 1.0)
    return [round(float(c), 4) for c in _srgb_to_linear(np.array(colorsys.hsv_to_rgb(h, s, v)))]


def _ramp(nodes, colors, interpolation: str):
    ramp = nodes.new("ShaderNodeValToRGB")
    cr = ramp.color_ramp
    cr.interpolation = interpolation
    n = len(colors)
    while len(cr.elements) < n:
        cr.elements.new(0.5)
    for i, (el, c) in enumerate(zip(cr.elements, colors)):
        el.position = i / n if interpolation == "CONSTANT" else i / max(n - 1, 1)
        el.color = (*c, 1.0)
    return ramp


def texture_material(mat, rng: np.random.Generator, pattern: str | None = None) -> dict:
    """Replace a material's shader with a random procedural texture on a Principled BSDF.

    Patterns (coordinates: the mesh's undeformed 'Generated' space, so textures stick to the
    skin while it deforms): ``stripes`` (wave bands, 2-3 colours), ``checker``, ``noise`` (a
    colour ramp over noise), ``voronoi`` (cell colours tinted), ``text`` (an image of letters made
    with :func:`text_image`, box-projected), ``plain``.

    Returns:
        The description stored in the index: pattern, colours (linear RGB), scale, roughness...
    """
    pattern = pattern or PATTERNS[int(rng.integers(len(PATTERNS)))]
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    rough = float(rng.uniform(0.3, 0.95))
    bsdf.inputs["Roughness"].default_value = rough
    bsdf.inputs["Metallic"].default_value = 0.0
    desc: dict = {"material": mat.name, "pattern": pattern, "roughness": round(rough, 3)}
    coord = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    rot = rng.uniform(-np.pi, np.pi, 3)
    mapping.inputs["Rotation"].default_value = Euler(tuple(rot))
    links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    vec = mapping.outputs["Vector"]
    colors = [_random_color(rng) for _ in range(int(rng.integers(2, 4)))]
    scale = float(rng.uniform(3.0, 14.0))
    if pattern == "stripes":
        tex = nodes.new("ShaderNodeTexWave")
        tex.wave_type = "BANDS"
        tex.bands_direction = ("X", "Y", "Z", "DIAGONAL")[int(rng.integers(4))]
        tex.wave_profile = "SAW"
        tex.inputs["Scale"].default_value = scale
        tex.inputs["Distortion"].default_value = float(rng.uniform(0, 3))
        links.new(vec, tex.inputs["Vector"])
        ramp = _ramp(nodes, colors, "CONSTANT")
        links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
        color = ramp.outputs["Color"]
        desc.update(direction=tex.bands_direction)
    elif pattern == "checker":
        colors = colors[:2]
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value = (*colors[0], 1.0)
        tex.inputs["Color2"].default_value = (*colors[1], 1.0)
        tex.inputs["Scale"].default_value = scale
        links.new(vec, tex.inputs["Vector"])
        color = tex.outputs["Color"]
    elif pattern == "noise":
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = scale * 0.6
        tex.inputs["Detail"].default_value = float(rng.uniform(0, 6))
        links.new(vec, tex.inputs["Vector"])
        ramp = _ramp(nodes, colors, "LINEAR")
        ramp.color_ramp.elements[0].position = 0.35
        ramp.color_ramp.elements[-1].position = 0.65
        links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
        color = ramp.outputs["Color"]
    elif pattern == "voronoi":
        tex = nodes.new("ShaderNodeTexVoronoi")
        tex.inputs["Scale"].default_value = scale
        links.new(vec, tex.inputs["Vector"])
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MULTIPLY"
        mix.inputs["Factor"].default_value = float(rng.uniform(0.3, 1.0))
        links.new(tex.outputs["Color"], mix.inputs["A"])
        mix.inputs["B"].default_value = (*colors[0], 1.0)
        color = mix.outputs["Result"]
        colors = colors[:1]
    elif pattern == "text":
        pixels, text = text_image(rng)
        img = bpy.data.images.new(f"PoseForge text {mat.name}", pixels.shape[1], pixels.shape[0], alpha=False)
        img.pixels.foreach_set(pixels.ravel())
        img.pack()
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = img
        tex.projection = "BOX"
        tex.projection_blend = 0.2
        tex.interpolation = "Closest"
        mapping.inputs["Scale"].default_value = (scale / 4,) * 3
        links.new(vec, tex.inputs["Vector"])
        color = tex.outputs["Color"]
        colors = []
        desc.update(text=text.replace("\n", "|")[:60])
    else:  # plain
        colors = colors[:1]
        bsdf.inputs["Base Color"].default_value = (*colors[0], 1.0)
        color = None
    if color is not None:
        links.new(color, bsdf.inputs["Base Color"])
    desc.update(colors=colors, scale=round(scale, 3), rotation=[round(float(r), 3) for r in rot])
    return desc


def texture_character(meshes, rng: np.random.Generator) -> list[dict]:
    """Give every material of the character's meshes a random texture (a material slot-less mesh
    gets a new material).  Returns the per-material descriptions."""
    mats = []
    for m in meshes:
        if not m.data.materials:
            m.data.materials.append(bpy.data.materials.new(f"PoseForge {m.name}"))
        for i, mat in enumerate(m.data.materials):
            if mat is None:
                mat = bpy.data.materials.new(f"PoseForge {m.name} {i}")
                m.data.materials[i] = mat
            if mat not in mats:
                mats.append(mat)
    return [texture_material(mat, rng) for mat in mats]


# --- light, camera, background -----------------------------------------------------------------------

def setup_light(rng: np.random.Generator) -> dict:
    """A sun at a random direction and strength plus a grey-tinted ambient world (Cycles/EEVEE)."""
    scene = bpy.context.scene
    az, el = float(rng.uniform(0, 360)), float(rng.uniform(20, 80))
    strength = float(rng.uniform(2.0, 6.0))
    tint = [float(x) for x in rng.uniform(0.85, 1.0, 3)]
    data = bpy.data.lights.new("PoseForge Sun", "SUN")
    data.energy = strength
    data.color = tint
    data.angle = np.deg2rad(float(rng.uniform(1, 15)))
    sun = bpy.data.objects.new("PoseForge Sun", data)
    scene.collection.objects.link(sun)
    d = Vector((np.cos(np.deg2rad(el)) * np.cos(np.deg2rad(az)), np.cos(np.deg2rad(el)) * np.sin(np.deg2rad(az)),
                np.sin(np.deg2rad(el))))  # toward the sun
    sun.rotation_euler = (-d).to_track_quat("-Z", "Y").to_euler()
    world = scene.world or bpy.data.worlds.new("PoseForge World")
    scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    ambient = float(rng.uniform(0.3, 1.0))
    world_color = [float(x) for x in rng.uniform(0.6, 1.0, 3)]
    bg = world.node_tree.nodes.get("Background") if world.node_tree else None
    if bg is None:
        nt = world.node_tree
        nt.nodes.clear()
        bg = nt.nodes.new("ShaderNodeBackground")
        out = nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    bg.inputs["Color"].default_value = (*world_color, 1.0)
    bg.inputs["Strength"].default_value = ambient
    world.color = world_color
    return {"azimuth": round(az, 2), "elevation": round(el, 2), "strength": round(strength, 3),
            "tint": [round(t, 3) for t in tint], "ambient": round(ambient, 3),
            "ambient_color": [round(c, 3) for c in world_color]}


def frame_camera(points: np.ndarray, rng: np.random.Generator) -> dict:
    """A perspective camera at a random yaw, height and lens that sees every point.

    The camera looks at the centre of the points' bounding box from a random yaw (0-360 deg
    about the vertical, 0 = in front of a character facing -Y) and elevation (-5..30 deg); its
    distance is the smallest that keeps every point inside the square frame, times a random
    margin (1.03-1.3).

    Args:
        points: ``(N, 3)`` world positions (Blender axes, Z up), e.g. the deformed mesh vertices
            at every frame of the clip.
    Returns:
        The camera description stored in the index (yaw, elevation, lens, distance, target).
    """
    scene = bpy.context.scene
    lo, hi = points.min(0), points.max(0)
    target = (lo + hi) / 2
    yaw, elev = float(rng.uniform(0, 360)), float(rng.uniform(-5, 30))
    lens = float(rng.uniform(35, 70))
    margin = float(rng.uniform(1.03, 1.3))
    y, e = np.deg2rad(yaw), np.deg2rad(elev)
    back = np.array([np.sin(y) * np.cos(e), -np.cos(y) * np.cos(e), np.sin(e)])  # target -> camera
    fwd = -back
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    tan_half = 18.0 / lens  # 36 mm sensor, square frame
    rel = points - target
    depth, x, yv = rel @ fwd, rel @ right, rel @ up
    need = np.maximum(np.abs(x), np.abs(yv)) * margin / tan_half - depth
    dist = float(max(need.max(), 0.3))
    cam_data = bpy.data.cameras.new("PoseForge Camera")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = lens, 36.0, "HORIZONTAL"
    cam_data.clip_start, cam_data.clip_end = 0.01, dist * 10 + 100
    cam = bpy.data.objects.new("PoseForge Camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = Vector(target + back * dist)
    cam.rotation_euler = Vector(fwd).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    return {"yaw": round(yaw, 2), "elevation": round(elev, 2), "lens_mm": round(lens, 2),
            "distance": round(dist, 3), "margin": round(margin, 3),
            "target": [round(float(t), 3) for t in target]}


def background_image(rng: np.random.Generator, res: int) -> tuple[np.ndarray, dict]:
    """A plain or linear-gradient background, ``(res, res, 3)`` float sRGB in [0, 1] (rows top to
    bottom), and its description (:func:`background_from_description` redraws it)."""
    kind = "plain" if rng.random() < 0.4 else "gradient"
    c0 = [round(float(c), 4) for c in rng.uniform(0, 1, 3)]
    desc = {"kind": kind, "colors": [c0]}
    if kind == "gradient":
        desc["colors"].append([round(float(c), 4) for c in rng.uniform(0, 1, 3)])
        desc["angle"] = round(float(rng.uniform(0, 360)), 2)
    return background_from_description(desc, res), desc


def background_from_description(desc: dict, res: int) -> np.ndarray:
    """The background of :func:`background_image` from its description (float sRGB, 0..1)."""
    c = np.array(desc["colors"], dtype=np.float64)
    if desc["kind"] == "plain":
        return np.broadcast_to(c[0], (res, res, 3)).copy()
    a = np.deg2rad(desc["angle"])
    yy, xx = np.mgrid[0:res, 0:res] / max(res - 1, 1) - 0.5
    t = np.clip((xx * np.cos(a) + yy * np.sin(a)) / np.sqrt(0.5) + 0.5, 0, 1)[..., None]
    return c[0] * (1 - t) + c[1] * t


# --- rendering -------------------------------------------------------------------------------------------

def read_tga(path: Path) -> np.ndarray:
    """An uncompressed 32-bit TGA (Blender's TARGA_RAW) as ``(H, W, 4)`` uint8 RGBA, top row first.

    Raises:
        PreviewRenderError: not an uncompressed 32-bit true-colour TGA.
    """
    b = Path(path).read_bytes()
    if len(b) < 18 or b[2] != 2 or b[16] != 32:
        raise PreviewRenderError(f"{Path(path).name}: not an uncompressed 32-bit TGA")
    w, h = int.from_bytes(b[12:14], "little"), int.from_bytes(b[14:16], "little")
    start = 18 + b[0] + (int.from_bytes(b[5:7], "little") * ((b[7] + 7) // 8) if b[1] else 0)
    a = np.frombuffer(b, np.uint8, count=w * h * 4, offset=start).reshape(h, w, 4)[..., [2, 1, 0, 3]]
    return a if b[17] & 0x20 else a[::-1].copy()


ENGINES = {"cycles": "CYCLES", "eevee": "BLENDER_EEVEE"}


def _engine_id(engine: str) -> str:
    if engine == "eevee" and (4, 2, 0) <= bpy.app.version < (5, 0, 0):
        return "BLENDER_EEVEE_NEXT"  # EEVEE's identifier in 4.2 - 4.5
    return ENGINES[engine]


def setup_rgb_pass(engine: str, resolution: int, samples: int) -> None:
    """Render settings of the ground-truth frames: Cycles (CPU, ``samples`` samples, no
    denoising, 4 bounces) or EEVEE, transparent film, 'Standard' view transform, no dither."""
    scene = bpy.context.scene
    scene.render.engine = _engine_id(engine)
    if engine == "cycles":
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.max_bounces = 4
        scene.cycles.diffuse_bounces = 2
        scene.cycles.glossy_bounces = 2
        scene.cycles.transmission_bounces = 2
        scene.cycles.transparent_max_bounces = 2
    else:
        scene.eevee.taa_render_samples = samples
    _common(scene, resolution)


def setup_label_pass(resolution: int) -> None:
    """Render settings of the label maps: Workbench, flat light, the part colour attribute, no
    anti-aliasing, cavity, shadows, outline or specular, 'Standard' view transform, no dither."""
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    sh = scene.display.shading
    sh.light = "FLAT"
    sh.color_type = "VERTEX"
    for flag in ("show_cavity", "show_shadows", "show_specular_highlight", "show_xray", "show_object_outline",
                 "show_backface_culling"):
        if hasattr(sh, flag):
            setattr(sh, flag, False)
    if hasattr(sh, "use_dof"):
        sh.use_dof = False
    scene.display.render_aa = "OFF"
    _common(scene, resolution)


def _common(scene, resolution: int) -> None:
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = True
    scene.render.dither_intensity = 0.0
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.render.image_settings.file_format = "TARGA_RAW"
    scene.render.image_settings.color_mode = "RGBA"


@contextlib.contextmanager
def _quiet_stdout():
    """Blender prints two lines per rendered frame on the process's stdout: hide them."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


def render_rgba(path: Path) -> np.ndarray:
    """Render the current frame of the scene camera; ``(R, R, 4)`` uint8, top row first."""
    bpy.context.scene.render.filepath = str(path)
    with _quiet_stdout():
        bpy.ops.render.render(write_still=True)
    return read_tga(path)


def _mesh_points(meshes, every: int = 1) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    pts = []
    for m in meshes:
        ev = m.evaluated_get(dg)
        me = ev.to_mesh()
        try:
            co = np.empty(len(me.vertices) * 3)
            me.vertices.foreach_get("co", co)
        finally:
            ev.to_mesh_clear()
        Mw = np.array(ev.matrix_world)
        co = co.reshape(-1, 3)[::every]
        pts.append(co @ Mw[:3, :3].T + Mw[:3, 3])
    return np.concatenate(pts)


def _poses(motion: dict, frames: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    rots = np_quat_to_matrix(motion["rotations"][list(frames)].astype(np.float64))
    root = motion["root"][list(frames)].astype(np.float64).copy()
    return rots, root


def render_clip(character: Character, motion: dict, frames: Sequence[int], ref_frame: int, resolution: int,
                texture_seed: int, view_seed: int, engine: str = "cycles", samples: int = 16,
                workdir: Path | None = None) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Render one clip: ground truth, label maps, reference image and label map.

    Args:
        character: who to animate; motion: ``{"rotations": (N, 22, 4) wxyz, "root": (N, 3)}``
            canonical at 30 fps (metres, Y up); frames: the mocap frames of the clip (T);
            ref_frame: the mocap frame of the reference pose (outside ``frames``; it is placed
            at the middle of the window's path, at its own height).
        resolution: square image size in pixels; texture_seed: seeds the textures;
            view_seed: seeds light, camera and background.
        engine: ``"cycles"`` or ``"eevee"``; samples: render samples per pixel.
    Returns:
        ``(arrays, description, timing)``: the npz arrays (backend/data/preview.py), the clip's
        texture / camera / light / background description, and seconds per frame of each pass.
    Raises:
        PreviewRenderError: unusable character, a label render that cannot be decoded.
    """
    arm, rm, meshes = load_character(character)
    for m in meshes:
        paint_parts(m, arm, rm)
    tex_rng, view_rng = np.random.default_rng(texture_seed), np.random.default_rng(view_seed)
    texture = {"seed": int(texture_seed), "materials": texture_character(meshes, tex_rng)}
    light = setup_light(view_rng)
    order = [ref_frame] + list(frames)
    rots, root = _poses(motion, order)
    # the window's path centred on the origin (canonical X, Z); the reference pose stands in the
    # middle of it, so a clip that travels far does not shrink the character in the frame
    root[:, [0, 2]] -= root[1:, [0, 2]].mean(0)
    root[0, [0, 2]] = 0.0
    pts = []
    for r, p in zip(rots, root):
        write_pose(arm, rm, r, p)
        pts.append(_mesh_points(meshes, every=max(1, sum(len(m.data.vertices) for m in meshes) // 3000)))
    camera = frame_camera(np.concatenate(pts), view_rng)
    bg, background = background_image(view_rng, resolution)
    tmp = Path(workdir or tempfile.mkdtemp(prefix="poseforge-preview-"))
    rgb, lab = [], []
    t0 = time.perf_counter()
    setup_rgb_pass(engine, resolution, samples)
    for i, (r, p) in enumerate(zip(rots, root)):
        write_pose(arm, rm, r, p)
        if engine == "cycles":  # fresh sampling noise every frame, as in a real render of a clip
            bpy.context.scene.cycles.seed = (view_seed + i) % 2**31
        rgba = render_rgba(tmp / f"rgb_{i}.tga").astype(np.float64) / 255.0
        a = rgba[..., 3:]
        rgb.append(np.clip(np.rint((rgba[..., :3] * a + bg * (1 - a)) * 255), 0, 255).astype(np.uint8))
    t1 = time.perf_counter()
    setup_label_pass(resolution)
    for i, (r, p) in enumerate(zip(rots, root)):
        write_pose(arm, rm, r, p)
        try:
            lab.append(decode_label_colors(render_rgba(tmp / f"lab_{i}.tga")))
        except PreviewDataError as exc:
            raise PreviewRenderError(f"character '{character.name}': {exc}") from exc
    t2 = time.perf_counter()
    for f in tmp.glob("*.tga"):
        f.unlink()
    arrays = {"rgb": np.stack(rgb[1:]), "labels": np.stack(lab[1:]), "ref_rgb": rgb[0], "ref_labels": lab[0]}
    desc = {"texture": texture, "camera": camera, "light": light, "background": background}
    n = len(order)
    return arrays, desc, {"rgb_s_per_frame": (t1 - t0) / n, "labels_s_per_frame": (t2 - t1) / n}


# --- the dataset -------------------------------------------------------------------------------------------

def _windows(n_frames: int, T: int, rng: np.random.Generator) -> tuple[list[int], int]:
    """A window of ``T`` frames and a reference frame outside it, as far from it as the clip allows
    (at least ``T // 2`` frames away when possible)."""
    s = int(rng.integers(0, n_frames - T + 1))
    outside = [f for f in range(n_frames) if f < s or f >= s + T]
    gap = [f for f in outside if min(abs(f - s), abs(f - (s + T - 1))) >= T // 2]
    pool = gap or outside
    return list(range(s, s + T)), int(pool[int(rng.integers(len(pool)))])


def _write_npz(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def _write_index(out: Path, index: dict) -> None:
    tmp = out / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    os.replace(tmp, out / INDEX_NAME)


def plan_clips(mocap_index: dict, n_clips: int, n_test: int, frames: int, seed: int) -> list[dict]:
    """Which mocap clip, window and seeds each generated clip uses.

    Train clips draw from the cache's train split, test clips from its test split, without
    replacement while there are enough clips (clips need more than ``frames`` frames: the
    reference pose is a frame outside the window).  Texture seeds: even numbers for train clips,
    odd numbers for test clips, so the two never share one.

    Raises:
        PreviewRenderError: a split has no clip long enough.
    """
    rng = np.random.default_rng([seed, 1])
    plan = []
    for split, n in (("train", n_clips - n_test), ("test", n_test)):
        if n <= 0:
            continue
        pool = sorted(c for c, info in mocap_index["clips"].items()
                      if info["split"] == split and int(info["frames"]) > frames)
        if not pool:
            raise PreviewRenderError(f"the mocap cache has no {split} clip longer than {frames} frames")
        order = list(rng.permutation(len(pool)))
        while len(order) < n:
            order += list(rng.permutation(len(pool)))
        for i in range(n):
            k = len(plan)
            plan.append({"split": split, "motion": pool[order[i]], "n": i,
                         "texture_seed": 2 * (seed * 1_000_003 + k) + (split == "test"),
                         "view_seed": int(np.random.SeedSequence([seed, k, 7]).generate_state(1)[0])})
    return plan


def generate(out: Path, mocap_dir: Path, characters: Sequence[Character], clips: int = 200, frames: int = 16,
             resolution: int = 128, seed: int = 0, engine: str = "cycles", samples: int = 16,
             test_fraction: float = 0.1, command: str = "",
             progress: Callable[[int, int, str, dict], None] | None = None) -> dict:
    """Make a preview dataset (see the module docstring and backend/data/preview.py).

    Args:
        out: dataset folder (created; must not be inside the PoseForge checkout).
        mocap_dir: canonical mocap cache (``poseforge data build``).
        characters: from :func:`find_characters`; clips go to them in turn.
        clips: number of clips; ``max(1, round(clips * test_fraction))`` of them are test clips
            when ``clips >= 2``.
        frames: frames per clip (T, at 30 fps); resolution: image size R; seed: everything random.
        engine: ``"cycles"`` or ``"eevee"``; samples: samples per pixel of the RGB pass.
        progress: called as ``progress(done, total, clip name, timing)`` after each clip.
    Returns:
        The index written to ``out/index.json``.
    Raises:
        PreviewRenderError: bad settings, an output folder inside the checkout, an unusable
            character; DatasetError: no canonical cache.
    """
    if clips < 1 or frames < 1:
        raise PreviewRenderError(f"need at least one clip of one frame (got {clips} clips of {frames} frames)")
    if not 8 <= resolution <= 4096:
        raise PreviewRenderError(f"resolution must be 8..4096 pixels, got {resolution}")
    if engine not in ENGINES:
        raise PreviewRenderError(f"unknown engine {engine!r} (cycles or eevee)")
    if not characters:
        raise PreviewRenderError("no characters to render")
    out = Path(out).expanduser().resolve()
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        raise PreviewRenderError(f"the output folder {out} is inside the PoseForge checkout: pick a cache folder")
    mocap_dir = Path(mocap_dir).expanduser()
    mocap_index = load_canonical_index(mocap_dir)
    if float(mocap_index.get("fps", 30)) != 30.0:
        raise PreviewRenderError(f"the mocap cache {mocap_dir} is at {mocap_index['fps']} fps; clips are made at 30 fps "
                                 "(rebuild it with `poseforge data build`)")
    n_test = 0 if clips < 2 else max(1, int(round(clips * test_fraction)))
    plan = plan_clips(mocap_index, clips, n_test, frames, seed)
    out.mkdir(parents=True, exist_ok=True)
    index = {"version": PREVIEW_VERSION, "resolution": int(resolution), "fps": 30, "parts": NUM_PARTS,
             "command": command, "engine": engine, "samples": int(samples), "seed": int(seed),
             "mocap": mocap_dir.name, "clips": []}
    timing = {"rgb_s_per_frame": [], "labels_s_per_frame": []}
    work = Path(tempfile.mkdtemp(prefix="poseforge-preview-"))
    try:
        per_split = {"train": 0, "test": 0}
        for k, p in enumerate(plan):
            ch = characters[per_split[p["split"]] % len(characters)]
            per_split[p["split"]] += 1
            info = mocap_index["clips"][p["motion"]]
            path = mocap_dir / info["file"]
            if not path.is_file():
                raise DatasetError(f"cache {mocap_dir} is incomplete: {path.name} is missing (rebuild it)")
            with np.load(path) as z:
                motion = {"rotations": z["rotations"], "root": z["root"]}
            win, ref = _windows(len(motion["rotations"]), frames, np.random.default_rng(p["view_seed"]))
            arrays, desc, t = render_clip(ch, motion, win, ref, resolution, p["texture_seed"], p["view_seed"],
                                          engine, samples, work)
            name = f"{p['split']}_{p['n']:04d}_{ch.name}"
            _write_npz(out / f"{name}.npz", arrays)
            index["clips"].append({"name": name, "character": ch.name, "motion": p["motion"], "frames": frames,
                                   "split": p["split"], "motion_frames": [win[0], win[-1] + 1], "ref_frame": ref,
                                   **desc})
            for key in timing:
                timing[key].append(t[key])
            index["render_seconds_per_frame"] = {key: round(float(np.mean(v)), 4) for key, v in timing.items()}
            _write_index(out, index)
            if progress:
                progress(k + 1, len(plan), name, t)
    finally:
        for f in work.glob("*"):
            f.unlink()
        work.rmdir()
    return index


def cli_main(args) -> int:
    """``poseforge data preview-set``: parse-free entry (arguments from backend/cli.py)."""
    from ..backend.cli import default_cache

    out = args.out if args.out is not None else default_cache() / "preview"
    mocap = args.mocap if args.mocap is not None else default_cache() / "canonical"
    cmd = (f"poseforge data preview-set --out {out} --clips {args.clips} --frames {args.frames} "
           f"--resolution {args.resolution} --seed {args.seed} --engine {args.engine} --samples {args.samples}")
    t0 = time.time()

    def progress(done: int, total: int, name: str, t: dict) -> None:
        print(f"  {done}/{total} {name}: rgb {t['rgb_s_per_frame']:.2f} s/frame, labels "
              f"{t['labels_s_per_frame']:.2f} s/frame ({time.time() - t0:.0f} s)", flush=True)

    try:
        characters = find_characters(args.character)
        index = generate(out, mocap, characters, clips=args.clips, frames=args.frames,
                         resolution=args.resolution, seed=args.seed, engine=args.engine, samples=args.samples,
                         test_fraction=args.test_fraction, command=cmd, progress=progress)
    except (PreviewRenderError, DatasetError, RigError) as exc:
        print(f"poseforge data preview-set: {exc}", file=sys.stderr)
        return 2
    n = {"train": 0, "test": 0}
    for c in index["clips"]:
        n[c["split"]] += 1
    sec = index["render_seconds_per_frame"]
    print(f"preview set {out}: {n['train']} train + {n['test']} test clips of {args.frames} frames at "
          f"{args.resolution}x{args.resolution}; rgb {sec['rgb_s_per_frame']:.3f} s/frame, labels "
          f"{sec['labels_s_per_frame']:.3f} s/frame; {time.time() - t0:.0f} s")
    return 0
