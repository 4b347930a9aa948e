"""BVH motion files: a reader for any skeleton, forward kinematics, and a writer for canonical motions.

The reader accepts any joint hierarchy, any Euler channel order, joints with 3 (rotation) or
6 (position + rotation) channels, End Sites, CRLF or LF line ends and tabs.  Rotations follow
the BVH convention: the channels of a joint are applied in the order they are listed as
*intrinsic* rotations, so ``CHANNELS 3 Zrotation Xrotation Yrotation`` gives
``R = Rz @ Rx @ Ry`` (degrees).  Position channels replace the joint's OFFSET (the convention of
Blender's importer and MotionBuilder); a joint without them keeps its OFFSET.

Everything stays in the file's own frame and units (BVH is usually Y up, centimetres or
inches); callers convert with :func:`poseforge.backend.retarget.axis_conversion` and the rig
preset's scale.  NumPy + SciPy only: never imports bpy or torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_ROT_CHANNELS = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}
_POS_CHANNELS = {"xposition": 0, "yposition": 1, "zposition": 2}


class BVHError(ValueError):
    """A BVH file cannot be read; the message names the file and the line number."""


@dataclass
class BVHMotion:
    """One BVH clip, in the file's own axes and units.

    Attributes:
        names: joint names in file order (parents come before their children).
        parents: ``(J,)`` int, parent index of each joint, ``-1`` for the root.
        offsets: ``(J, 3)`` OFFSET of each joint from its parent, source units.
        channels: channel names of each joint as written (e.g. ``["Zrotation", ...]``).
        frame_time: seconds per frame.
        rotations: ``(T, J, 3, 3)`` local rotation of each joint relative to its parent.
        translations: ``(T, J, 3)`` local translation of each joint from its parent: position
            channels where present, else the OFFSET.
        end_sites: ``(parent index, offset (3,))`` of each End Site (tip of a leaf bone).
        source: file name the clip came from (for messages).
    """
    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    rotations: np.ndarray
    translations: np.ndarray
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)
    source: str = ""

    @property
    def num_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.rotations.shape[0])

    @property
    def fps(self) -> float:
        """Frames per second (``1 / frame_time``)."""
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        """Index of joint ``name``; raises ``KeyError`` naming the clip if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no joint '{name}'") from None


# --- reading -----------------------------------------------------------------------------------

class _Tokens:
    """Whitespace tokens of the HIERARCHY section with their 1-based line numbers."""

    def __init__(self, lines: list[str], fname: str):
        self.fname = fname
        self.items: list[tuple[str, int]] = []
        self.end_line = 1
        for i, line in enumerate(lines):
            self.end_line = i + 1
            for tok in line.split():
                self.items.append((tok, i + 1))
        self.pos = 0

    def error(self, msg: str, line: int | None = None) -> BVHError:
        if line is None:
            line = self.items[self.pos][1] if self.pos < len(self.items) else self.end_line
        return BVHError(f"{self.fname}, line {line}: {msg}")

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            raise self.error(f"unexpected end of file, expected {what}")
        tok = self.items[self.pos]
        self.pos += 1
        return tok

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def expect(self, word: str) -> int:
        tok, line = self.next(f"'{word}'")
        if tok.upper() != word.upper():
            raise self.error(f"expected '{word}', found '{tok}'", line)
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            val = float(tok)
        except ValueError:
            raise self.error(f"expected a number for {what}, found '{tok}'", line) from None
        if not np.isfinite(val):
            raise self.error(f"{what} is not a finite number ('{tok}')", line)
        return val


def _parse_hierarchy(tk: _Tokens):
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    end_sites: list[tuple[int, np.ndarray]] = []

    def joint(parent: int, name_line: int) -> None:
        tok, line = tk.next("a joint name")
        if tok == "{":
            raise tk.error("a joint has no name", line)
        name = tok
        # joint names may contain spaces in some exporters: join tokens up to "{"
        while tk.peek() is not None and tk.peek() != "{" and tk.items[tk.pos][1] == line:
            name += " " + tk.next("a joint name")[0]
        if name in names:
            raise tk.error(f"joint '{name}' is defined twice", line)
        idx = len(names)
        names.append(name)
        parents.append(parent)
        offsets.append([0.0, 0.0, 0.0])
        channels.append([])
        tk.expect("{")
        seen_offset = False
        while True:
            tok, line = tk.next("'}' closing joint '%s'" % name)
            key = tok.upper()
            if key == "OFFSET":
                offsets[idx] = [tk.number(f"OFFSET of '{name}'") for _ in range(3)]
                seen_offset = True
            elif key == "CHANNELS":
                n_tok, n_line = tk.next("the channel count")
                try:
                    n = int(n_tok)
                except ValueError:
                    raise tk.error(f"channel count of '{name}' is not an integer: '{n_tok}'", n_line) from None
                if n < 0 or n > 6:
                    raise tk.error(f"joint '{name}' has {n} channels (0 to 6 allowed)", n_line)
                chans = []
                for _ in range(n):
                    c, c_line = tk.next("a channel name")
                    if c.lower() not in _ROT_CHANNELS and c.lower() not in _POS_CHANNELS:
                        raise tk.error(f"unknown channel '{c}' on joint '{name}'", c_line)
                    if c.lower() in (x.lower() for x in chans):
                        raise tk.error(f"channel '{c}' listed twice on joint '{name}'", c_line)
                    chans.append(c)
                channels[idx] = chans
            elif key == "JOINT":
                joint(idx, line)
            elif key == "END":
                tk.expect("Site")
                tk.expect("{")
                tk.expect("OFFSET")
                off = np.array([tk.number("End Site OFFSET") for _ in range(3)])
                tk.expect("}")
                end_sites.append((idx, off))
            elif tok == "}":
                break
            elif key in ("MOTION", "ROOT"):
                raise tk.error(f"'{tok}' before joint '{name}' (opened on line {name_line}) was closed "
                               "by '}' (unbalanced braces)", line)
            else:
                raise tk.error(f"unexpected '{tok}' in joint '{name}'", line)
        if not seen_offset:
            raise tk.error(f"joint '{name}' has no OFFSET", name_line)

    tk.expect("HIERARCHY")
    while True:
        tok, line = tk.next("ROOT or MOTION")
        key = tok.upper()
        if key == "ROOT":
            joint(-1, line)
        elif key == "MOTION":
            break
        elif tok == "}":
            raise tk.error("'}' without a matching '{' (unbalanced braces)", line)
        else:
            raise tk.error(f"expected ROOT or MOTION, found '{tok}'", line)
    if not names:
        raise tk.error("no ROOT joint before MOTION")
    if tk.pos != len(tk.items):
        raise tk.error(f"unexpected '{tk.peek()}' after MOTION")
    return names, np.array(parents, dtype=np.int64), np.array(offsets, dtype=np.float64), channels, end_sites


def _motion_header(lines: list[str], start: int, fname: str) -> tuple[int, float, int]:
    """Parse 'Frames:' and 'Frame Time:' from line index ``start``; returns (frames, time, next)."""
    i = start

    def next_line(what: str) -> tuple[str, int]:
        nonlocal i
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            raise BVHError(f"{fname}, line {len(lines)}: unexpected end of file, expected {what}")
        i += 1
        return lines[i - 1].strip(), i

    text, ln = next_line("'Frames:'")
    parts = text.replace(":", " : ").split()
    if len(parts) != 3 or parts[0].lower() != "frames":
        raise BVHError(f"{fname}, line {ln}: expected 'Frames: <count>', found '{text[:60]}'")
    try:
        frames = int(parts[2])
    except ValueError:
        raise BVHError(f"{fname}, line {ln}: frame count is not an integer: '{parts[2]}'") from None
    if frames < 0:
        raise BVHError(f"{fname}, line {ln}: negative frame count {frames}")
    text, ln = next_line("'Frame Time:'")
    parts = text.replace(":", " : ").split()
    if len(parts) != 4 or parts[0].lower() != "frame" or parts[1].lower() != "time":
        raise BVHError(f"{fname}, line {ln}: expected 'Frame Time: <seconds>', found '{text[:60]}'")
    try:
        ft = float(parts[3])
    except ValueError:
        raise BVHError(f"{fname}, line {ln}: frame time is not a number: '{parts[3]}'") from None
    if not np.isfinite(ft) or ft <= 0:
        raise BVHError(f"{fname}, line {ln}: frame time must be a positive number, got {parts[3]}")
    return frames, ft, i


def _euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles ``(..., k)`` in degrees, axes ``order`` (e.g. ``"ZXY"``) -> ``(..., 3, 3)``."""
    out = np.broadcast_to(np.eye(3), (*angles_deg.shape[:-1], 3, 3)).copy()
    a = np.deg2rad(angles_deg)
    for k, axis in enumerate(order):
        c, s = np.cos(a[..., k]), np.sin(a[..., k])
        m = np.zeros((*a.shape[:-1], 3, 3))
        if axis == "X":
            m[..., 0, 0] = 1; m[..., 1, 1] = c; m[..., 1, 2] = -s; m[..., 2, 1] = s; m[..., 2, 2] = c
        elif axis == "Y":
            m[..., 1, 1] = 1; m[..., 0, 0] = c; m[..., 0, 2] = s; m[..., 2, 0] = -s; m[..., 2, 2] = c
        else:
            m[..., 2, 2] = 1; m[..., 0, 0] = c; m[..., 0, 1] = -s; m[..., 1, 0] = s; m[..., 1, 1] = c
        out = out @ m
    return out


def read_bvh(path: str | Path) -> BVHMotion:
    """Read a BVH file of any skeleton.

    Args:
        path: the ``.bvh`` file.
    Returns:
        :class:`BVHMotion` in the file's own axes and units.
    Raises:
        BVHError: unreadable file or malformed content; the message names the file and the line
            (unbalanced braces, unknown channel, missing OFFSET, bad frame count or frame time,
            a frame line with the wrong number of values, a value that is not a finite number,
            fewer frame lines than 'Frames:' announces, or extra lines after them).
    """
    path = Path(path)
    fname = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BVHError(f"{fname}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    motion_line = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.upper().startswith("MOTION"):
            motion_line = i
            break
    if motion_line is None:
        # parse anyway to report a precise hierarchy error, else report the missing section
        tk = _Tokens(lines, fname)
        try:
            _parse_hierarchy(tk)
        except BVHError:
            raise
        raise BVHError(f"{fname}, line {len(lines)}: no MOTION section")
    head = lines[:motion_line] + ["MOTION"]
    tk = _Tokens(head, fname)
    tk.end_line = motion_line + 1
    names, parents, offsets, channels, end_sites = _parse_hierarchy(tk)
    if lines[motion_line].strip().upper() != "MOTION":
        raise BVHError(f"{fname}, line {motion_line + 1}: unexpected text after MOTION")
    frames, frame_time, i = _motion_header(lines, motion_line + 1, fname)

    n_chan = sum(len(c) for c in channels)
    data_lines: list[str] = []
    data_lnos: list[int] = []
    while i < len(lines) and len(data_lines) < frames:
        if lines[i].strip():
            data_lines.append(lines[i])
            data_lnos.append(i + 1)
        i += 1
    if len(data_lines) < frames:
        raise BVHError(f"{fname}, line {len(lines) + 1}: truncated MOTION data: 'Frames: {frames}' "
                       f"but only {len(data_lines)} frame lines")
    while i < len(lines):
        if lines[i].strip():
            raise BVHError(f"{fname}, line {i + 1}: more frame lines than 'Frames: {frames}' announces")
        i += 1
    tokens = [ln.split() for ln in data_lines]
    for toks, lno in zip(tokens, data_lnos):
        if len(toks) != n_chan:
            raise BVHError(f"{fname}, line {lno}: frame line has {len(toks)} values, the skeleton "
                           f"has {n_chan} channels")
    try:
        values = np.array([t for toks in tokens for t in toks], dtype=np.float64).reshape(frames, n_chan)
    except ValueError:
        for toks, lno in zip(tokens, data_lnos):
            for t in toks:
                try:
                    float(t)
                except ValueError:
                    raise BVHError(f"{fname}, line {lno}: '{t}' is not a number") from None
        raise
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise BVHError(f"{fname}, line {data_lnos[r]}: value {c + 1} is not a finite number "
                       f"({data_lines[r].split()[c]})")

    J = len(names)
    rotations = np.broadcast_to(np.eye(3), (frames, J, 3, 3)).copy()
    translations = np.broadcast_to(offsets, (frames, J, 3)).copy()
    col = 0
    groups: dict[str, list[tuple[int, list[int]]]] = {}
    for j, chans in enumerate(channels):
        rot_cols, order = [], ""
        for c in chans:
            lc = c.lower()
            if lc in _POS_CHANNELS:
                translations[:, j, _POS_CHANNELS[lc]] = values[:, col]
            else:
                rot_cols.append(col)
                order += _ROT_CHANNELS[lc]
            col += 1
        if order:
            groups.setdefault(order, []).append((j, rot_cols))
    for order, members in groups.items():
        js = [m[0] for m in members]
        cols = np.array([m[1] for m in members])  # (n, k)
        rotations[:, js] = _euler_to_matrix(values[:, cols], order)
    return BVHMotion(names=names, parents=parents, offsets=offsets, channels=channels,
                     frame_time=frame_time, rotations=rotations, translations=translations,
                     end_sites=end_sites, source=fname)


def bvh_world(motion: BVHMotion, frames: slice | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of a BVH motion in its own axes and units.

    Args:
        motion: a :class:`BVHMotion`.
        frames: optional frame selection (default: all frames).
    Returns:
        ``(world_rots (T, J, 3, 3), world_pos (T, J, 3))``: world rotation and position of each
        joint (the head of its bone), source axes and units.
    """
    rots = motion.rotations if frames is None else motion.rotations[frames]
    trans = motion.translations if frames is None else motion.translations[frames]
    return fk_local(rots, trans, motion.parents)


def fk_local(rotations: np.ndarray, translations: np.ndarray, parents) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of any hierarchy: ``(..., J, 3, 3)`` local rotations and ``(..., J, 3)``
    local translations (parents before children) -> world rotations and positions, same shapes."""
    rotations = np.asarray(rotations, dtype=np.float64)
    translations = np.asarray(translations, dtype=np.float64)
    world_r = np.empty_like(rotations)
    world_p = np.empty_like(translations)
    for j, p in enumerate(parents):
        if p < 0:
            world_r[..., j, :, :] = rotations[..., j, :, :]
            world_p[..., j, :] = translations[..., j, :]
        else:
            world_r[..., j, :, :] = world_r[..., p, :, :] @ rotations[..., j, :, :]
            world_p[..., j, :] = world_p[..., p, :] + (world_r[..., p, :, :] @ translations[..., j, :, None])[..., 0]
    return world_r, world_p


# --- writing -----------------------------------------------------------------------------------

def _matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """``(..., 3, 3)`` -> intrinsic Euler angles in degrees for ``order`` (inverse of _euler_to_matrix)."""
    from scipy.spatial.transform import Rotation

    flat = m.reshape(-1, 3, 3)
    ang = Rotation.from_matrix(flat).as_euler(order.upper(), degrees=True)
    return ang.reshape(*m.shape[:-2], 3)


def write_bvh(path: str | Path, rotations: np.ndarray, root: np.ndarray, fps: float = 30.0,
              order: str = "ZXY", units: str = "m", offsets: np.ndarray | None = None) -> Path:
    """Write a canonical motion as a BVH file (the canonical 22-joint body as the skeleton).

    The file is Y up, +Z forward, rest pose = the canonical T-pose, so any tool (Blender's BVH
    importer, MotionBuilder) shows it as PoseForge sees it.

    Args:
        path: output ``.bvh`` file (folders are created).
        rotations: ``(T, 22, 4)`` local quaternions ``(w, x, y, z)`` or ``(T, 22, 3, 3)`` local
            rotation matrices relative to the canonical T-pose.
        root: ``(T, 3)`` pelvis position, metres, Y up.
        fps: frame rate.
        order: Euler order of the rotation channels, ``"ZXY"`` or ``"XYZ"`` (any permutation works).
        units: ``"m"`` or ``"cm"`` for OFFSETs and root positions.
        offsets: ``(22, 3)`` rest offsets in metres (default: the canonical body's).
    Returns:
        The path written.
    Raises:
        ValueError: bad shapes, order or units.
    """
    from ..retarget import np_quat_to_matrix
    from ..skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, PRIMARY_CHILD, REST_OFFSETS, bone_directions

    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.shape[-2:] != (3, 3):
        if rotations.shape[-1] != 4:
            raise ValueError(f"rotations must be (T, 22, 4) or (T, 22, 3, 3), got {rotations.shape}")
        rotations = np_quat_to_matrix(rotations)
    if rotations.ndim != 4 or rotations.shape[1] != NUM_JOINTS:
        raise ValueError(f"rotations must be (T, 22, 4) or (T, 22, 3, 3), got {rotations.shape}")
    root = np.asarray(root, dtype=np.float64).reshape(-1, 3)
    if root.shape[0] != rotations.shape[0]:
        raise ValueError(f"root has {root.shape[0]} frames, rotations {rotations.shape[0]}")
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"order must be a permutation of XYZ, got {order!r}")
    if units not in ("m", "cm"):
        raise ValueError(f"units must be 'm' or 'cm', got {units!r}")
    k = 100.0 if units == "cm" else 1.0
    off = (REST_OFFSETS if offsets is None else np.asarray(offsets, dtype=np.float64)) * k
    dirs = bone_directions(offsets)
    euler = _matrix_to_euler(rotations, order)  # (T, 22, 3)
    rot_names = " ".join(f"{a}rotation" for a in order)
    children = {j: [c for c in range(NUM_JOINTS) if PARENTS[c] == j] for j in range(NUM_JOINTS)}
    out: list[str] = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        ind = "\t" * depth
        out.append(f"{ind}{'ROOT' if j == 0 else 'JOINT'} {JOINT_NAMES[j]}")
        out.append(f"{ind}{{")
        o = off[j] if j > 0 else np.zeros(3)
        out.append(f"{ind}\tOFFSET {o[0]:.6f} {o[1]:.6f} {o[2]:.6f}")
        if j == 0:
            out.append(f"{ind}\tCHANNELS 6 Xposition Yposition Zposition {rot_names}")
        else:
            out.append(f"{ind}\tCHANNELS 3 {rot_names}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j] or PRIMARY_CHILD[j] < 0:
            tip = dirs[j] * 0.08 * k
            out.append(f"{ind}\tEnd Site")
            out.append(f"{ind}\t{{")
            out.append(f"{ind}\t\tOFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}")
            out.append(f"{ind}\t}}")
        out.append(f"{ind}}}")

    emit(0, 0)
    # joints in file (depth-first) order, matching the channel layout
    file_order: list[int] = []

    def walk(j: int) -> None:
        file_order.append(j)
        for c in children[j]:
            walk(c)
    walk(0)
    out += ["MOTION", f"Frames: {rotations.shape[0]}", f"Frame Time: {1.0 / fps:.8f}"]
    for t in range(rotations.shape[0]):
        vals = [root[t] * k]
        vals += [euler[t, j] for j in file_order]
        out.append(" ".join(f"{v:.6f}" for v in np.concatenate(vals)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
