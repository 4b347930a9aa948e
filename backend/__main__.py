"""`python -m poseforge.backend ...` runs the `poseforge` command (no Blender needed)."""
import sys

from .cli import main

sys.exit(main())
