"""The `poseforge` command: data, training, benchmarks and the job server, outside Blender.

Subcommands import their modules lazily so `poseforge --help` stays fast and torch loads only
when a model is needed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path


def default_cache() -> Path:
    """Folder for unpacked mocap and canonical caches: $POSEFORGE_CACHE, else ~/.cache/poseforge."""
    return Path(os.environ.get("POSEFORGE_CACHE", Path.home() / ".cache" / "poseforge"))


def _lazy(target: str):
    """argparse handler that imports ``module:function`` on use (relative to this package)."""
    def run(args: argparse.Namespace) -> int:
        mod_name, fn_name = target.split(":")
        mod = importlib.import_module(mod_name, __package__)
        return getattr(mod, fn_name)(args) or 0
    return run


def _model_trainer(train, name: str, help: str, target: str, resume: bool = True,
                   config_help: str = "JSON object overriding model or training settings",
                   data_help: str = "BVH folder or canonical cache (repeatable)") -> None:
    """``poseforge train <name>``: the options every model trainer takes."""
    t = train.add_parser(name, help=help)
    t.add_argument("--data", type=Path, action="append", required=True, help=data_help)
    t.add_argument("--out", type=Path, default=None, help="weights folder (default: the shipped backend/weights)")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    if resume:
        t.add_argument("--resume", action="store_true", help="resume from the checkpoint in --out")
    t.add_argument("--config", default=None, help=config_help)
    t.set_defaults(func=_lazy(target))


def _text2pose_commands(sub) -> None:
    """``poseforge generate | edit | variations | mix``: pose JSON files (see tasks/text2pose_cli.py)."""
    fmt = ("Pose files: {\"joints\": the 22 canonical names, \"positions\": N x 22 x 3 (metres, Y up, pelvis "
           "at the origin), \"rotations\": N x 22 x 4 (local quaternions w, x, y, z)}. An input pose is such a "
           "file (--index picks a candidate) or a single pose {\"joints\", \"rotations\": 22 x 4}; joints may "
           "come in any order.")

    def models(c, text: bool = True) -> None:
        c.add_argument("--out", type=Path, required=True, help="output .json (written atomically)")
        c.add_argument("--weights-dir", type=Path, default=None,
                       help="QPoser / text2pose / DPoser weights (default: the shipped ones)")
        if text:
            c.add_argument("--text-encoder", type=Path, default=None,
                           help="local sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)")
        c.add_argument("--device", default="auto", help="auto, cpu or cuda")
        c.set_defaults(func=_lazy(".tasks.text2pose_cli:cli_main"))

    g = sub.add_parser("generate", help="poses from a text prompt (JSON)", description=fmt)
    g.add_argument("--prompt", required=True, help="what the pose should do, e.g. 'raise the left arm'")
    g.add_argument("--samples", type=int, default=4, help="number of candidates (1-64)")
    g.add_argument("--seed", type=int, default=0, help="the same seed gives the same candidates")
    models(g)

    e = sub.add_parser("edit", help="edit a pose with an instruction; only the body parts it names change",
                       description=fmt + " The output adds \"parts\", \"changed\" (joints re-predicted) and "
                                         "\"message\".")
    e.add_argument("--pose", type=Path, required=True, help="input pose file")
    e.add_argument("--index", type=int, default=0, help="candidate of the input file to edit (default 0)")
    e.add_argument("--prompt", required=True, help="the instruction, e.g. 'bend the knees more'")
    e.add_argument("--samples", type=int, default=4, help="number of candidates (1-64)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--pinned", default=None, help="comma-separated joints that must not move, e.g. left_wrist,head")
    e.add_argument("--parts", default=None,
                   help="comma-separated body parts to change (arms, legs, torso, head, left_arm, ...; "
                        "default: those the instruction names)")
    models(e)

    v = sub.add_parser("variations", help="variations of a pose: re-sample a share of its joints",
                       description=fmt)
    v.add_argument("--pose", type=Path, required=True, help="input pose file")
    v.add_argument("--index", type=int, default=0, help="candidate of the input file (default 0)")
    v.add_argument("--strength", type=float, default=0.3, help="share of the joints re-sampled, in (0, 1]")
    v.add_argument("--samples", type=int, default=4, help="number of candidates (1-64)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--pinned", default=None, help="comma-separated joints that must not move")
    models(v, text=False)

    m = sub.add_parser("mix", help="mix two poses: body parts of the second with the rest of the first",
                       description=fmt)
    m.add_argument("--pose", type=Path, required=True, help="first pose file (the rest of the body)")
    m.add_argument("--index", type=int, default=0)
    m.add_argument("--pose-b", type=Path, required=True, help="second pose file (the body parts in --parts)")
    m.add_argument("--index-b", type=int, default=0)
    m.add_argument("--parts", required=True, help="comma-separated body parts taken from --pose-b, e.g. arms "
                                                  "(arms, legs, torso, head, left_arm, ...)")
    models(m, text=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poseforge", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="mocap data").add_subparsers(dest="data_command", required=True)
    b = data.add_parser("build", help="retarget a folder of BVH clips onto the canonical body and cache them (npz)")
    b.add_argument("--bvh-dir", type=Path, action="append", required=True, help="folder of .bvh files (repeatable)")
    b.add_argument("--out", type=Path, default=None, help="cache folder (default: $POSEFORGE_CACHE/canonical)")
    b.add_argument("--preset", default=None, help="BVH skeleton preset (default: detected from bone names)")
    b.set_defaults(func=_lazy(".data.dataset:cli_build"))
    pv = data.add_parser("preview-set", help="render training data of the textured preview (DMM): characters "
                                             "animated with mocap, random textures, label maps (needs bpy)")
    pv.add_argument("--out", type=Path, default=None, help="dataset folder (default: $POSEFORGE_CACHE/preview)")
    pv.add_argument("--clips", type=int, default=200, help="number of clips (about a tenth are held-out test clips)")
    pv.add_argument("--frames", type=int, default=16, help="frames per clip (30 fps)")
    pv.add_argument("--resolution", type=int, default=128, help="square image size in pixels")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--engine", choices=["cycles", "eevee"], default="cycles",
                    help="ground-truth renderer (EEVEE runs on the CPU through Mesa: far slower here)")
    pv.add_argument("--samples", type=int, default=16, help="render samples per pixel of the ground truth")
    pv.add_argument("--mocap", type=Path, default=None,
                    help="canonical mocap cache (default: $POSEFORGE_CACHE/canonical)")
    pv.add_argument("--character", action="append", default=None,
                    help="'default' (the built-in body), a .blend/.gltf/.glb/.fbx file or a folder of them "
                         "(repeatable; default: the built-in body and ../shared/data/characters)")
    pv.add_argument("--test-fraction", type=float, default=0.1, help="share of held-out test clips")
    pv.set_defaults(func=_lazy(".data.preview_cli:cli_main"))

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    _model_trainer(train, "dposer", "DPoser score model on canonical poses", ".train.dposer:cli_main",
                   config_help='JSON object overriding model or training settings, e.g. \'{"hidden": 512, "batch": 256}\'')
    t = train.add_parser("baselines", help="GMM and VPoser-style VAE pose priors (benchmark baselines)")
    t.add_argument("--data", type=Path, action="append", required=True)
    t.add_argument("--out", type=Path, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_lazy(".train.baselines:cli_main"))
    _model_trainer(train, "gfpose", "GFPose-style conditional score model for in-betweening (motion windows)",
                   ".train.gfpose:cli_main")
    _model_trainer(train, "qposer", "QPoser pose tokenizer (multi-head VQ-VAE with global-local integration)",
                   ".train.qposer:cli_main", resume=False)
    train.choices["qposer"].add_argument("--init", type=Path, default=None,
                                         help="start from these trained weights and run phase 2 only (prior_steps)")
    _model_trainer(train, "text2pose", "text to QPoser codes (masked code transformer) and the text-pose matching model",
                   ".train.text2pose:cli_main")
    t = train.choices["text2pose"]
    t.add_argument("--qposer-dir", type=Path, default=None, help="QPoser tokenizer weights (default: the shipped ones)")
    t.add_argument("--text-encoder", type=Path, default=None,
                   help="local sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)")
    _model_trainer(train, "dmm", "DMM textured preview: video pose transfer from a reference image "
                                 "(bidirectionally deformable motion modulation)", ".train.dmm:cli_main",
                   config_help='JSON object overriding model or training settings, e.g. '
                               '\'{"variant": "conv", "frames": 8, "base": 32}\' (variant: dmm, conv, forward)',
                   data_help="preview dataset folder made by `poseforge data preview-set`")

    bench = sub.add_parser("bench", help="benchmarks (print a table, write JSON)").add_subparsers(dest="bench", required=True)
    s = bench.add_parser("snap", help="pose prior: denoising and completion MPJPE, latency")
    s.add_argument("--data", type=Path, action="append", required=True)
    s.add_argument("--split", choices=["test", "all"], default="test")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--poses", type=int, default=500, help="number of test poses (evenly spaced)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quick", action="store_true", help="a few poses and steps: checks the pipeline, not the numbers")
    s.set_defaults(func=_lazy(".bench.snap:cli_main"))

    s = bench.add_parser("inbetween", help="in-betweening: the LaFAN1 protocol (L2Q, L2P, NPSS), latency")
    s.add_argument("--data", type=Path, action="append", required=True, help="canonical cache or BVH folder")
    s.add_argument("--split", choices=["test", "all"], default="test")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--hypotheses", type=int, default=8, help="stochastic hypotheses per window (best-of / mean rows)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--weights-dir", type=Path, default=None, help="GFPose weights (default: the shipped ones)")
    s.add_argument("--device", default="auto")
    s.add_argument("--quick", action="store_true", help="a few windows: checks the pipeline, not the numbers")
    s.set_defaults(func=_lazy(".bench.inbetween:cli_main"))

    s = bench.add_parser("text2pose", help="text to pose: prompt-suite checks, diversity (APD), latency, "
                                          "plausibility, edits")
    s.add_argument("--prompts", type=Path, required=True,
                   help="prompt suite (.jsonl: prompt, checks, wording), e.g. presets/prompts/suite.jsonl")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--samples", type=int, default=4, help="candidates per prompt")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data", type=Path, default=None,
                   help="canonical cache for the mocap plausibility reference and the edited poses "
                        "(default: $POSEFORGE_CACHE/canonical when present, else skipped with a note)")
    s.add_argument("--weights-dir", type=Path, default=None, help="QPoser / text2pose / DPoser weights "
                                                                   "(default: the shipped ones)")
    s.add_argument("--text-encoder", type=Path, default=None,
                   help="local sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)")
    s.add_argument("--device", default="auto")
    s.add_argument("--quick", action="store_true", help="a few prompts and poses: checks the pipeline, not the numbers")
    s.set_defaults(func=_lazy(".bench.text2pose:cli_main"))

    s = bench.add_parser("preview", help="textured preview (DMM): PSNR, SSIM, L1, flicker against the ground-truth "
                                        "render on held-out clips, the ablations, latency, a PNG strip")
    s.add_argument("--out", type=Path, required=True, help="output .json")
    s.add_argument("--data", type=Path, default=None,
                   help="preview dataset (default: $POSEFORGE_CACHE/preview, as `poseforge data preview-set`)")
    s.add_argument("--weights", "--weights-dir", dest="weights_dir", type=Path, default=None,
                   help="folder of dmm, dmm_conv, dmm_forward weights (default: the shipped ones)")
    s.add_argument("--clips", type=int, default=None, help="evaluate this many held-out clips (default all)")
    s.add_argument("--strip", type=Path, default=None, help="write a PNG strip of frames of one held-out clip")
    s.add_argument("--latency-frames", type=int, default=120,
                   help="frames of the CPU latency run (0 skips it)")
    s.add_argument("--device", default="auto", help="where the metric renders run (the latency is on the CPU)")
    s.set_defaults(func=_lazy(".bench.preview:cli_main"))

    ib = sub.add_parser("inbetween", help="keep only the listed frames of a BVH and fill the rest")
    ib.add_argument("--bvh", type=Path, required=True, help="input BVH clip")
    ib.add_argument("--keys", required=True, help="comma-separated frame numbers to keep, e.g. 0,30,60 (first frame is 0)")
    ib.add_argument("--out", type=Path, required=True, help="output BVH (same skeleton as the input)")
    ib.add_argument("--preset", default=None, help="BVH skeleton preset (default: detected from bone names)")
    ib.add_argument("--hypothesis", type=int, default=0, help="0 = the deterministic answer, 1.. = a stochastic sample")
    ib.add_argument("--seed", type=int, default=0)
    ib.add_argument("--foot-contact", action="store_true", help="keep feet from sliding while in contact")
    ib.add_argument("--weights-dir", type=Path, default=None)
    ib.add_argument("--device", default="auto")
    ib.set_defaults(func=_lazy(".tasks.inbetween_cli:cli_main"))

    _text2pose_commands(sub)

    srv = sub.add_parser("serve", help="job server: JSON lines on stdin/stdout (used by the Blender add-on)")
    srv.add_argument("--device", default="auto")
    srv.set_defaults(func=_lazy(".transport:serve_stdio"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `poseforge` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
