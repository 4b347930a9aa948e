"""Shared fixtures: where the shared data lives, and the unpacked mocap cache.

Tests that need ../shared/data skip with a clear reason when it is absent (CI always has it).
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared data folder: $POSEFORGE_SHARED_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("POSEFORGE_SHARED_DATA")
    cand = Path(env) if env else ROOT.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def mocap_cache_dir() -> Path:
    """Where archives are unpacked: $POSEFORGE_CACHE, else ~/.cache/poseforge."""
    return Path(os.environ.get("POSEFORGE_CACHE", Path.home() / ".cache" / "poseforge"))


def _unpack(archive: str, marker: str) -> Path:
    data = shared_data_dir()
    if data is None or not (data / archive).is_file():
        pytest.skip(f"{archive} not found: needs ../shared/data (set POSEFORGE_SHARED_DATA)")
    cache = mocap_cache_dir()
    target = cache / marker
    if not target.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data / archive) as tar:
            tar.extractall(cache, filter="data")
    return target


@pytest.fixture(scope="session")
def bandai_dir() -> Path:
    """Unpacked Bandai-Namco-Research-Motiondataset-2 root (contains data/ with the BVH clips)."""
    return _unpack("bandai2.tar.xz", "Bandai-Namco-Research-Motiondataset-2")


@pytest.fixture(scope="session")
def cmu_dir() -> Path:
    """Unpacked CMU dance subset root (contains salsa/, martial/, indian/, standard.bvh)."""
    return _unpack("cmu_dance.tar.xz", "cmu_aclstm_dance/train_data_bvh")


@pytest.fixture(scope="session")
def characters_dir() -> Path:
    """../shared/data/characters (Quaternius .blend/.fbx, KayKit glTF)."""
    data = shared_data_dir()
    if data is None or not (data / "characters").is_dir():
        pytest.skip("characters not found: needs ../shared/data/characters")
    return data / "characters"


class ScriptedBackend:
    """Stands in for the backend in the Blender operator tests: answers each job with
    ``respond(kind, request) -> [Event]`` and records the requests."""

    name = "scripted"

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[tuple[str, dict]] = []

    def submit(self, kind, request):
        from poseforge.backend.transport import JobHandle

        self.requests.append((kind, request))
        handle = JobHandle("scripted", kind, lambda: None)
        for ev in self.respond(kind, request):
            handle._push(ev)
        return handle

    def close(self):
        pass


@pytest.fixture
def scripted(monkeypatch):
    """``install(respond)`` makes the add-on's operators use a :class:`ScriptedBackend`."""
    from poseforge.operators import _job

    def install(respond):
        backend = ScriptedBackend(respond)
        monkeypatch.setattr(_job, "get_backend", lambda context=None: backend)
        return backend
    return install


class PanelLayout:
    """Stands in for ``panel.layout`` in the panel tests: records what a panel draws as
    ``("label", text)``, ``("prop", name)``, ``("operator", idname, text)``, ``("progress", text)``."""

    def __init__(self, log=None):
        self.log = log if log is not None else []

    def _sub(self, *args, **kw):
        return PanelLayout(self.log)

    row = column = box = split = _sub

    def label(self, text="", icon="NONE"):
        self.log.append(("label", text))

    def prop(self, data, name, **kw):
        self.log.append(("prop", name))

    def operator(self, idname, text="", icon="NONE", **kw):
        from types import SimpleNamespace

        self.log.append(("operator", idname, text))
        return SimpleNamespace()

    def progress(self, **kw):
        self.log.append(("progress", kw.get("text", "")))


@pytest.fixture
def panel_log():
    """``draw(panel_class)`` draws the panel in the current context and returns what it drew
    (:class:`PanelLayout`'s log)."""
    import bpy
    from types import SimpleNamespace

    def draw(panel_class) -> list:
        layout = PanelLayout()
        panel_class.draw(SimpleNamespace(layout=layout), bpy.context)
        return layout.log
    return draw
