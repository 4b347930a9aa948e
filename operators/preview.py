"""Render Textured Preview: an mp4 of a reference character image moving with the animation
(DMM, arXiv 2307.07754), written by the backend's ``preview`` job (backend/tasks/preview.py).

What the operator does (``prepare``, on the main thread):

* the active armature (mapped to the canonical body through the rig bridge, as the other
  operators do) and the meshes it deforms (rig/preview_labels.py :func:`deformed_meshes`);
* the frame range (scene range, preview range when in use, or a custom range) and the size:
  ``height`` pixels (a multiple of 4) and the scene's render aspect;
* the body-part label map of every frame and the reference (the rig's mesh rendered once with
  Cycles at the reference frame, or an image file and the frame whose pose it shows), rendered
  from the scene camera in a temporary scene (the animator's scene is left exactly as it was);
* the arrays go to a ``.npz`` in a temporary folder (removed when the job ends, fails or is
  cancelled), and the job writes the ``.mp4`` at the scene's frame rate.

The .blend is not changed (no undo step).  Esc cancels: the job leaves no partial file.  On the
CPU a preview expected to take more than a minute is announced with an estimate (a warning in the
report and the status bar) and then rendered.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from ..rig.bridge import RigError
from ..rig.preview_labels import (REFERENCE_BACKGROUND, PreviewLabelError, PreviewRenderer, deformed_meshes,
                                  load_reference_image, preview_size)
from ._job import JobError, JobOperator, OperatorError, _status
from ._rig import active_armature, armature_rig_map

#: The extension's own folder: never written to.
EXTENSION_ROOT = Path(__file__).resolve().parents[1]
#: Seconds per frame of a 128 x 128 preview on the CPU (label render + network + encoding), with
#: margin: `poseforge bench preview` measured 0.037 s per frame for the network and the mp4 on 2
#: quiet cores, the label maps take 0.012 s per frame, and a busy machine is several times slower;
#: scales with the pixel count.
CPU_SECONDS_PER_FRAME_128 = 0.1
#: A CPU preview expected to take longer than this many seconds is announced with an estimate.
WARN_SECONDS = 60.0

#: Device the backend last reported for a preview ("cpu" / "cuda"), None before the first one.
_last_device: str | None = None


def preview_range(context) -> tuple[int, int, str]:
    """``(first, last, label)`` of the frames the preview shows.

    Raises:
        OperatorError: a range whose end is before its start.
    """
    scene = context.scene
    s = scene.poseforge_preview
    if s.range_mode == "CUSTOM":
        lo, hi, label = s.frame_start, s.frame_end, "custom range"
    elif scene.use_preview_range:
        lo, hi, label = scene.frame_preview_start, scene.frame_preview_end, "preview range"
    else:
        lo, hi, label = scene.frame_start, scene.frame_end, "scene range"
    if hi < lo:
        raise OperatorError(f"The {label} is empty: it ends (frame {hi}) before it starts (frame {lo})",
                            hint="Set the end frame at or after the start frame")
    return lo, hi, f"{label} {lo}-{hi}"


def output_path(context) -> Path:
    """The .mp4 to write: the Output setting (``//`` relative to the .blend), else
    ``<blend name>_preview.mp4`` next to the saved .blend; a folder gets that name inside it.

    Raises:
        OperatorError: unsaved .blend and no path, not an .mp4, a folder that does not exist, a
            path inside the extension folder.
    """
    s = context.scene.poseforge_preview
    blend = bpy.data.filepath
    default_name = (Path(blend).stem if blend else "preview") + "_preview.mp4"
    raw = s.output.strip()
    if not raw:
        if not blend:
            raise OperatorError("Save the .blend file or choose an output path",
                                hint="The preview goes next to the saved .blend by default")
        path = Path(blend).parent / default_name
    else:
        if raw.startswith("//") and not blend:
            raise OperatorError(f"The output path {raw} is relative to the .blend, which is not saved",
                                hint="Save the .blend file or choose an absolute output path")
        path = Path(bpy.path.abspath(raw)).expanduser()
        if raw.endswith(("/", "\\")) or path.is_dir():
            path = path / default_name
        elif path.suffix.lower() != ".mp4":
            if path.suffix:
                raise OperatorError(f"The output {path.name} is not an .mp4 file", hint="Name an .mp4 file")
            path = path.with_suffix(".mp4")
    path = path.resolve()
    if path == EXTENSION_ROOT or EXTENSION_ROOT in path.parents:
        raise OperatorError("The output path is inside the PoseForge extension folder",
                            hint="Choose a folder of your own (next to the .blend, for example)")
    if not path.parent.is_dir():
        raise OperatorError(f"The output folder {path.parent} does not exist",
                            hint="Create it or choose another output path")
    return path


def estimate_seconds(frames: int, width: int, height: int) -> float:
    """Expected seconds of a CPU preview: ``frames`` x :data:`CPU_SECONDS_PER_FRAME_128` x the
    pixel count relative to 128 x 128."""
    return frames * CPU_SECONDS_PER_FRAME_128 * (width * height) / 128.0 ** 2


def _on_cpu(device: str) -> bool:
    """Whether the preview is expected to run on the CPU: device CPU, or Automatic while the
    backend has not reported a GPU for an earlier preview."""
    if device == "cuda":
        return False
    if device == "cpu":
        return True
    return _last_device != "cuda"


class POSEFORGE_OT_render_preview(JobOperator, bpy.types.Operator):
    """Render an mp4 of the reference character moving with the animation of the frame range (DMM textured preview), seen from the scene camera"""

    bl_idname = "poseforge.render_preview"
    bl_label = "Render Textured Preview"
    bl_options = {"REGISTER"}  # nothing in the .blend changes: no undo step

    job_kind = "preview"
    job_label = "Render textured preview"
    user_errors = (OperatorError, JobError, RigError, PreviewLabelError)

    def prepare(self, context) -> dict:
        from ..preferences import backend_settings

        self._t0 = time.perf_counter()
        self._tmpdir = None
        scene = context.scene
        s = scene.poseforge_preview
        obj = active_armature(context)
        rigmap = armature_rig_map(obj)
        meshes = deformed_meshes(scene, obj)
        if not meshes:
            raise OperatorError(f"No mesh is deformed by '{obj.name}': the preview draws the rig's mesh",
                                hint="Parent the character's mesh to the armature (Armature modifier)")
        if scene.camera is None:
            raise OperatorError("Add a camera: the preview is rendered from the scene camera")
        lo, hi, label = preview_range(context)
        frames = list(range(lo, hi + 1))
        if s.height % 4:
            raise OperatorError(f"The height must be a multiple of 4 pixels, got {s.height}",
                                hint=f"Try {s.height - s.height % 4} or {s.height - s.height % 4 + 4}")
        width, height = preview_size(scene, s.height)
        out = output_path(context)
        settings = backend_settings(context)
        if _on_cpu(settings["device"]):
            est = estimate_seconds(len(frames), width, height)
            if est > WARN_SECONDS:
                text = (f"Textured preview of {len(frames)} frames at {width}x{height} on the CPU: about "
                        f"{est / 60:.0f} min (Esc cancels; a smaller height is faster)")
                self.report({"WARNING"}, text)
                _status(context, f"PoseForge: {text}")
        if s.reference == "IMAGE":
            ref_frame = s.reference_frame
            ref_rgb, (w0, h0) = load_reference_image(s.reference_image, width, height)
            if abs((w0 / h0) / (width / height) - 1.0) > 0.02:
                self.report({"WARNING"}, f"The reference image is {w0}x{h0} and the preview {width}x{height}: it is "
                                         "stretched to the scene's aspect (render it from the scene camera)")
        else:
            ref_frame = s.reference_frame if s.use_reference_frame else frames[0]
            ref_rgb = None
        wm = context.window_manager
        total = len(frames) + 1
        wm.progress_begin(0, total)
        try:
            with PreviewRenderer(scene, obj, rigmap, meshes, width, height) as r:
                if ref_rgb is None:
                    ref_rgb = r.render_reference(ref_frame)
                ref_labels = r.render_labels([ref_frame])[0]
                wm.progress_update(1)
                labels = r.render_labels(frames, progress=lambda i, n: wm.progress_update(1 + i))
        finally:
            wm.progress_end()
        if not (ref_labels > 0).any():
            raise OperatorError(f"'{obj.name}' is not in view of the camera '{scene.camera.name}' at the "
                                f"reference frame {ref_frame}", hint="Aim the camera at the character")
        if not (labels > 0).any():
            raise OperatorError(f"'{obj.name}' is not in view of the camera '{scene.camera.name}' in the {label}",
                                hint="Aim the camera at the character")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="poseforge-preview-"))
        inputs = self._tmpdir / "inputs.npz"
        arrays = {"ref_rgb": ref_rgb, "ref_labels": ref_labels, "labels": labels}
        if s.reference != "IMAGE":  # the rendered reference's background is known: a plain plate
            arrays["background"] = np.broadcast_to(
                np.rint(np.asarray(REFERENCE_BACKGROUND) * 255).astype(np.uint8), ref_rgb.shape).copy()
        np.savez(inputs, **arrays)
        self._out, self._frames = out, len(frames)
        return {"inputs": str(inputs), "out": str(out), "fps": scene.render.fps / scene.render.fps_base,
                "weights_dir": settings["weights_dir"], "device": settings["device"]}

    def apply(self, context, result: dict) -> str:
        global _last_device
        if result.get("device") in ("cpu", "cuda"):
            _last_device = result["device"]
        path = Path(result.get("path") or self._out)
        if not path.is_file():
            raise OperatorError(f"The backend reported {path.name} but no such file was written")
        seconds = time.perf_counter() - self._t0
        return f"Preview written to {path.name} ({int(result.get('frames', self._frames))} frames, {seconds:.1f} s)"

    # -- the temporary folder of the inputs goes when the job ends, whatever the outcome ------------------
    def _cleanup(self) -> None:
        tmp = getattr(self, "_tmpdir", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            self._tmpdir = None

    def _start(self, context):
        handle = super()._start(context)
        if isinstance(handle, set):
            self._cleanup()
        return handle

    def _finish(self, context, handle):
        try:
            return super()._finish(context, handle)
        finally:
            self._cleanup()

    def cancel(self, context):
        try:
            super().cancel(context)
        finally:
            self._cleanup()


CLASSES = (POSEFORGE_OT_render_preview,)
