"""Job service and transports: progress, results, errors an animator can read, cancel."""
import math
import sys

import pytest

from poseforge.backend.service import JobError
from poseforge.backend.transport import ChildProcessBackend, InProcessBackend, make_backend


@pytest.fixture(params=["in-process", "child-process"])
def backend(request):
    b = make_backend(request.param, python=sys.executable)
    yield b
    b.close()


def test_ping_round_trip_with_progress(backend):
    h = backend.submit("ping", {"echo": "hello", "steps": 3})
    res = h.wait(timeout=60)
    assert res["echo"] == "hello" and res["device"] in ("cpu", "cuda")
    assert h.fraction == 1.0


def test_unknown_job_is_an_error_not_a_crash(backend):
    h = backend.submit("no_such_job", {})
    with pytest.raises(JobError, match="Unknown job"):
        h.wait(timeout=60)


def test_nan_rotations_are_refused_with_frame_and_joint(backend):
    rots = [[[1.0, 0, 0, 0]] * 22 for _ in range(3)]
    rots[2][18] = [math.nan, 0, 0, 0]
    h = backend.submit("snap", {"rotations": rots, "root": [[0, 0.9, 0]] * 3})
    with pytest.raises(JobError, match="left_elbow.*frame index 2"):
        h.wait(timeout=60)


def test_empty_frame_range_is_refused(backend):
    with pytest.raises(JobError, match="empty"):
        backend.submit("snap", {"rotations": [], "root": []}).wait(timeout=60)


def test_cancel_stops_a_running_job(backend):
    h = backend.submit("ping", {"steps": 200, "delay": 0.05})
    while h.fraction == 0.0 and not h.done:
        h.poll()
    h.cancel()
    with pytest.raises(JobError, match="Cancelled"):
        h.wait(timeout=30)
    assert h.cancelled and h.result is None


def test_child_process_with_bad_interpreter_says_so():
    with pytest.raises(JobError, match="Cannot start"):
        ChildProcessBackend("/nonexistent/python3")


def test_cuda_device_without_gpu_is_explained():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(JobError, match="no GPU"):
        InProcessBackend("cuda").submit("ping", {}).wait(timeout=60)


def _poses(n):
    return {"rotations": [[[1.0, 0, 0, 0]] * 22 for _ in range(n)], "root": [[0, 0.93, 0]] * n}


def _needs_weights():
    from poseforge.backend.weights import default_weights_dir
    if not (default_weights_dir() / "dposer.safetensors").is_file():
        pytest.skip("needs the shipped DPoser weights")


def test_cancelling_a_snap_ends_as_cancelled_not_as_an_error(backend):
    _needs_weights()
    h = backend.submit("snap", {**_poses(4), "iters": 2000})
    while not h.done and not h.message.startswith("fitting"):
        h.poll()
    h.cancel()
    with pytest.raises(JobError, match="Cancelled"):
        h.wait(timeout=120)
    assert h.cancelled and h.error is None


def test_fix_keys_refuses_a_strength_out_of_range(backend):
    with pytest.raises(JobError, match="Strength must be between 0 and 1"):
        backend.submit("fix_keys", {**_poses(2), "strength": 2.0, "threshold": 0.1}).wait(timeout=120)
