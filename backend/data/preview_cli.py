"""``poseforge data preview-set``: hands over to the Blender side (rig/preview_render.py).

The backend never imports bpy; this entry checks that the bpy module is installed and only then
imports the renderer, so the rest of the command line works without Blender.
"""
from __future__ import annotations

import importlib.util
import sys


def cli_main(args) -> int:
    """Run the generator (``rig.preview_render.cli_main``); exit status 2 without bpy."""
    if importlib.util.find_spec("bpy") is None:
        print("poseforge data preview-set: needs Blender's Python module (pip install bpy==5.0.1, "
              "see ./run.sh setup)", file=sys.stderr)
        return 2
    from ...rig import preview_render  # noqa: PLC0415  (imports bpy)

    return preview_render.cli_main(args)
