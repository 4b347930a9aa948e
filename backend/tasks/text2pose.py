"""Text to pose, edits, variations and mixes with QPoser codes (QPoser arXiv 2312.01104 sec. 3.3-3.4).

Poses are canonical: ``rotations`` ``(22, 4)`` local quaternions ``(w, x, y, z)`` relative to the
rest T-pose (Y up, +Z forward, +X the body's left), joint ``positions`` in metres with the pelvis
at the origin.

* :func:`generate_poses`: the prompt's sentence embedding conditions the masked code model; it
  samples ``samples x oversample`` code grids (MaskGIT decoding with classifier-free guidance),
  the tokenizer decodes them, and the candidates are ranked by the matching model's text-pose
  similarity minus ``plausibility_weight`` times the DPoser implausibility (best ``samples`` kept,
  near-duplicates skipped).  The pelvis gets the predicted tilt (lean, lying) and faces +Z.
  Then the posecode refinement (:func:`refine_poses`): the posecode words the prompt states
  outright ("left hand above the head", "squat", "feet wide apart";
  :func:`~poseforge.backend.text.prompt_codes.prompt_constraints`) become hinge constraints on the
  joints (:mod:`poseforge.backend.text.constraints`), which also rank the candidates, and a short
  optimisation meets them under the DPoser prior.  The learned generator alone follows wordings
  poorly where its mocap has few such poses (squats, kneeling, bows); the constraints fix what
  the prompt names and leave the rest to it.
* :func:`edit_poses`: the pose is encoded; the body parts the instruction names
  (:func:`~poseforge.backend.text.parts.parts_for_instruction`) are masked and re-predicted from
  the text and the kept codes; joints outside those parts, pinned joints and their ancestors
  keep their rotations exactly, as does the root (pelvis orientation and position).  The
  refinement then runs on the re-predicted joints only.
* :func:`variation_poses`: a random share ``strength`` of the joints (never pinned ones) is
  re-predicted without text.
* :func:`mix_poses`: the codes of the named body parts come from pose B, the rest from pose A;
  the decoder makes one coherent pose of them (GLIF-AE, sec. 3.2).

The job functions at the end (``generate``, ``edit``, ``variations``, ``mix``) are the service's
entry points (:data:`poseforge.backend.service.TASKS`).
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..models.text2pose import ROOT_TOKEN, tilt_codes, tilt_from_codes
from ..rotations import matrix_to_quat, quat_to_matrix
from ..service import JobContext, JobError
from ..skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS, forward_kinematics
from ..text.parts import BODY_PARTS, part_joints, parts_for_instruction
from ..text.prompt_codes import prompt_constraints

#: Most candidates one request may ask for.
MAX_SAMPLES = 64
#: Longest prompt read (characters): the sentence encoder truncates at 256 word pieces, and the
#: prompt grammar's time grows with the square of a clause's length.
MAX_PROMPT_CHARS = 1000

_lock = threading.Lock()
_cache: dict = {}


class Text2PoseError(JobError, ValueError):
    """Bad input for a text-to-pose task (empty prompt, wrong pose shape, unknown body part...)."""


def load_models(weights_dir=None, device: str = "cpu"):
    """``(qposer, text2pose, dposer or None)`` loaded once per process, weights folder and device.

    Raises:
        Text2PoseError: missing or unreadable weights (the hint names the trainer).
    """
    from ..models.dposer import DPoser
    from ..models.qposer import QPoser
    from ..models.text2pose import Text2Pose
    from ..weights import WeightsError, load_model

    key = (str(weights_dir or ""), device)
    with _lock:
        if key not in _cache:
            try:
                q = load_model("qposer", QPoser, weights_dir=weights_dir, device=device).eval()
                t = load_model("text2pose", Text2Pose, weights_dir=weights_dir, device=device).eval()
            except WeightsError as exc:
                raise Text2PoseError(str(exc), hint="Train them with `poseforge train qposer` / `poseforge train "
                                                    "text2pose`, or point the weights folder at them") from exc
            try:
                d = load_model("dposer", DPoser, weights_dir=weights_dir, device=device).eval()
            except WeightsError:
                d = None
            if q.config.code_heads != t.config.code_heads or q.config.codebook != t.config.codebook:
                raise Text2PoseError("The text-to-pose weights were trained for another QPoser code grid",
                                     hint="Retrain text2pose with these QPoser weights")
            _cache[key] = (q, t, d)
        return _cache[key]


def embed_prompt(prompt: str, text_encoder=None, device: str = "cpu", expected_dim: int | None = None) -> torch.Tensor:
    """``(1, D)`` unit-length sentence embedding of ``prompt``.

    Raises:
        Text2PoseError: an empty prompt or one over :data:`MAX_PROMPT_CHARS`, an encoder that
            cannot be loaded, or one whose embedding size differs from ``expected_dim``.
    """
    from ..text.encoder import TextEncoderError, load_text_encoder

    if not isinstance(prompt, str) or not prompt.strip():
        raise Text2PoseError("The prompt is empty: type what the pose should do")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Text2PoseError(f"The prompt is {len(prompt)} characters long; PoseForge reads at most "
                             f"{MAX_PROMPT_CHARS} (the text encoder sees about 256 words)",
                             hint="Describe one pose in a sentence or two")
    try:
        enc = load_text_encoder(text_encoder, "cpu")
        emb = enc.encode(prompt.strip())
    except TextEncoderError as exc:
        raise Text2PoseError(str(exc), hint=exc.hint) from exc
    if expected_dim is not None and emb.shape[-1] != expected_dim:
        raise Text2PoseError(f"The text encoder gives {emb.shape[-1]}-d embeddings but the text-to-pose "
                             f"weights expect {expected_dim}",
                             hint="Use the encoder the weights were trained with (all-MiniLM-L6-v2)")
    return torch.from_numpy(emb).to(device)[None]


def _as_pose(rotations, what: str = "pose") -> torch.Tensor:
    """``(22, 4)`` or ``(1, 22, 4)`` quaternions -> ``(22, 4)`` float32 unit quaternions (checked)."""
    try:
        q = np.asarray(rotations, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise Text2PoseError(f"The {what} is malformed: {exc}") from exc
    if q.ndim == 3 and q.shape[0] == 1:
        q = q[0]
    if q.shape != (22, 4):
        raise Text2PoseError(f"The {what} must be 22 x 4 quaternions (w, x, y, z), got {q.shape}")
    bad = ~np.isfinite(q).all(-1)
    if bad.any():
        raise Text2PoseError(f"The {what}'s rotation of '{JOINT_NAMES[int(np.argmax(bad))]}' is not a number")
    n = np.linalg.norm(q, axis=-1)
    if (n < 1e-6).any():
        raise Text2PoseError(f"The {what}'s rotation of '{JOINT_NAMES[int(np.argmax(n < 1e-6))]}' is a zero quaternion")
    return torch.as_tensor(q / n[:, None], dtype=torch.float32)


def _check_count(samples) -> int:
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or not 1 <= samples <= MAX_SAMPLES:
        raise Text2PoseError(f"The number of candidates must be 1-{MAX_SAMPLES}, got {samples!r}")
    return int(samples)


def _positions(rot: torch.Tensor) -> torch.Tensor:
    """``(N, 22, 3, 3)`` local rotations -> ``(N, 22, 3)`` positions, pelvis at the origin."""
    return forward_kinematics(rot, torch.zeros(rot.shape[0], 3, dtype=rot.dtype, device=rot.device))[0]


def _implausibility(prior, body: torch.Tensor) -> torch.Tensor:
    from ..rotations import matrix_to_axis_angle
    if prior is None:
        return torch.zeros(body.shape[0])
    return prior.score_poses(matrix_to_axis_angle(body).float()).cpu()


def _select(scores: torch.Tensor, pos: torch.Tensor, k: int, min_dist: float = 0.03) -> list[int]:
    """Indices of the ``k`` best candidates, skipping ones within ``min_dist`` metres (mean joint
    distance) of an already chosen one while others remain."""
    order = scores.argsort(descending=True).tolist()
    chosen: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        if all(float((pos[i] - pos[j]).norm(dim=-1).mean()) >= min_dist for j in chosen):
            chosen.append(i)
    for i in order:                              # not enough distinct ones: fill in rank order
        if len(chosen) == k:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def _result(rot: torch.Tensor, extra: dict | None = None) -> dict:
    """``(N, 22, 3, 3)`` -> the plain result: joints, positions, rotations (numpy)."""
    out = {"joints": list(JOINT_NAMES), "positions": _positions(rot).cpu().numpy(),
           "rotations": matrix_to_quat(rot).cpu().numpy()}
    out.update(extra or {})
    return out


def _alternatives(constraints) -> list[list]:
    """Constraints as alternatives: ``[(posecode, word, weight), ...]`` (one list) or a list of
    such lists -> a list of non-empty lists."""
    constraints = list(constraints or [])
    if constraints and isinstance(constraints[0][0], str):
        constraints = [constraints]
    return [list(a) for a in constraints if a]


def _prompt_constraints(prompt, constraint_weight: float) -> list[list]:
    """The prompt's posecode alternatives with weight 1 (none when ``constraint_weight`` is 0)."""
    if constraint_weight <= 0:
        return []
    return [[(c, w, 1.0) for c, w in alt] for alt in prompt_constraints(prompt)]


def _constraint_info(alts) -> dict:
    """The result's ``constraints`` (the words all alternatives share) and ``alternatives``."""
    words = [[[c, w] for c, w, _ in alt] for alt in alts]
    shared = [cw for cw in words[0] if all(cw in a for a in words[1:])] if words else []
    return {"constraints": shared, "alternatives": words}


def _reading(alts) -> str:
    """A status-bar note of what the prompt was read as (the posecode words the refinement met)."""
    if not alts:
        return ("No pose words were recognised in the prompt: the candidates follow the learned text model "
                "alone")
    words = [f"{c.replace('_', ' ')} {w}" for c, w, _ in alts[0]]
    shown = ", ".join(words[:5]) + (", ..." if len(words) > 5 else "")
    if len(alts) > 1:
        shown += " (or the other side's reading: the prompt leaves the side open)"
    return f"Read from the prompt: {shown}"


def _violations(rot: torch.Tensor, constraints) -> torch.Tensor:
    """``(M,)`` posecode hinge energy of ``(M, 22, 3, 3)`` poses, the smallest over the
    alternatives (0 without constraints)."""
    alts = _alternatives(constraints)
    if not alts:
        return torch.zeros(rot.shape[0])
    from ..text.constraints import measure, violation_any
    from .fit import fast_forward_kinematics
    pos, glob = fast_forward_kinematics(rot, torch.zeros(rot.shape[0], 3, dtype=rot.dtype, device=rot.device))
    return violation_any(measure(pos, glob), alts).cpu()


@torch.no_grad()
def _rank_and_decode(qposer, t2p, prior, codes: torch.Tensor, text: torch.Tensor | None, root_rot: torch.Tensor | None,
                     samples: int, keep_rot: torch.Tensor | None, keep_mask: torch.Tensor | None,
                     plausibility_weight: float, constraints=None, constraint_weight: float = 0.0):
    """Decode code grids ``(M, 22, H)``, restore kept joints, rank by text match, plausibility and
    posecode violation, choose ``samples``.  ``root_rot`` ``(3, 3)`` fixes the pelvis; None takes
    the predicted tilt."""
    body = qposer.decode(codes[:, :ROOT_TOKEN])                               # (M, 21, 3, 3)
    if keep_rot is not None:
        body = torch.where(keep_mask[None, :, None, None], keep_rot[None], body)
    root = tilt_from_codes(codes[:, ROOT_TOKEN], qposer.config.codebook) if root_rot is None \
        else root_rot.expand(len(body), 3, 3)
    rot = torch.cat([root[:, None], body], 1)
    implaus = _implausibility(prior, body)
    match = t2p.matcher.similarity(rot, text.expand(len(body), -1)).cpu() if text is not None \
        else torch.zeros(len(body))
    score = match - plausibility_weight * implaus
    if constraints and constraint_weight > 0:
        score = score - constraint_weight * _violations(rot, constraints)
    pick = _select(score, _positions(rot).cpu(), samples)
    return rot[pick], match[pick], implaus[pick], codes[pick]


def refine_poses(rot: torch.Tensor, constraints, prior, *, strength: float = 0.5, constraint_weight: float = 1.0,
                 iters: int = 40, lr: float = 0.03, free: torch.Tensor | None = None, seed: int = 0,
                 max_implausibility: float = 1.3, free_root: bool = False):
    """Pull poses onto the DPoser prior while meeting posecode constraints.

    Minimises ``constraint_weight * violation(constraints)`` (:func:`~poseforge.backend.text.constraints.violation`)
    plus the DPoser truncated-score energy (weight ``strength``) and a keep-close term (weight
    ``0.2 * (1 - strength)``) over the body joints' axis-angles (Adam, :func:`~.fit.fit_poses`);
    the root keeps its rotation unless ``free_root``.  Without constraints it is the snap polish: a
    pose the prior finds less plausible afterwards is returned unchanged; with constraints that
    happens only when the refined pose scores above ``max_implausibility`` (random code grids
    score about 1, test-split mocap 0.37; rare but real poses such as a deep forward fold score
    about 1 after the refinement, hence the default 1.3).

    Args:
        rot: ``(N, 22, 3, 3)`` local rotations (Y up); constraints: ``[(posecode, word, weight)]``,
            or a list of such lists, alternatives of which each pose meets the nearest.
        prior: the DPoser prior; strength: 0-1; free: ``(21,)`` bool, body joints that may move
            (default all; the others keep their local rotations exactly).
        free_root: the pelvis may tilt too (a lean, a toe touch), with the pelvis kept over the
            feet (within 0.2 m horizontally, the ``support`` constraint) so the body does not
            tip over as a whole.
    Returns:
        ``(rotations (N, 22, 3, 3), implausibility (N,))``.
    """
    from ..text.constraints import measure, violation_any
    from .fit import fast_forward_kinematics, fit_poses
    from .snap import KEEP_SCALE, PRIOR_SCALE, _Schedule, _Threads, score_keys

    cons = _alternatives(constraints)
    if free_root and cons:
        cons = [a + [("support", "over the feet", 1.0)] for a in cons]
    def constraint_energy(pos, glob):
        return constraint_weight * violation_any(measure(pos, glob), cons)
    energy = constraint_energy if cons and constraint_weight > 0 else None
    partial = free is not None and not bool(free.all())
    target_rot = rot_w = None
    if partial:      # joints that must stay hold their global rotation (set back exactly below)
        _, target_rot = fast_forward_kinematics(rot, torch.zeros(len(rot), 3, dtype=rot.dtype))
        rot_w = torch.cat([torch.zeros(1, dtype=torch.bool), ~free.cpu()])[None].expand(len(rot), -1).float() * 10.0
    before = score_keys(rot, prior)
    with _Threads(len(rot)), _Schedule(prior, 0.30, 0.05):
        res = fit_poses(rot, torch.zeros(len(rot), 3, dtype=rot.dtype), target_rot=target_rot, rot_weight=rot_w,
                        prior=prior, prior_weight=PRIOR_SCALE * strength,
                        keep_weight=KEEP_SCALE * (1.0 - strength) + 1e-4, iters=iters, lr=lr,
                        generator=torch.Generator().manual_seed(int(seed)), energy=energy,
                        optimise_root=bool(free_root and energy is not None))
    out = res.local.to(rot.dtype)
    if partial:
        keep = torch.cat([torch.ones(1, dtype=torch.bool), ~free.cpu()])
        out[:, keep] = rot[:, keep]
    after = score_keys(out, prior)
    # without constraints a pose the prior finds less plausible is not taken; with them, one the
    # prior finds clearly less plausible than a random code grid (above ``max_implausibility``)
    # is not either: the constraint is then left unmet rather than the pose broken
    worse = after > before if energy is None else (after > max_implausibility) & (after > before)
    out[worse], after[worse] = rot[worse], before[worse]
    return out, after


#: Posecodes met by tilting the pelvis as well: with them Generate lets the root tilt in the refinement.
_TILT_WORDS = ("lean_forward", "lean_side")


def _encode(qposer, mats: torch.Tensor) -> torch.Tensor:
    """``(22, 3, 3)`` local rotations -> ``(1, 22, H)`` codes (QPoser codes, then the pelvis tilt)."""
    with torch.no_grad():
        return torch.cat([qposer.encode(mats[None, 1:]),
                          tilt_codes(mats[None, 0], qposer.config.codebook)[:, None]], 1)


def generate_poses(prompt: str, samples: int = 4, seed: int = 0, *, oversample: int = 4, guidance: float = 3.0,
                   temperature: float = 1.0, steps: int = 6, plausibility_weight: float = 0.1,
                   polish: float = 1.0, constraint_weight: float = 1.0,
                   refine_iters: int = 60, refine_lr: float = 0.06, refine_pool: int = 2,
                   weights_dir=None, text_encoder=None, device: str = "cpu") -> dict:
    """Poses for a prompt (see the module docstring).

    Args:
        prompt: what the pose should do, in English.
        samples: candidates returned (1-64); ``samples * oversample`` are sampled and ranked.
        seed: the same seed gives the same candidates.
        guidance: classifier-free guidance scale; temperature: sampling temperature.
        polish: strength (0-1) of the DPoser prior in the refinement of the chosen candidates
            (:func:`refine_poses`); 0 with no constraints skips it.
        constraint_weight: weight of the posecode words the prompt states
            (:func:`~poseforge.backend.text.prompt_codes.prompt_constraints`) in the ranking and
            the refinement; 0 turns them off (the learned generator alone).
        refine_iters, refine_lr: Adam steps and learning rate of the refinement.
        refine_pool: ``samples * refine_pool`` ranked candidates are refined and the ``samples``
            that best meet the words (then the most plausible, distinct ones) are returned; a
            larger batch costs little more per step than a small one.
    Returns:
        ``{"joints": 22 names, "positions": (N, 22, 3) metres (Y up, pelvis at the origin),
        "rotations": (N, 22, 4) local quaternions, "match": (N,) text-pose cosine,
        "implausibility": (N,) DPoser scores, "codes": (N, 22, H), "constraints": the posecode
        words all readings of the prompt share [(posecode, word)], "alternatives": every
        reading (a list of such lists), "message": a status-bar note of what was read}``,
        arrays as numpy.
    Raises:
        Text2PoseError: empty prompt, bad counts, missing weights or text encoder.
    """
    samples = _check_count(samples)
    q, t, prior = load_models(weights_dir, device)
    text = embed_prompt(prompt, text_encoder, device, t.config.text_dim)
    cons = _prompt_constraints(prompt, constraint_weight)
    m = samples * max(1, int(oversample))
    g = torch.Generator(device=device).manual_seed(int(seed))
    codes = t.sample(text.expand(m, -1), steps=steps, guidance=guidance, temperature=temperature, generator=g)
    refine = prior is not None and bool(polish or cons)
    pool = min(m, samples * max(1, int(refine_pool))) if refine else samples
    rot, match, implaus, codes = _rank_and_decode(q, t, prior, codes, text, None, pool, None, None,
                                                  plausibility_weight, cons, constraint_weight)
    if refine:
        if not 0.0 <= float(polish) <= 1.0:
            raise Text2PoseError(f"Polish strength must be between 0 and 1, got {polish}")
        tilt = any(c in _TILT_WORDS or c.endswith("_hand_floor") for alt in cons for c, _, _ in alt)
        rot, implaus = refine_poses(rot, cons, prior, strength=float(polish), constraint_weight=constraint_weight,
                                    iters=refine_iters, lr=refine_lr, seed=seed, free_root=tilt)
        if pool > samples:     # the ones that meet the words, then the most plausible, distinct
            from ..text.constraints import measure, violation_any
            from .fit import fast_forward_kinematics
            with torch.no_grad():
                pos, glob = fast_forward_kinematics(rot, torch.zeros(len(rot), 3, dtype=rot.dtype))
                unmet = violation_any(measure(pos, glob), _alternatives(cons), margin=0.0).cpu() if cons \
                    else torch.zeros(len(rot))
            pick = _select(-(10.0 * unmet + implaus), _positions(rot).cpu(), samples)
            rot, implaus, codes = rot[pick], implaus[pick], codes[pick]
        with torch.no_grad():
            match = t.matcher.similarity(rot, text.expand(len(rot), -1)).cpu()
    return _result(rot, {"match": match.numpy(), "implausibility": implaus.numpy(), "codes": codes.cpu().numpy(),
                         "message": _reading(cons) if constraint_weight > 0 else None, **_constraint_info(cons)})


def _kept_by_pins(pinned) -> torch.Tensor:
    """``(21,)`` bool over the body joints: pinned joints and all their ancestors."""
    keep = torch.zeros(21, dtype=torch.bool)
    for name in pinned or []:
        if name not in JOINT_INDEX:
            raise Text2PoseError(f"Unknown pinned joint '{name}' (canonical joint names expected)")
        j = JOINT_INDEX[name]
        while j > 0:
            keep[j - 1] = True
            j = PARENTS[j]
    return keep


def _body_mask(joints) -> torch.Tensor:
    m = torch.zeros(21, dtype=torch.bool)
    for name in joints:
        m[JOINT_INDEX[name] - 1] = True
    return m


def edit_poses(rotations, prompt: str, samples: int = 4, seed: int = 0, *, pinned=None, parts=None,
               oversample: int = 4, guidance: float = 3.0, temperature: float = 1.0, steps: int = 8,
               plausibility_weight: float = 0.1, polish: float = 0.5, constraint_weight: float = 1.0,
               refine_iters: int = 60, refine_lr: float = 0.06, weights_dir=None, text_encoder=None,
               device: str = "cpu") -> dict:
    """Edit a pose with an instruction (see the module docstring).

    Args:
        rotations: ``(22, 4)`` local quaternions of the pose to edit.
        prompt: the instruction ("raise the left arm", "bend the knees more").
        pinned: canonical joint names that must not move (they and their ancestors keep their
            rotations, so their positions relative to the pelvis stay).
        parts: body parts to re-predict (names of ``BODY_PARTS`` / ``PART_GROUPS``); None: from
            the instruction, the whole body when it names none.
        polish, constraint_weight, refine_iters, refine_lr: the refinement of
            :func:`generate_poses`, run when the instruction states posecode words, on the
            re-predicted joints only.
    Returns:
        as :func:`generate_poses`, plus ``"parts"`` (the body parts changed), ``"changed"`` (joint
        names re-predicted) and ``"message"`` (a note for the status bar or None).
    Raises:
        Text2PoseError: bad pose, empty prompt, unknown part or pinned joint, or every named joint
            pinned.
    """
    samples = _check_count(samples)
    pose = _as_pose(rotations)
    message = None
    if parts is None:
        parts = parts_for_instruction(prompt if isinstance(prompt, str) else "")
        if not parts:
            parts = list(BODY_PARTS)
            message = "The instruction names no body part: the whole body was re-posed"
    try:
        joints = part_joints(parts)
    except ValueError as exc:
        raise Text2PoseError(str(exc)) from exc
    change = _body_mask(joints) & ~_kept_by_pins(pinned)
    if not change.any():
        raise Text2PoseError("Every bone the instruction concerns is pinned (or an ancestor of a pinned bone)",
                             hint="Unpin some bones, or name another body part")
    q, t, prior = load_models(weights_dir, device)
    text = embed_prompt(prompt, text_encoder, device, t.config.text_dim)
    mats = quat_to_matrix(pose).to(device)
    body = mats[1:]
    codes0 = _encode(q, mats)
    m = samples * max(1, int(oversample))
    g = torch.Generator(device=device).manual_seed(int(seed))
    known = torch.cat([~change, torch.ones(1, dtype=torch.bool)]).to(device)[None].expand(m, -1)
    codes = t.sample(text.expand(m, -1), codes0.expand(m, -1, -1), known, steps=steps, guidance=guidance,
                     temperature=temperature, generator=g)
    cons = _prompt_constraints(prompt, constraint_weight)
    rot, match, implaus, codes = _rank_and_decode(q, t, prior, codes, text, mats[0], samples, body,
                                                  (~change).to(device), plausibility_weight, cons, constraint_weight)
    if cons and prior is not None:
        # the animator asked for this change of this pose: the constraints are kept even where
        # the prior dislikes the result (the pose outside the edited parts is theirs anyway)
        rot, implaus = refine_poses(rot, cons, prior, strength=float(polish), constraint_weight=constraint_weight,
                                    iters=refine_iters, lr=refine_lr, free=change, seed=seed,
                                    max_implausibility=float("inf"))
        with torch.no_grad():
            match = t.matcher.similarity(rot, text.expand(len(rot), -1)).cpu()
    changed = [JOINT_NAMES[i + 1] for i in range(21) if change[i]]
    return _result(rot, {"match": match.numpy(), "implausibility": implaus.numpy(), "codes": codes.cpu().numpy(),
                         "parts": list(parts), "changed": changed, "message": message,
                         **_constraint_info(cons)})


def variation_poses(rotations, strength: float = 0.3, samples: int = 4, seed: int = 0, *, pinned=None,
                    temperature: float = 1.0, steps: int = 8, weights_dir=None, device: str = "cpu") -> dict:
    """Variations of a pose: re-sample a random share ``strength`` (0-1] of its joints' codes.

    Joints not re-sampled keep their rotations exactly; pinned joints and their ancestors are
    never re-sampled; the root keeps its orientation.  Each candidate re-samples its own random
    subset (at least one joint).  Candidates are ranked by DPoser plausibility.

    Returns:
        as :func:`generate_poses` (``match`` is 0), plus ``"changed"``: per candidate the joint
        names re-sampled.
    Raises:
        Text2PoseError: bad pose, strength outside (0, 1], every joint pinned.
    """
    samples = _check_count(samples)
    pose = _as_pose(rotations)
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise Text2PoseError(f"Strength must be a number in (0, 1], got {strength!r}") from None
    if not 0.0 < strength <= 1.0:
        raise Text2PoseError(f"Strength must be in (0, 1], got {strength}")
    free = ~_kept_by_pins(pinned)
    if not free.any():
        raise Text2PoseError("Every bone is pinned: nothing can vary", hint="Unpin some bones")
    q, t, prior = load_models(weights_dir, device)
    mats = quat_to_matrix(pose).to(device)
    body = mats[1:]
    codes0 = _encode(q, mats)
    m = samples * 2
    g = torch.Generator(device=device).manual_seed(int(seed))
    n_free = int(free.sum())
    k = max(1, round(strength * n_free))
    idx = torch.nonzero(free).flatten()
    change = torch.zeros(m, 21, dtype=torch.bool)
    for i in range(m):
        perm = idx[torch.randperm(n_free, generator=torch.Generator().manual_seed(int(seed) * 1000 + i))[:k]]
        change[i, perm] = True
    change = change.to(device)
    known = torch.cat([~change, torch.ones(m, 1, dtype=torch.bool, device=device)], 1)
    codes = t.sample(None, codes0.expand(m, -1, -1).clone(), known, steps=steps, guidance=1.0,
                     temperature=temperature, generator=g)
    with torch.no_grad():
        dec = q.decode(codes[:, :ROOT_TOKEN])
        dec = torch.where(change[..., None, None], dec, body[None])
        rot = torch.cat([mats[:1][None].expand(m, 1, 3, 3), dec], 1)
        implaus = _implausibility(prior, dec)
        pick = _select(-implaus, _positions(rot).cpu(), samples, min_dist=0.01)
    changed = [[JOINT_NAMES[j + 1] for j in range(21) if change[i, j]] for i in pick]
    return _result(rot[pick], {"match": np.zeros(len(pick), np.float32), "implausibility": implaus[pick].numpy(),
                               "codes": codes[pick].cpu().numpy(), "changed": changed})


def mix_poses(rotations_a, rotations_b, parts_from_b, *, weights_dir=None, device: str = "cpu") -> dict:
    """Mix two poses at the code level: the codes of ``parts_from_b`` (e.g. ``["arms"]``, names of
    ``PART_GROUPS`` / ``BODY_PARTS``) from pose B, the others from pose A, decoded together.
    The root orientation is A's.

    Returns:
        as :func:`generate_poses` with one candidate, plus ``"parts"``.
    Raises:
        Text2PoseError: bad poses, no or unknown parts.
    """
    a, b = _as_pose(rotations_a, "first pose"), _as_pose(rotations_b, "second pose")
    if not parts_from_b:
        raise Text2PoseError("Choose at least one body part to take from the second pose")
    try:
        joints = part_joints(list(parts_from_b))
    except ValueError as exc:
        raise Text2PoseError(str(exc)) from exc
    q, t, prior = load_models(weights_dir, device)
    ma, mb = quat_to_matrix(a).to(device), quat_to_matrix(b).to(device)
    with torch.no_grad():
        ca, cb = _encode(q, ma), _encode(q, mb)
        take = torch.cat([_body_mask(joints), torch.zeros(1, dtype=torch.bool)]).to(device)
        codes = torch.where(take[None, :, None], cb, ca)
        body = q.decode(codes[:, :ROOT_TOKEN])
        rot = torch.cat([ma[:1][None], body], 1)
        implaus = _implausibility(prior, body)
    return _result(rot, {"match": np.zeros(1, np.float32), "implausibility": implaus.numpy(),
                         "codes": codes.cpu().numpy(), "parts": list(parts_from_b)})


# --------------------------------------------------------------------------------------------
# service jobs
# --------------------------------------------------------------------------------------------

def _device(ctx: JobContext) -> str:
    from .jobs import resolve_device
    return resolve_device(ctx.device)


def _common(request: dict) -> dict:
    return {"weights_dir": request.get("weights_dir") or None}


def _plain(res: dict) -> dict:
    from ..service import to_plain
    return {k: to_plain(v) for k, v in res.items()}


def generate(request: dict, ctx: JobContext) -> dict:
    """Job ``generate``: ``{"prompt", "samples"=4, "seed"=0, "weights_dir", "text_encoder"}`` ->
    :func:`generate_poses`' result as lists."""
    ctx.progress(0.05, "Reading the prompt")
    res = generate_poses(request.get("prompt", ""), request.get("samples", 4), int(request.get("seed", 0)),
                         text_encoder=request.get("text_encoder") or None, device=_device(ctx), **_common(request))
    ctx.progress(1.0, "Candidates ready")
    return _plain(res)


def edit(request: dict, ctx: JobContext) -> dict:
    """Job ``edit``: ``{"rotations": (22, 4), "prompt", "samples", "seed", "pinned": [names],
    "parts": [names] or None}`` -> :func:`edit_poses`' result as lists."""
    ctx.progress(0.05, "Reading the instruction")
    res = edit_poses(request.get("rotations"), request.get("prompt", ""), request.get("samples", 4),
                     int(request.get("seed", 0)), pinned=request.get("pinned"), parts=request.get("parts"),
                     text_encoder=request.get("text_encoder") or None, device=_device(ctx), **_common(request))
    ctx.progress(1.0, "Edits ready")
    return _plain(res)


def variations(request: dict, ctx: JobContext) -> dict:
    """Job ``variations``: ``{"rotations": (22, 4), "strength", "samples", "seed", "pinned"}``."""
    ctx.progress(0.05, "Encoding the pose")
    res = variation_poses(request.get("rotations"), request.get("strength", 0.3), request.get("samples", 4),
                          int(request.get("seed", 0)), pinned=request.get("pinned"), device=_device(ctx),
                          **_common(request))
    ctx.progress(1.0, "Variations ready")
    return _plain(res)


def mix(request: dict, ctx: JobContext) -> dict:
    """Job ``mix``: ``{"rotations": (22, 4), "rotations_b": (22, 4), "parts": [names from B]}``."""
    ctx.progress(0.05, "Encoding both poses")
    res = mix_poses(request.get("rotations"), request.get("rotations_b"), request.get("parts"),
                    device=_device(ctx), **_common(request))
    ctx.progress(1.0, "Mix ready")
    return _plain(res)
