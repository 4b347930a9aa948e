"""The repository as a Blender extension: import hygiene, Blender's own manifest validator, the
zip its ``build`` makes, and installing + enabling that zip in a throw-away Blender user folder.

Every Blender call runs in a subprocess of the Python running the tests (bpy 5.0.1 or a 4.2 LTS
bpy, see tests/blender42.sh), because the user folders must be set before bpy is imported.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blender_ext() -> Path:
    """blender_ext.py shipped in the bpy wheel of this interpreter (skips without bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bpy is not installed in this Python")
    for base in spec.submodule_search_locations:
        found = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    pytest.skip("this bpy wheel ships no blender_ext.py")


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ext_build")
    res = _run([_blender_ext(), "build", "--source-dir", ROOT, "--output-dir", out])
    assert res.returncode == 0, res.stdout + res.stderr
    zips = list(out.glob("poseforge-*.zip"))
    assert len(zips) == 1, res.stdout
    return zips[0]


def test_importing_the_package_imports_neither_bpy_nor_torch():
    code = ("import sys, poseforge, poseforge.backend.service, poseforge.backend.transport; "
            "print(sorted(m for m in ('bpy', 'torch', 'mathutils') if m in sys.modules))")
    res = _run(["-c", code], cwd=ROOT.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_blender_validator_accepts_the_manifest():
    res = _run([_blender_ext(), "validate", ROOT])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "error" not in (res.stdout + res.stderr).lower()


def test_validator_rejects_a_broken_manifest(tmp_path):
    # the check above can fail: the same validator refuses a malformed blender_version_min
    text = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    bad = tmp_path / "ext"
    bad.mkdir()
    (bad / "__init__.py").write_text("def register(): pass\ndef unregister(): pass\n")
    (bad / "blender_manifest.toml").write_text(
        text.replace('blender_version_min = "4.2.0"', 'blender_version_min = "4.2"'), encoding="utf-8")
    res = _run([_blender_ext(), "validate", bad])
    assert res.returncode != 0


def test_built_zip_holds_the_extension_and_no_dev_files(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    for must in ("blender_manifest.toml", "__init__.py", "preferences.py", "properties.py",
                 "operators/snap.py", "panels/snap.py", "rig/bridge.py", "backend/service.py",
                 "backend/transport.py", "backend/tasks/jobs.py"):
        assert must in names, f"{must} missing from the zip"
    assert any(n.startswith("presets/rigs/") and n.endswith(".json") for n in names)
    leaked = [n for n in names if n.startswith(("tests/", ".ci/", ".git", ".venv", "bench/"))
              or "__pycache__" in n or n.endswith((".pyc", "pyproject.toml")) or ".egg-info" in n]
    assert not leaked, leaked


INSTALL_SCRIPT = r"""
import json, sys
import bpy
zip_path = sys.argv[-1]
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
addons = [a.module for a in bpy.context.preferences.addons]
prefs = bpy.context.preferences.addons.get("bl_ext.user_default.poseforge")
print("RESULT " + json.dumps({
    "result": sorted(res), "addons": addons,
    "prefs_backend": prefs.preferences.backend if prefs else None,
    "scene_settings": hasattr(bpy.types.Scene, "poseforge_snap"),
    "operators": [op for op in ("snap_pose", "score_keys", "fix_keys", "match_rig", "test_backend")
                  if hasattr(bpy.ops.poseforge, op) and op in dir(bpy.ops.poseforge)],
    "panel": hasattr(bpy.types, "POSEFORGE_PT_snap"),
    "modules": sorted(m for m in ("torch",) if m in sys.modules),
}))
"""


def test_zip_installs_and_enables_in_a_fresh_user_folder(built_zip, tmp_path):
    user = tmp_path / "blender_user"
    env = dict(os.environ)
    env.update({"BLENDER_USER_RESOURCES": str(user), "BLENDER_USER_CONFIG": str(user / "config"),
                "BLENDER_USER_SCRIPTS": str(user / "scripts"),
                "BLENDER_USER_EXTENSIONS": str(user / "extensions"),
                "BLENDER_USER_DATAFILES": str(user / "datafiles")})
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    res = _run([script, built_zip], env=env, cwd=tmp_path)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["result"] == ["FINISHED"]
    assert "bl_ext.user_default.poseforge" in out["addons"]
    assert out["prefs_backend"] == "AUTO"
    assert out["scene_settings"] and out["panel"]
    assert out["operators"] == ["snap_pose", "score_keys", "fix_keys", "match_rig", "test_backend"]
    assert out["modules"] == [], "enabling the extension must not import torch"
    installed = user / "extensions" / "user_default" / "poseforge"
    assert (installed / "blender_manifest.toml").is_file()
    assert not (installed / "tests").exists()
