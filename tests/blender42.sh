#!/usr/bin/env bash
# Run the Blender-side tests against Blender 4.2 LTS (the oldest version the manifest claims).
#   tests/blender42.sh [PYTEST ARGS]
# Creates .venv-bpy42 (Python 3.11, requirements-bpy42.txt: bpy 4.2.x, numpy<2, pytest, and this
# project in editable mode without its torch dependency) when missing.  Tests that need the models
# run them in a child process: set POSEFORGE_TEST_BACKEND_PYTHON to a Python with torch (default:
# .venv/bin/python made by ./run.sh setup, when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv-bpy42"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import bpy, poseforge' 2>/dev/null; then
  PY=$(command -v python3.11 || true)
  if [ -z "$PY" ]; then echo "Blender 4.2's bpy needs Python 3.11" >&2; exit 1; fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -r requirements-bpy42.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
fi

if [ -z "${POSEFORGE_TEST_BACKEND_PYTHON:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  export POSEFORGE_TEST_BACKEND_PYTHON="$ROOT/.venv/bin/python"
fi

"$VENV/bin/python" -c 'import bpy; print("bpy", bpy.app.version_string)'
# bpy 4.2 can crash while the interpreter shuts down, after every test has run: take pytest's
# own exit status and leave without Blender's exit handlers
exec "$VENV/bin/python" -c 'import os, sys, pytest
rc = pytest.main(sys.argv[1:])
for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__): f.flush()
os._exit(int(rc))' -p no:cacheprovider \
  tests/test_rig_bridge.py tests/test_extension.py tests/test_operators.py tests/test_inbetween_blender.py \
  tests/test_text2pose_blender.py tests/test_preview_blender.py "$@"
