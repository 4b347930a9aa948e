"""The Blender side of "Render textured preview": body-part label maps and the reference image of
the animator's rig, rendered from the scene camera without changing the animator's scene.

Everything is rendered in a **temporary scene** (:class:`PreviewRenderer`): the armature and the
scene camera are linked into it, the meshes the armature deforms are *copied* into it (object and
mesh data; the copies keep their modifiers, so they deform with the armature), and the copies get
the part colours.  The label pass is the training set's (rig/preview_render.py: Workbench, flat
light, a face-corner colour attribute, no anti-aliasing, 'Standard' view transform, transparent
film, decoded back to part ids exactly); the reference pass renders the copies with their own
materials in Cycles (16 samples, a fixed neutral sun + grey ambient light, a plain background).
Frames are chosen through the temporary scene's ``frame_current`` and rendered with the render
pipeline's own depsgraph, so the animator's scene keeps its frame, render settings, selection,
meshes and materials; pose bone values are put back in case an evaluation wrote to them.
Leaving the ``with`` block removes the temporary scene, the copies, the light and the world.

Images are ``(H, W, ...)`` uint8, rows top to bottom, sRGB.  Blender-side only: bpy and NumPy
(never torch).
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import bpy
import numpy as np
from mathutils import Vector

from ..backend.data.preview import PreviewDataError, decode_label_colors
from . import preview_render as pr

#: Plain background of the rendered reference image (sRGB, 0..1): a neutral light grey.
REFERENCE_BACKGROUND = (0.6, 0.6, 0.6)
#: Cycles samples of the rendered reference image.
REFERENCE_SAMPLES = 16


class PreviewLabelError(RuntimeError):
    """The label maps or the reference image cannot be made (the message names the problem)."""


def deformed_meshes(scene, arm) -> list:
    """Mesh objects of ``scene`` that ``arm`` deforms (Armature modifier or armature parent) or
    that hang from one of its bones, and that are not hidden from rendering."""
    out = []
    for obj in scene.objects:
        if obj.type != "MESH" or obj.hide_render:
            continue
        if obj.find_armature() == arm or (obj.parent == arm and obj.parent_type == "BONE"):
            out.append(obj)
    return out


def preview_size(scene, height: int) -> tuple[int, int]:
    """``(width, height)`` of the preview: ``height`` pixels high, the scene's render aspect
    (resolution and pixel aspect), the width rounded to a multiple of 4 (at least 4)."""
    r = scene.render
    aspect = (r.resolution_x * r.pixel_aspect_x) / max(r.resolution_y * r.pixel_aspect_y, 1e-9)
    return max(4, int(round(height * aspect / 4.0)) * 4), int(height)


def _srgb_from_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def load_reference_image(path: str, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file scaled to ``width`` x ``height`` (Blender's image loader and scaler; the
    image datablock is removed afterwards), alpha laid over :data:`REFERENCE_BACKGROUND`.

    Returns:
        ``(height, width, 3)`` uint8 sRGB, top row first, and the file's own ``(width, height)``.
    Raises:
        PreviewLabelError: no such file, or Blender cannot read it as an image.
    """
    p = Path(bpy.path.abspath(path)) if path else None
    name = p.name if p else "(none)"
    if p is None or not p.is_file():
        raise PreviewLabelError(f"Cannot read the reference image {name}: no such file")
    try:
        img = bpy.data.images.load(str(p), check_existing=False)
    except RuntimeError as exc:
        raise PreviewLabelError(f"Cannot read the reference image {name}: {exc}") from None
    try:
        if img.size[0] == 0 or img.size[1] == 0:
            raise PreviewLabelError(f"Cannot read the reference image {name}: not an image Blender can open")
        source = (int(img.size[0]), int(img.size[1]))
        if tuple(img.size) != (width, height):
            img.scale(width, height)
        px = np.empty(width * height * 4, dtype=np.float32)
        img.pixels.foreach_get(px)
        rgba = px.reshape(height, width, 4)[::-1].astype(np.float64)
        if img.is_float:  # float images hold linear values; byte images their sRGB bytes
            rgba[..., :3] = _srgb_from_linear(rgba[..., :3])
    finally:
        bpy.data.images.remove(img)
    a = np.clip(rgba[..., 3:], 0, 1)
    rgb = rgba[..., :3] * a + np.asarray(REFERENCE_BACKGROUND) * (1 - a)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8), source


def _pose_values(arm) -> dict:
    return {pb.name: (tuple(pb.location), tuple(pb.rotation_quaternion), tuple(pb.rotation_euler),
                      tuple(pb.rotation_axis_angle), tuple(pb.scale)) for pb in arm.pose.bones}


def _set_pose_values(arm, values: dict) -> None:
    for pb in arm.pose.bones:
        v = values.get(pb.name)
        if v is None:
            continue
        for attr, val in zip(("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale"), v):
            if tuple(getattr(pb, attr)) != val:
                setattr(pb, attr, val)


class PreviewRenderer:
    """Label maps and a reference image of ``arm``'s meshes seen from ``scene.camera``, rendered
    in a temporary scene (see the module docstring); use it as a context manager.

    Args:
        scene: the animator's scene (its camera and frame are read, nothing is changed).
        arm: the armature object; rigmap: its :class:`~.bridge.RigMap` (bones -> parts).
        meshes: the mesh objects to draw (:func:`deformed_meshes`).
        width, height: image size in pixels.
    Raises:
        PreviewLabelError: no scene camera, no meshes.
    """

    def __init__(self, scene, arm, rigmap, meshes: Sequence, width: int, height: int):
        if scene.camera is None:
            raise PreviewLabelError("Add a camera: the preview is rendered from the scene camera")
        if not meshes:
            raise PreviewLabelError(f"No mesh is deformed by '{arm.name}': the preview draws the rig's mesh")
        self.scene, self.arm, self.rigmap = scene, arm, rigmap
        self.meshes = list(meshes)
        self.width, self.height = int(width), int(height)
        self.tmp = None
        self._copies: list = []
        self._extra: list = []  # (collection, datablock) made for the reference pass
        self._dir: Path | None = None
        self._pose = None
        self._painted = False
        self._frame_n = 0

    # -- set-up and clean-up -------------------------------------------------------------------------
    def __enter__(self) -> "PreviewRenderer":
        self._pose = _pose_values(self.arm)
        self._had_render_result = "Render Result" in bpy.data.images
        try:
            self.tmp = bpy.data.scenes.new("PoseForge Preview (temporary)")
            coll = self.tmp.collection
            coll.objects.link(self.arm)
            cam = self.scene.camera
            coll.objects.link(cam)
            self.tmp.camera = cam
            for m in self.meshes:
                copy = m.copy()
                copy.data = m.data.copy()
                copy.hide_render = False
                coll.objects.link(copy)
                self._copies.append(copy)
            self._dir = Path(tempfile.mkdtemp(prefix="poseforge-labels-"))
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove everything made for the renders and put the pose values back (idempotent)."""
        for obj in self._copies:
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if data is not None and data.users == 0:
                bpy.data.meshes.remove(data)
        self._copies = []
        for kind, block in reversed(self._extra):
            try:
                getattr(bpy.data, kind).remove(block)
            except (ReferenceError, RuntimeError):
                pass
        self._extra = []
        if self.tmp is not None:
            bpy.data.scenes.remove(self.tmp)
            self.tmp = None
        if not getattr(self, "_had_render_result", True):  # made by these renders: not the animator's
            img = bpy.data.images.get("Render Result")
            if img is not None and img.type == "RENDER_RESULT":
                bpy.data.images.remove(img)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._pose is not None:
            _set_pose_values(self.arm, self._pose)
            self._pose = None

    # -- rendering ------------------------------------------------------------------------------------
    def _render(self, frame: int) -> np.ndarray:
        """Render ``frame`` of the temporary scene: ``(H, W, 4)`` uint8."""
        self.tmp.frame_current = int(frame)
        self._frame_n += 1
        with bpy.context.temp_override(scene=self.tmp):
            rgba = pr.render_rgba(self._dir / f"frame_{self._frame_n}.tga")
        (self._dir / f"frame_{self._frame_n}.tga").unlink(missing_ok=True)
        if rgba.shape[:2] != (self.height, self.width):
            raise PreviewLabelError(f"the render is {rgba.shape[1]}x{rgba.shape[0]}, expected {self.width}x{self.height}")
        return rgba

    def _size(self) -> None:
        r = self.tmp.render
        r.resolution_x, r.resolution_y = self.width, self.height

    def _label_pass(self) -> None:
        if not self._painted:
            for copy in self._copies:
                pr.paint_parts(copy, self.arm, self.rigmap)
            self._painted = True
        with bpy.context.temp_override(scene=self.tmp):
            pr.setup_label_pass(self.height)
        self._size()

    def render_labels(self, frames: Sequence[int], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Body-part label maps of ``frames`` (scene frames).

        Args:
            progress: called as ``progress(done, total)`` after each frame.
        Returns:
            ``(T, H, W)`` uint8 part ids, 0 = background, 1..K = ``PART_NAMES``.
        Raises:
            PreviewLabelError: a render whose colours are not the flat part colours.
        """
        self._label_pass()
        out = np.zeros((len(frames), self.height, self.width), dtype=np.uint8)
        for i, f in enumerate(frames):
            try:
                out[i] = decode_label_colors(self._render(f))
            except PreviewDataError as exc:
                raise PreviewLabelError(f"The label map of frame {f} cannot be decoded: {exc}") from None
            if progress is not None:
                progress(i + 1, len(frames))
        return out

    def render_reference(self, frame: int, samples: int = REFERENCE_SAMPLES) -> np.ndarray:
        """The rig's meshes with their own materials at ``frame``: Cycles (``samples`` samples,
        CPU), a neutral light from the camera's side, laid over :data:`REFERENCE_BACKGROUND`.

        Call it before :meth:`render_labels` (the label colours would show through materials that
        read the active colour attribute).

        Returns:
            ``(H, W, 3)`` uint8 sRGB.
        """
        with bpy.context.temp_override(scene=self.tmp):
            pr.setup_rgb_pass("cycles", self.height, samples)
        self._size()
        self._neutral_light()
        rgba = self._render(frame).astype(np.float64) / 255.0
        a = rgba[..., 3:]
        rgb = rgba[..., :3] * a + np.asarray(REFERENCE_BACKGROUND) * (1 - a)
        return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)

    def _neutral_light(self) -> None:
        """A sun from 35 deg to the camera's right and 45 deg up (strength 4) and a grey ambient
        world (0.8 grey, strength 0.6): the middle of the training set's random lights."""
        if any(kind == "lights" for kind, _ in self._extra):
            return
        cam = self.scene.camera
        back = Vector(cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0)))  # toward the camera
        back.z = 0.0
        if back.length < 1e-6:
            back = Vector((0.0, -1.0, 0.0))
        back.normalize()
        az = math.atan2(back.y, back.x) - math.radians(35)
        el = math.radians(45)
        d = Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))  # toward the sun
        data = bpy.data.lights.new("PoseForge Preview Sun", "SUN")
        self._extra.append(("lights", data))
        data.energy, data.angle = 4.0, math.radians(5)
        sun = bpy.data.objects.new("PoseForge Preview Sun", data)
        self._extra.append(("objects", sun))
        self.tmp.collection.objects.link(sun)
        sun.rotation_euler = (-d).to_track_quat("-Z", "Y").to_euler()
        world = bpy.data.worlds.new("PoseForge Preview World")
        self._extra.append(("worlds", world))
        if bpy.app.version < (5, 0, 0):
            world.use_nodes = True
        nt = world.node_tree
        bg = nt.nodes.get("Background")
        if bg is None:
            nt.nodes.clear()
            bg = nt.nodes.new("ShaderNodeBackground")
            out = nt.nodes.new("ShaderNodeOutputWorld")
            nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
        bg.inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
        bg.inputs["Strength"].default_value = 0.6
        self.tmp.world = world
