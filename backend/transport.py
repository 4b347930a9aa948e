"""Transports that run service jobs: in this process (a thread) or in a child process.

Both give a :class:`JobHandle`: ``poll()`` returns the events that arrived since the last call
(never blocks, so a Blender modal timer can call it), ``cancel()`` asks the job to stop between
steps, ``wait()`` blocks (background mode and tests).

The child-process transport starts ``<python> -m backend serve`` with the extension folder on
``PYTHONPATH`` (``backend`` is self-contained: it imports nothing outside itself), and speaks JSON
lines: requests ``{"op": "submit", "job", "kind", "request"}``, ``{"op": "cancel", "job"}``,
``{"op": "shutdown"}`` on stdin; :class:`~.service.Event` dicts on stdout.  The child's own prints
go to stderr, so stdout carries only the protocol.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from .service import Event, JobContext, JobError, run_job, to_plain

_ids = itertools.count(1)
BACKEND_DIR = Path(__file__).resolve().parent


class JobHandle:
    """A submitted job, as the caller sees it (the same for every transport)."""

    def __init__(self, job: str, kind: str, cancel_fn):
        self.job = job
        self.kind = kind
        self._queue: "queue.Queue[Event]" = queue.Queue()
        self._cancel_fn = cancel_fn
        self.fraction = 0.0
        self.message = ""
        self.done = False
        self.result: dict | None = None
        self.error: Event | None = None
        self.cancelled = False

    def _push(self, event: Event) -> None:
        self._queue.put(event)

    def poll(self) -> list[Event]:
        """Events since the last call (non-blocking); updates ``fraction``/``done``/``result``."""
        out = []
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                break
            self._apply(ev)
            out.append(ev)
        return out

    def _apply(self, ev: Event) -> None:
        if ev.kind == "progress":
            self.fraction, self.message = ev.fraction, ev.message
        elif ev.kind == "result":
            self.done, self.result, self.fraction = True, ev.data, 1.0
        elif ev.kind == "error":
            self.done, self.error = True, ev
        elif ev.kind == "cancelled":
            self.done, self.cancelled = True, True

    def cancel(self) -> None:
        """Ask the job to stop at its next step; a ``cancelled`` event follows."""
        self._cancel_fn()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the job ends and return its result.

        Raises:
            JobError: the job failed (its message) or was cancelled, or ``timeout`` passed.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise JobError(f"Job '{self.kind}' timed out")
            try:
                ev = self._queue.get(timeout=0.1 if remaining is None else min(0.1, remaining))
            except queue.Empty:
                continue
            self._apply(ev)
        if self.error is not None:
            raise JobError(self.error.message, self.error.hint)
        if self.cancelled:
            raise JobError("Cancelled")
        return self.result or {}


class InProcessBackend:
    """Runs jobs in a worker thread of this process (Blender's own Python needs torch for this)."""

    name = "in-process"

    def __init__(self, device: str = "auto"):
        self.device = device

    def submit(self, kind: str, request: dict) -> JobHandle:
        job = f"job{next(_ids)}"
        cancel = threading.Event()
        handle = JobHandle(job, kind, cancel.set)
        ctx = JobContext(job, handle._push, cancel, self.device)
        threading.Thread(target=run_job, args=(kind, request, ctx), daemon=True, name=f"poseforge-{job}").start()
        return handle

    def close(self) -> None:
        pass


class ChildProcessBackend:
    """Runs jobs in a child Python process (any interpreter with torch), JSON lines on stdio.

    Args:
        python: path of the interpreter to start.
        device: "auto" | "cpu" | "cuda".
    Raises:
        JobError: the interpreter cannot be started.
    """

    name = "child-process"

    def __init__(self, python: str, device: str = "auto"):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(BACKEND_DIR.parent) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "backend", "serve", "--device", device],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1, env=env, cwd=str(BACKEND_DIR.parent))
        except OSError as exc:
            raise JobError(f"Cannot start the backend Python '{python}': {exc.strerror}",
                           hint="Set a Python interpreter with torch in the PoseForge preferences") from exc
        self._handles: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _send(self, msg: dict) -> None:
        with self._lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = Event.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                self._stderr.append(line)
                continue
            handle = self._handles.get(ev.job)
            if handle is not None:
                handle._push(ev)
        # the child died: every unfinished job ends in an error with the child's last words
        tail = "".join(self._stderr[-5:]).strip()
        for handle in list(self._handles.values()):
            if not handle.done:
                handle._push(Event(handle.job, "error", message="The backend process stopped"
                                   + (f": {tail.splitlines()[-1]}" if tail else ""), detail=tail))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def submit(self, kind: str, request: dict) -> JobHandle:
        job = f"job{next(_ids)}"
        handle = JobHandle(job, kind, lambda: self._send({"op": "cancel", "job": job}))
        self._handles[job] = handle
        if self.proc.poll() is not None:
            handle._push(Event(job, "error", message="The backend process is not running",
                               detail="".join(self._stderr[-20:])))
            return handle
        self._send({"op": "submit", "job": job, "kind": kind, "request": to_plain(request)})
        return handle

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"op": "shutdown"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()


def serve_stdio(args=None) -> int:
    """Child-process side: read JSON-line requests on stdin, write events on stdout.

    Runs each job in its own thread; ``cancel`` sets that job's cancel flag; ``shutdown`` or EOF
    ends the server.
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    lock = threading.Lock()
    device = getattr(args, "device", "auto") if args is not None else "auto"

    def emit(ev: Event) -> None:
        line = json.dumps(to_plain(ev.to_dict()))
        with lock:
            out.write(line + "\n")
            out.flush()

    cancels: dict[str, threading.Event] = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            emit(Event("?", "error", message="Malformed request (not JSON)"))
            continue
        op = msg.get("op")
        if op == "shutdown":
            break
        if op == "cancel" and msg.get("job") in cancels:
            cancels[msg["job"]].set()
        elif op == "submit":
            job = str(msg.get("job"))
            cancels[job] = threading.Event()
            ctx = JobContext(job, emit, cancels[job], device)
            threading.Thread(target=run_job, args=(msg.get("kind", ""), msg.get("request") or {}, ctx),
                             daemon=True).start()
    return 0


def make_backend(kind: str = "in-process", python: str | None = None, device: str = "auto"):
    """The backend the preferences ask for: ``"in-process"`` or ``"child-process"`` (needs ``python``).

    Raises:
        JobError: unknown kind, or no interpreter given for a child process.
    """
    if kind == "in-process":
        return InProcessBackend(device)
    if kind == "child-process":
        if not python:
            raise JobError("No backend Python is set", hint="Set one in the PoseForge add-on preferences")
        return ChildProcessBackend(python, device)
    raise JobError(f"Unknown backend '{kind}'")
