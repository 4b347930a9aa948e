#!/usr/bin/env bash
# PoseForge developer entry point.
#   ./run.sh demo [--rig FILE] [--bvh FILE] [--out DIR]   set up, then run the headless demo
#   ./run.sh test [PYTEST ARGS]                           set up, then run every test (bpy 5.0.1 and 4.2 LTS)
# Set-up (idempotent): Debian's Mesa EGL packages (for Workbench renders), a virtual environment
# in .venv with Python 3.11, torch 2.13.0 (CPU), bpy 5.0.1 and the project in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"

find_python() {
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$py"; return 0
    fi
  done
  echo "PoseForge needs Python 3.11 (bpy 5.0.1 is built for it)" >&2; return 1
}

setup_system() {
  # Workbench/EEVEE renders need Mesa's EGL; without it the render crashes the process.
  if ! ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa'; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  fi
}

setup_python() {
  local stamp="$VENV/.poseforge-installed" want
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  [ -x "$VENV/bin/python" ] || "$(find_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch is pinned in the same install so pip takes the CPU wheel and no CUDA packages
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" -e ".[blender,test]"
  echo "$want" > "$stamp"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup_system; setup_python
    exec "$VENV/bin/python" -m poseforge.demo "$@" ;;
  test)
    setup_system; setup_python
    # the Blender-side tests again under Blender 4.2 LTS (the oldest version the manifest claims)
    echo "== Blender 4.2 LTS: rig bridge, extension and operator tests"
    rc42=0; tests/blender42.sh "$@" || rc42=$?
    echo "== Blender 5.0.1 and the backend: every test"
    rc=0; "$VENV/bin/python" -m pytest "$@" || rc=$?
    [ "$rc42" -eq 0 ] || echo "Blender 4.2 tests failed (exit $rc42)" >&2
    [ "$rc" -eq 0 ] && [ "$rc42" -eq 0 ] ;;
  setup)
    setup_system; setup_python ;;
  *)
    sed -n '2,6p' "$0"; exit 2 ;;
esac
