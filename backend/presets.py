"""Rig presets: data files in presets/rigs mapping canonical joints to the bones of one rig family.

A preset is a JSON object::

    {
      "name": "Mixamo",                      # shown to the animator
      "kind": "armature" | "bvh",            # a Blender rig family or a BVH skeleton
      "up": "Z" | "Y",                       # world up axis of the source (Blender rigs: "Z")
      "bones": {"pelvis": "mixamorig:Hips", ...},   # canonical joint -> bone name; absent = missing
      "reference": "rest" | {...}            # how the reference T-pose is found (see retarget.py)
    }

Pure Python: used by the BVH reader (backend) and by the Blender rig bridge (rig/).
"""
from __future__ import annotations

import json
from pathlib import Path

from .skeleton import JOINT_NAMES

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "rigs"


class PresetError(ValueError):
    """A preset file is missing or malformed (message names the file and the problem)."""


def list_presets() -> list[str]:
    """Ids (file stems) of the shipped rig presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | Path) -> dict:
    """Load and check one preset by id (``"mixamo"``) or by path to a JSON file.

    Returns:
        The preset dict; ``preset["bones"]`` maps canonical joint names to bone names.
    Raises:
        PresetError: unknown id, unreadable JSON, or a key of ``bones`` that is not a canonical
            joint name.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise PresetError(f"no rig preset '{name_or_path}' (shipped: {', '.join(list_presets())})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PresetError(f"{path.name}: not valid JSON ({exc})") from exc
    bones = data.get("bones")
    if not isinstance(bones, dict):
        raise PresetError(f"{path.name}: needs a 'bones' object")
    unknown = sorted(set(bones) - set(JOINT_NAMES))
    if unknown:
        raise PresetError(f"{path.name}: unknown canonical joints {unknown}")
    data.setdefault("id", path.stem)
    data.setdefault("up", "Z")
    data.setdefault("reference", "rest")
    return data
