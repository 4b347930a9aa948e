"""Jobs: a request (plain data) runs as a task, yields progress events, ends in a result or an error.

The service knows nothing of Blender and nothing of transports: :mod:`.transport` runs
:func:`run_job` in a thread (in-process) or in a child process (JSON lines on stdio), and the
Blender operators talk to whichever transport the preferences choose through the same
:class:`~.transport.JobHandle` interface.

Requests and results are JSON-compatible: dicts, lists, numbers, strings, booleans.
"""
from __future__ import annotations

import importlib
import threading
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

#: Task registry: job kind -> "module:function" (relative to this package).  A task function takes
#: ``(request: dict, ctx: JobContext) -> dict`` and raises :class:`JobError` or :class:`JobCancelled`.
TASKS: dict[str, str] = {
    "ping": ".tasks.jobs:ping",
    "snap": ".tasks.jobs:snap",
    "score_keys": ".tasks.jobs:score_keys",
    "fix_keys": ".tasks.jobs:fix_keys",
    "inbetween": ".tasks.inbetween:inbetween",
    "generate": ".tasks.text2pose:generate",
    "edit": ".tasks.text2pose:edit",
    "variations": ".tasks.text2pose:variations",
    "mix": ".tasks.text2pose:mix",
    "preview": ".tasks.preview:preview",
}


class JobError(Exception):
    """A job failed for a reason the animator can act on.

    Attributes:
        message: one sentence for the status bar ("No DPoser weights in <dir>: ...").
        hint: optional next step ("Set the weights folder in the add-on preferences").
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class JobCancelled(Exception):
    """The job stopped because cancel was requested; it produced nothing."""


@dataclass
class Event:
    """One message from a running job.

    ``kind`` is ``"progress"`` (``fraction`` in [0, 1], ``message``), ``"result"`` (``data``),
    ``"error"`` (``message``, ``hint``, ``detail`` = traceback for bug reports) or ``"cancelled"``.
    """
    job: str
    kind: str
    fraction: float = 0.0
    message: str = ""
    hint: str | None = None
    detail: str | None = None
    data: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


@dataclass
class JobContext:
    """What a task sees of its job: report progress, check for cancel, preferred device."""
    job: str
    emit: Callable[[Event], None]
    cancel_event: threading.Event = field(default_factory=threading.Event)
    device: str = "auto"

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (``fraction`` in [0, 1]); raises :class:`JobCancelled` if cancel was asked."""
        self.check_cancel()
        self.emit(Event(self.job, "progress", float(min(max(fraction, 0.0), 1.0)), message))

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()


def resolve_task(kind: str) -> Callable[[dict, JobContext], dict]:
    """The task function for a job kind. Raises :class:`JobError` for an unknown kind."""
    if kind not in TASKS:
        raise JobError(f"Unknown job '{kind}' (known: {', '.join(sorted(TASKS))})")
    mod_name, fn = TASKS[kind].split(":")
    return getattr(importlib.import_module(mod_name, __package__), fn)


def run_job(kind: str, request: dict, ctx: JobContext) -> None:
    """Run one job to its end, emitting progress events and exactly one final event.

    The final event is ``result`` (data = the task's dict), ``error`` (a :class:`JobError`'s
    message, or "Internal error: ..." with the traceback in ``detail`` for a bug) or
    ``cancelled``.  Never raises.
    """
    try:
        task = resolve_task(kind)
        ctx.check_cancel()
        result = task(request, ctx)
        ctx.check_cancel()
        ctx.emit(Event(ctx.job, "result", 1.0, "done", data=result))
    except JobCancelled:
        ctx.emit(Event(ctx.job, "cancelled", message="Cancelled"))
    except JobError as exc:
        ctx.emit(Event(ctx.job, "error", message=exc.message, hint=exc.hint))
    except MemoryError:
        ctx.emit(Event(ctx.job, "error", message="Out of memory: try fewer frames or the CPU device"))
    except Exception as exc:  # a bug: keep the traceback for the report, tell the animator plainly
        ctx.emit(Event(ctx.job, "error", message=f"Internal error: {type(exc).__name__}: {exc}",
                       detail=traceback.format_exc()))


def to_plain(value: Any) -> Any:
    """Arrays and tensors to nested lists (for JSON transports); other values unchanged."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
