"""Blender side of the rig bridge (runs inside Blender: bpy, mathutils, NumPy; never torch).

- :mod:`.bridge`: :class:`~.bridge.RigMap` (canonical joints <-> bones, reference T-pose),
  :func:`~.bridge.read_pose`, :func:`~.bridge.read_action`, :func:`~.bridge.write_pose`,
  :class:`~.bridge.RigError`.
- :mod:`.actions`: F-Curves and keyframes on Blender 4.2 (``action.fcurves``) and 4.4+ / 5.0
  (action slots, layers, strips, channelbags) behind one set of functions.
- :mod:`.default_rig`: :func:`~.default_rig.build_default_rig`, the canonical body as a skinned
  armature made by code.

Importing this package imports nothing from Blender; import the submodules.
"""
