"""The shared job runner of the PoseForge operators.

An operator that runs a backend job derives from :class:`JobOperator` and writes two methods:
``prepare(context) -> request`` (read Blender data into plain data; raise :class:`OperatorError`
or the bridge's ``RigError`` for bad input) and ``apply(context, result)`` (write the result to
Blender data).  The runner

* gets the backend the preferences ask for (one cached object, replaced when they change);
* runs the job **modally** in the UI: a window-manager timer polls the job's
  :class:`~..backend.transport.JobHandle`, progress goes to ``WindowManager.poseforge_job`` (the
  panel's progress bar), the cursor progress and the status bar; Esc or right-click cancels;
* runs it **blocking** when ``bpy.app.background`` is set (tests, the headless demo) or when the
  operator is called through ``execute`` (scripts);
* calls ``apply`` on the main thread only after the job succeeded, so the whole result lands in
  the single undo step of the operator (``bl_options = {'REGISTER', 'UNDO'}``); a cancelled or
  failed job changes nothing and ends with ``self.report({'ERROR'}, message)`` (plus the hint),
  which Blender shows in the status bar and which ``bpy.ops`` raises as ``RuntimeError``.
"""
from __future__ import annotations

import importlib.util

import bpy

from ..backend.service import JobError
from ..backend.transport import make_backend

_backend = None
_backend_key = None
#: The job of the PoseForge operator running modally now (one at a time), or ``None``.
_active = None


class OperatorError(Exception):
    """Bad input an animator can fix (no armature selected, empty frame range, ...)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def _message(exc: Exception) -> tuple[str, str | None]:
    """(message, hint) of an exception for the status bar."""
    return getattr(exc, "message", None) or str(exc), getattr(exc, "hint", None)


def torch_in_blender() -> bool:
    """Whether Blender's own Python can import torch (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def resolve_backend_kind(settings: dict) -> str:
    """``"in-process"`` or ``"child-process"`` for the preference values in ``settings``."""
    kind = settings["kind"]
    if kind == "IN_PROCESS":
        return "in-process"
    if kind == "CHILD_PROCESS":
        return "child-process"
    return "in-process" if torch_in_blender() else "child-process"


def get_backend(context=None):
    """The backend object for the current preferences (created on first use, then cached).

    Raises:
        JobError: no interpreter set for a child process, or it cannot be started.
    """
    global _backend, _backend_key
    from ..preferences import backend_settings

    settings = backend_settings(context)
    kind = resolve_backend_kind(settings)
    if kind == "in-process" and not torch_in_blender():
        raise JobError("torch cannot be imported in Blender's Python",
                       hint="Choose the child-process backend and a Python with torch in the PoseForge preferences")
    if kind == "child-process" and not settings["python"]:
        raise JobError("torch is not installed in Blender's Python and no backend Python is set",
                       hint="Set a Python interpreter with torch in the PoseForge preferences")
    key = (kind, settings["python"], settings["device"])
    proc = getattr(_backend, "proc", None)
    if _backend is not None and (key != _backend_key or (proc is not None and proc.poll() is not None)):
        invalidate_backend()
    if _backend is None:
        _backend = make_backend(kind, python=settings["python"] or None, device=settings["device"])
        _backend_key = key
    return _backend


def invalidate_backend() -> None:
    """Close the cached backend (a child process is shut down); the next job starts a new one."""
    global _backend, _backend_key
    if _backend is not None and (_active is None or _active.done):
        try:
            _backend.close()
        except Exception:  # closing a dead process must never break Blender
            pass
    _backend, _backend_key = None, None


def job_running() -> bool:
    """Whether a PoseForge job runs modally now."""
    return _active is not None and not _active.done


def _tag_redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def _status(context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None and not bpy.app.background:
        workspace.status_text_set(text)


class JobOperator:
    """Mixin for ``bpy.types.Operator`` subclasses that run one backend job (see module doc).

    Subclasses set ``job_kind`` and ``job_label`` and implement ``prepare`` and ``apply``;
    ``apply`` returns an optional info message for the status bar.
    """

    job_kind: str = ""
    job_label: str = ""
    #: Exceptions turned into an error report (the rig bridge's RigError is added by subclasses).
    user_errors: tuple = (OperatorError, JobError)

    # -- to implement -------------------------------------------------------------------------
    def prepare(self, context) -> dict:
        raise NotImplementedError

    def apply(self, context, result: dict) -> str | None:
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------------
    @classmethod
    def poll(cls, context) -> bool:
        if job_running():
            cls.poll_message_set("A PoseForge job is running (Esc cancels it)")
            return False
        return True

    def _fail(self, context, message: str, hint: str | None = None) -> set[str]:
        text = f"{message}. {hint}" if hint else message
        job = context.window_manager.poseforge_job
        job.last_error = text
        job.message = ""
        self.report({"ERROR"}, text)
        return {"CANCELLED"}

    def _start(self, context):
        """prepare() + submit; returns the handle or a set (the operator's return value)."""
        try:
            request = self.prepare(context)
        except self.user_errors as exc:
            return self._fail(context, *_message(exc))
        try:
            backend = get_backend(context)
            handle = backend.submit(self.job_kind, request)
        except JobError as exc:
            return self._fail(context, exc.message, exc.hint)
        job = context.window_manager.poseforge_job
        job.kind, job.progress, job.message, job.last_error = self.job_label, 0.0, "Starting", ""
        return handle

    def _finish(self, context, handle) -> set[str]:
        job = context.window_manager.poseforge_job
        job.running = False
        job.progress = 0.0
        if handle.cancelled:
            job.message = ""
            self.report({"WARNING"}, f"{self.job_label}: cancelled, nothing changed")
            return {"CANCELLED"}
        if handle.error is not None:
            return self._fail(context, handle.error.message, handle.error.hint)
        try:
            info = self.apply(context, handle.result or {})
        except self.user_errors as exc:
            return self._fail(context, *_message(exc))
        job.message = ""
        if info:
            self.report({"INFO"}, info)
        return {"FINISHED"}

    def execute(self, context):
        """Blocking run: background mode, scripts, redo panel."""
        handle = self._start(context)
        if isinstance(handle, set):
            return handle
        try:
            handle.wait()
        except JobError:
            pass  # the handle carries the error / cancel state; _finish reports it
        return self._finish(context, handle)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        global _active
        handle = self._start(context)
        if isinstance(handle, set):
            return handle
        _active = handle
        self._handle = handle
        wm = context.window_manager
        wm.poseforge_job.running = True
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0.0, 1.0)
        wm.modal_handler_add(self)
        _status(context, f"PoseForge: {self.job_label}... (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        handle = self._handle
        if event.type in {"ESC", "RIGHTMOUSE"} and event.value == "PRESS" and not handle.done:
            handle.cancel()
            context.window_manager.poseforge_job.message = "Cancelling..."
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        handle.poll()
        wm = context.window_manager
        job = wm.poseforge_job
        job.progress = handle.fraction
        if handle.message:
            job.message = handle.message
        wm.progress_update(handle.fraction)
        _status(context, f"PoseForge: {self.job_label} {handle.fraction:.0%} {handle.message} (Esc to cancel)")
        _tag_redraw(context)
        if not handle.done:
            return {"RUNNING_MODAL"}
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _status(context, None)
        try:
            return self._finish(context, handle)
        finally:
            _tag_redraw(context)

    def cancel(self, context):
        """Blender ends the operator (file load, window closed): stop the job, change nothing."""
        global _active
        handle = getattr(self, "_handle", None)
        if handle is not None and not handle.done:
            handle.cancel()
        if _active is handle:  # nobody polls it any more: free the runner for the next job
            _active = None
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
        wm.progress_end()
        wm.poseforge_job.running = False
        _status(context, None)


def unregister() -> None:
    """Stop the cached backend (called when the add-on is disabled)."""
    global _active
    if _active is not None and not _active.done:
        _active.cancel()
    _active = None
    invalidate_backend()
