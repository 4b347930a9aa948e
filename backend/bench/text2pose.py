"""``poseforge bench text2pose``: the text-to-pose benchmark of issue 4.

Sections of the report (JSON and a markdown table):

* **Prompt suite.**  Every prompt of a ``.jsonl`` suite (:func:`.checks.load_suite`) is generated
  once with ``samples`` candidates and the same seed through
  :func:`poseforge.backend.tasks.text2pose.generate_poses`; each candidate is turned to face +Z
  and checked (:func:`.checks.run_suite`).  Reported: the share of samples passing all their
  checks, overall and per wording (``captioner``: phrases our captioner produces, ``free``:
  wordings it never produces), the diversity of the candidates (APD, metres; DLow, Yuan & Kitani
  2020) and the latency.
* **Latency.**  Wall time of one ``generate_poses`` call for ``samples`` candidates (prompt
  embedding, code sampling, decoding, ranking), the models already loaded and after one warm-up
  call; median and mean over the prompts.
* **Plausibility.**  Mean DPoser implausibility (:meth:`DPoser.score_poses`, about 1 on training
  mocap, larger for implausible poses) of every generated candidate, against the same measure on
  ``reference_poses`` evenly spaced poses of the test split of the canonical cache (when one is
  available) and on uniformly random QPoser code grids decoded by the tokenizer.  Target: the
  generated candidates no worse than the test-split mocap on average.
* **Edits.**  A built-in list of instructions (:data:`EDITS`) with checks in the suite's format,
  each applied with :func:`~poseforge.backend.tasks.text2pose.edit_poses` to evenly spaced
  test-split poses (the rest T-pose when there is no cache), the pelvis set to the rest
  orientation as generated poses have it.  Reported per instruction: the body parts the parser
  chose (and whether they are the expected ones), the share of edited samples passing the checks
  (and the share of the poses passing before the edit), and the largest rotation change
  (degrees) of any joint outside the edited body parts, which should be 0: "only the affected
  bones change".

``--quick`` runs six prompts (both wordings), 64 reference poses and code grids, and every other
edit instruction on one pose with two candidates: it checks the pipeline, not the numbers.

JSON written::

    {"benchmark": "text2pose", "suite", "settings", "summary" (of run_suite), "prompts",
     "latency", "plausibility", "edits", "targets", "weights", "commit", "seconds", "quick",
     "notes"}
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from .checks import CheckError, face_forward, load_suite, passes, run_suite, validate_check
from .common import DataError, body_pose_aa, git_commit, load_split, portable_path, resolve_cache

#: Issue targets: share of samples passing, seconds for ``samples`` candidates.
TARGET_PASS_RATE = 0.9
TARGET_LATENCY_S = 0.5
#: Default count of evenly spaced test-split poses (mocap reference) and random code grids.
REFERENCE_POSES = 500
RANDOM_GRIDS = 500
#: Test-split poses each edit instruction is applied to (full run).
EDIT_POSES = 8
QUICK_PROMPTS = 6

#: Built-in edit instructions: the instruction, the body parts the parser should choose, and
#: checks (format of :mod:`.checks`) the edited pose should meet.
EDITS: tuple[dict, ...] = (
    {"instruction": "raise the left arm above the head", "parts": ["left_arm"],
     "checks": [{"above": ["left_wrist", "head"]}]},
    {"instruction": "raise the right hand above the head", "parts": ["right_arm"],
     "checks": [{"above": ["right_wrist", "head"]}]},
    {"instruction": "straighten the left arm", "parts": ["left_arm"],
     "checks": [{"bend_lt": ["left_elbow", 25]}]},
    {"instruction": "lower both arms to the sides", "parts": ["left_arm", "right_arm"],
     "checks": [{"below": ["left_wrist", "spine1"]}, {"below": ["right_wrist", "spine1"]}]},
    {"instruction": "stretch the arms out to the sides", "parts": ["left_arm", "right_arm"],
     "checks": [{"dist_gt": ["left_wrist", "right_wrist", 1.2]}]},
    {"instruction": "bring the hands together in front of the chest", "parts": ["left_arm", "right_arm"],
     "checks": [{"dist_lt": ["left_wrist", "right_wrist", 0.25]}, {"in_front": ["left_wrist", "spine3"]},
                {"in_front": ["right_wrist", "spine3"]}]},
    {"instruction": "bend the knees more", "parts": ["left_leg", "right_leg"],
     "checks": [{"bend_gt": ["left_knee", 35]}, {"bend_gt": ["right_knee", 35]}]},
    {"instruction": "lift the left knee up high", "parts": ["left_leg"],
     "checks": [{"bend_gt": ["left_hip", 50]}]},
    {"instruction": "lean forward", "parts": ["torso"],
     "checks": [{"lean": ["forward", 15]}]},
)


class BenchError(ValueError):
    """The benchmark cannot run (missing weights, bad suite, bad data folder); one line."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table: ``headers`` and one line per row (cells formatted with ``str``; floats
    with 3 significant decimals; ``None`` as ``-``)."""
    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rotation_change_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation between quaternions ``a`` and ``b`` (w, x, y, z; any
    matching shapes ``(..., 4)``; ``q`` and ``-q`` are the same rotation)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    dot = np.abs(np.sum(a * b, axis=-1)).clip(0.0, 1.0)
    return np.degrees(2.0 * np.arccos(dot))


def quick_suite(suite: list[dict], count: int = QUICK_PROMPTS) -> list[dict]:
    """``count`` prompts of a suite, evenly spaced within each wording (both wordings kept)."""
    by = {}
    for e in suite:
        by.setdefault(e["wording"], []).append(e)
    per = max(1, count // max(1, len(by)))
    out = []
    for entries in by.values():
        idx = np.unique(np.linspace(0, len(entries) - 1, min(per, len(entries))).round().astype(int))
        out += [entries[i] for i in idx]
    return out


def evenly_spaced(n_total: int, n: int) -> np.ndarray:
    """``min(n, n_total)`` indices spread evenly over ``range(n_total)``."""
    n = min(n, n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int)) if n > 0 else np.zeros(0, int)


def _stats(x) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "median": float(np.median(x)), "std": float(x.std()), "n": int(x.size)}


def _score(prior, rotations: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    """DPoser implausibility ``(N,)`` of local quaternions ``(N, 22, 4)`` (body joints only)."""
    import torch

    aa = body_pose_aa(rotations)
    out = []
    with torch.no_grad():
        for i in range(0, len(aa), batch):
            out.append(prior.score_poses(torch.from_numpy(aa[i:i + batch]).to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _random_grid_scores(qposer, prior, count: int, seed: int, device: str) -> np.ndarray:
    """Implausibility of ``count`` uniformly random QPoser code grids, decoded."""
    import torch

    from ..rotations import matrix_to_axis_angle
    c = qposer.config
    g = torch.Generator().manual_seed(int(seed))
    codes = torch.randint(0, c.codebook, (count, NUM_JOINTS - 1, c.code_heads), generator=g).to(device)
    out = []
    with torch.no_grad():
        for i in range(0, count, 256):
            body = qposer.decode(codes[i:i + 256])
            out.append(prior.score_poses(matrix_to_axis_angle(body).float()).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _weights_cards(weights_dir) -> dict:
    from ..weights import WeightsError, load_card
    cards = {}
    for name in ("qposer", "text2pose", "dposer"):
        try:
            card = load_card(name, weights_dir)
        except WeightsError:
            cards[name] = None
            continue
        training = card.get("training") if isinstance(card.get("training"), dict) else {}
        cards[name] = {k: v for k, v in {"steps": card.get("steps", training.get("steps")),
                                          "seed": card.get("seed", training.get("seed")),
                                          "data_hash": card.get("data_hash"),
                                          "command": card.get("command")}.items() if v is not None}
    return cards


def _mocap(data, explicit: bool, count: int, notes: list[str], log) -> np.ndarray | None:
    """``count`` evenly spaced test-split poses ``(n, 22, 4)``, or ``None`` (with a note)."""
    from ..cli import default_cache

    if data is None:
        path = default_cache() / "canonical"
        if not (path / "index.json").is_file():
            notes.append("no canonical cache (pass --data CACHE, or build $POSEFORGE_CACHE/canonical with "
                         "`poseforge data build`): mocap plausibility skipped, edits start from the rest pose")
            return None
    else:
        path = data
    cache = resolve_cache(path)  # DataError for an explicit folder that is not a cache
    try:
        rot, _ = load_split(cache, "test")
    except DataError as exc:
        if explicit:
            raise
        notes.append(f"{exc}: mocap plausibility skipped")
        return None
    log(f"test split of {portable_path(cache)}: {len(rot)} poses")
    return rot[evenly_spaced(len(rot), count)]


# --------------------------------------------------------------------------------------------
# edits
# --------------------------------------------------------------------------------------------

def run_edits(edit, base_poses: np.ndarray, edits: Sequence[dict] = EDITS, samples: int = 4, seed: int = 0,
              clock=time.perf_counter) -> dict:
    """Apply each instruction to each base pose and check the result.

    Args:
        edit: ``edit(rotations (22, 4), instruction, samples, seed) -> result`` of
            :func:`~poseforge.backend.tasks.text2pose.edit_poses` (``"positions"`` (S, 22, 3),
            ``"rotations"`` (S, 22, 4), ``"parts"``).
        base_poses: ``(P, 22, 4)`` local quaternions to edit.
        edits: instructions with ``"instruction"``, ``"parts"`` (expected) and ``"checks"``.
    Returns:
        ``{"instructions": [{"instruction", "expected_parts", "parts", "parts_as_expected",
        "pass_rate", "pass_rate_before", "max_outside_change_deg", "mean_inside_change_deg",
        "latency_s_median"}], "summary": {"poses", "samples", "pass_rate", "pass_rate_before",
        "parts_as_expected", "max_outside_change_deg", "latency_s_median"}}``.
    Raises:
        CheckError: a malformed check; whatever ``edit`` raises.
    """
    from ..skeleton import forward_kinematics_np
    from ..rotations import quat_to_matrix
    from ..text.parts import part_joints
    import torch

    base_poses = np.asarray(base_poses, np.float64)
    base_pos = forward_kinematics_np(quat_to_matrix(torch.as_tensor(base_poses, dtype=torch.float32)).numpy(),
                                     np.zeros((len(base_poses), 3)))[0]
    base_pos = face_forward(base_pos)
    rows = []
    for spec in edits:
        for c in spec["checks"]:
            validate_check(c, spec["instruction"])
        ok, before, outside, inside, lat, parts_seen = [], [], [], [], [], []
        for p, pose in enumerate(base_poses):
            t0 = clock()
            res = edit(pose, spec["instruction"], samples, seed + p)
            lat.append(clock() - t0)
            pos = face_forward(np.asarray(res["positions"]))
            rot = np.asarray(res["rotations"], np.float64)
            ok.append(passes(spec["checks"], pos))
            before.append(bool(passes(spec["checks"], base_pos[p:p + 1])[0]))
            parts = list(res["parts"])
            parts_seen.append(parts)
            edited = set(part_joints(parts))
            out_idx = [JOINT_INDEX[j] for j in JOINT_NAMES if j not in edited]
            in_idx = [JOINT_INDEX[j] for j in JOINT_NAMES if j in edited]
            change = rotation_change_deg(rot, pose[None])                       # (S, 22)
            outside.append(float(change[:, out_idx].max()) if out_idx else 0.0)
            inside.append(float(change[:, in_idx].mean()) if in_idx else 0.0)
        ok = np.concatenate(ok)
        parts = parts_seen[0]
        rows.append({"instruction": spec["instruction"], "expected_parts": list(spec["parts"]), "parts": parts,
                     "parts_as_expected": all(sorted(ps) == sorted(spec["parts"]) for ps in parts_seen),
                     "checks": spec["checks"], "pass_rate": float(ok.mean()),
                     "pass_rate_before": float(np.mean(before)),
                     "max_outside_change_deg": float(max(outside)), "mean_inside_change_deg": float(np.mean(inside)),
                     "latency_s_median": float(np.median(lat))})
    summary = {
        "poses": int(len(base_poses)), "samples": int(samples), "instructions": len(rows),
        "pass_rate": float(np.mean([r["pass_rate"] for r in rows])),
        "pass_rate_before": float(np.mean([r["pass_rate_before"] for r in rows])),
        "parts_as_expected": float(np.mean([r["parts_as_expected"] for r in rows])),
        "max_outside_change_deg": float(max(r["max_outside_change_deg"] for r in rows)),
        "latency_s_median": float(np.median([r["latency_s_median"] for r in rows])),
    }
    return {"instructions": rows, "summary": summary}


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------

def run_bench(prompts, *, samples: int = 4, seed: int = 0, data=None, weights_dir=None, text_encoder=None,
              device: str = "cpu", quick: bool = False, log=print) -> dict:
    """Run the benchmark (see the module docstring).

    Args:
        prompts: the suite ``.jsonl``.
        samples: candidates per prompt and per edit; seed: the seed of every call.
        data: canonical cache for the mocap reference and the edited poses; ``None``: the default
            cache ``$POSEFORGE_CACHE/canonical`` when present, else those parts are skipped with a note.
        weights_dir: QPoser / text2pose / DPoser weights (default: the shipped ones).
        text_encoder: sentence-transformers folder (default: the bundled one).
        device: ``"cpu"`` or ``"cuda"``.
        quick: a few prompts, poses and grids.
    Returns:
        the JSON report.
    Raises:
        BenchError: bad suite or data, missing weights or text encoder, bad ``samples``.
    """
    import torch

    from ..service import JobError
    from ..tasks.text2pose import edit_poses, embed_prompt, generate_poses, load_models

    t_start = time.time()
    notes: list[str] = []
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= 64:
        raise BenchError(f"--samples must be 1 to 64, got {samples}")
    try:
        suite = load_suite(prompts)
    except CheckError as exc:
        raise BenchError(str(exc)) from None
    full_size = len(suite)
    if quick:
        suite = quick_suite(suite)
    try:
        mocap = _mocap(data, data is not None, 64 if quick else REFERENCE_POSES, notes, log)
    except DataError as exc:
        raise BenchError(str(exc)) from None

    try:
        qposer, t2p, prior = load_models(weights_dir, device)
        embed_prompt(suite[0]["prompt"], text_encoder, device, t2p.config.text_dim)   # loads the encoder
    except JobError as exc:
        raise BenchError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
    kw = {"weights_dir": weights_dir, "text_encoder": text_encoder, "device": device}
    generate_poses(suite[0]["prompt"], samples, seed, **kw)                          # warm-up

    implaus: list[np.ndarray] = []

    def generate(prompt: str, n: int, s: int) -> np.ndarray:
        res = generate_poses(prompt, n, s, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        implaus.append(np.asarray(res["implausibility"], np.float64))
        return res["positions"]

    log(f"{len(suite)} prompts x {samples} candidates")
    try:
        suite_res = run_suite(generate, suite, samples=samples, seed=seed)
    except CheckError as exc:
        raise BenchError(str(exc)) from None
    summary = suite_res["summary"]
    lat = np.array([r["latency_s"] for r in suite_res["prompts"]])
    latency = {"median_s": float(np.median(lat)), "mean_s": float(lat.mean()), "max_s": float(lat.max()),
               "samples": samples, "calls": int(lat.size), "device": device,
               "torch_threads": torch.get_num_threads(),
               "measured": "one generate_poses call per prompt, models loaded, after one warm-up call"}

    # plausibility
    plaus: dict = {"measure": "DPoser implausibility (score_poses; about 1 on training mocap, lower is better)"}
    if prior is None:
        notes.append("no DPoser weights in the weights folder: plausibility skipped")
    else:
        gen = np.concatenate(implaus)
        plaus["generated"] = _stats(gen)
        if mocap is not None:
            log(f"scoring {len(mocap)} test-split poses")
            plaus["mocap_test"] = _stats(_score(prior, mocap, device))
        n_grid = 64 if quick else RANDOM_GRIDS
        log(f"scoring {n_grid} random code grids")
        plaus["random_codes"] = _stats(_random_grid_scores(qposer, prior, n_grid, seed, device))
        if "mocap_test" in plaus:
            plaus["generated_over_mocap"] = plaus["generated"]["mean"] / plaus["mocap_test"]["mean"]

    # edits
    if mocap is not None:
        base = mocap[evenly_spaced(len(mocap), 1 if quick else EDIT_POSES)].astype(np.float64).copy()
        base[:, 0] = [1.0, 0.0, 0.0, 0.0]
        base_desc = f"{len(base)} evenly spaced test-split poses, pelvis at the rest orientation"
    else:
        base = np.zeros((1, NUM_JOINTS, 4))
        base[..., 0] = 1.0
        base_desc = "the rest T-pose"
    edit_samples = min(samples, 2) if quick else samples
    edit_specs = EDITS[::2] if quick else EDITS
    log(f"{len(edit_specs)} edit instructions on {base_desc}")

    def edit(pose, instruction, n, s):
        return edit_poses(pose, instruction, n, s, **kw)

    try:
        edits = run_edits(edit, base, edit_specs, samples=edit_samples, seed=seed)
    except JobError as exc:
        raise BenchError(exc.message) from None
    edits["base_poses"] = base_desc

    targets = {
        "pass_rate": {"target": f">= {TARGET_PASS_RATE}", "value": summary["pass_rate"],
                      "met": summary["pass_rate"] >= TARGET_PASS_RATE},
        "latency_s_median": {"target": f"< {TARGET_LATENCY_S} for 4 candidates", "value": latency["median_s"],
                             "met": latency["median_s"] < TARGET_LATENCY_S if samples == 4 else None},
    }
    if "generated_over_mocap" in plaus:
        targets["plausibility"] = {"target": "generated mean <= test-split mocap mean",
                                   "value": plaus["generated_over_mocap"],
                                   "met": plaus["generated"]["mean"] <= plaus["mocap_test"]["mean"]}
    targets["edits_outside_unchanged"] = {"target": "0 degrees outside the edited parts",
                                         "value": edits["summary"]["max_outside_change_deg"],
                                         "met": edits["summary"]["max_outside_change_deg"] < 1e-2}
    return {
        "benchmark": "text2pose",
        "suite": {"file": Path(prompts).name, "prompts": full_size, "run": len(suite)},
        "settings": {"samples": samples, "seed": seed, "device": device, "quick": quick,
                     "weights_dir": None if weights_dir is None else portable_path(Path(weights_dir)),
                     "text_encoder": None if text_encoder is None else portable_path(Path(text_encoder))},
        "summary": summary,
        "prompts": suite_res["prompts"],
        "latency": latency,
        "plausibility": plaus,
        "edits": edits,
        "targets": targets,
        "weights": _weights_cards(weights_dir),
        "commit": git_commit(),
        "seconds": round(time.time() - t_start, 1),
        "quick": quick,
        "notes": notes,
    }


def tables(result: dict) -> str:
    """Markdown tables of a report: the summary (pass rates, APD, latency, plausibility) and the
    edits (one row per instruction)."""
    s, lat, pl = result["summary"], result["latency"], result["plausibility"]
    by = s.get("pass_rate_by_wording", {})
    rows = [("samples passing all checks", f"{s['pass_rate'] * 100:.1f} %"),
            *((f"  {w} wordings", f"{v * 100:.1f} %") for w, v in by.items()),
            ("prompts with every sample passing", f"{s['prompts_all_passing']} / {s['prompts']}"),
            ("diversity APD (m)", f"{s['apd_m_mean']:.3f}"),
            (f"latency, {lat['samples']} candidates (s): median / mean",
             f"{lat['median_s']:.3f} / {lat['mean_s']:.3f}")]
    for key, label in (("generated", "implausibility: generated"), ("mocap_test", "implausibility: test-split mocap"),
                       ("random_codes", "implausibility: random code grids")):
        if key in pl:
            rows.append((label, f"{pl[key]['mean']:.3f} (n={pl[key]['n']})"))
    e = result["edits"]["summary"]
    rows += [("edits: samples passing (before the edit)",
              f"{e['pass_rate'] * 100:.1f} % ({e['pass_rate_before'] * 100:.1f} %)"),
             ("edits: largest rotation change outside the edited parts (deg)", f"{e['max_outside_change_deg']:.4f}")]
    out = [markdown_table(["text to pose", "value"], rows), ""]
    out.append(markdown_table(
        ["edit instruction", "parts", "pass", "before", "max outside (deg)", "mean inside (deg)"],
        [(r["instruction"], ", ".join(r["parts"]) + ("" if r["parts_as_expected"] else " (!)"),
          f"{r['pass_rate'] * 100:.0f} %", f"{r['pass_rate_before'] * 100:.0f} %",
          f"{r['max_outside_change_deg']:.4f}", f"{r['mean_inside_change_deg']:.1f}")
         for r in result["edits"]["instructions"]]))
    return "\n".join(out)


def cli_main(args) -> int:
    """Entry point of ``poseforge bench text2pose --prompts FILE.jsonl --out FILE.json``.

    Returns 0, or 2 with one line on stderr when the benchmark cannot run (nothing written).
    """
    import torch

    from ..service import JobError
    from ..tasks.jobs import resolve_device
    from ..tasks.text2pose_cli import write_json_atomic

    torch.set_num_threads(2)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        device = resolve_device(getattr(args, "device", "auto"))
        result = run_bench(args.prompts, samples=args.samples, seed=args.seed, data=getattr(args, "data", None),
                           weights_dir=getattr(args, "weights_dir", None),
                           text_encoder=getattr(args, "text_encoder", None), device=device,
                           quick=bool(getattr(args, "quick", False)), log=log)
    except (BenchError, DataError, JobError) as exc:
        msg = exc.message if isinstance(exc, JobError) else str(exc)
        print(f"poseforge bench text2pose: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    for n in result["notes"]:
        log(f"note: {n}")
    print(tables(result))
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


__all__ = ["EDITS", "BenchError", "markdown_table", "rotation_change_deg", "quick_suite", "evenly_spaced",
           "run_edits", "run_bench", "tables", "cli_main"]
