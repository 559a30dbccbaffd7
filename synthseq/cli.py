"""The ``synthseq`` command line: the only place with argument parsing.

Each subcommand is registered by one ``_add_<command>`` function that builds its parser and points
``func`` at a small handler; handlers import the library lazily (so ``--help`` is instant) and call
functions that take plain Python arguments. Errors a user can cause (:class:`~synthseq.errors.SynthseqError`)
are printed as one line on stderr with exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import SynthseqError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# ------------------------------------------------------------------------------------------- subcommands
def _add_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="print a volume's shape, voxel size, orientation, dtype and intensity percentiles",
        description="Describe a NIfTI file or DICOM series folder: shape, voxel size (mm), orientation code "
        "(e.g. PSR), on-disk dtype and intensity percentiles.",
        formatter_class=_formatter,
    )
    p.add_argument("files", nargs="+", type=Path, help="NIfTI files (.nii/.nii.gz) or DICOM series folders")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from .io import describe_volume, load_volume

    for path in args.files:
        info = describe_volume(load_volume(path, allow_zero=True))
        if args.json:
            print(json.dumps(info))
            continue
        pct = "  ".join(f"{k}={v:.4g}" for k, v in info["percentiles"].items())
        vox = " x ".join(f"{s:g}" for s in info["voxel_size_mm"])
        print(f"{info['path']}\n  shape {tuple(info['shape'])}  voxel {vox} mm  orientation {info['orientation']}"
              f"  dtype {info['dtype']}\n  intensity {pct}")
    return 0


def _add_phantom(sub) -> None:
    p = sub.add_parser(
        "phantom",
        help="generate the physics-based cervical spine injury phantom (paired T2w/STIR + cohort)",
        description="Write a synthetic cohort: DIR/dataset.json, DIR/cohort.csv and per subject "
        "sub-XXXX_{T2w,STIR,labels,lesions}.nii.gz. Same seed -> identical files.",
        formatter_class=_formatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (must be empty unless --overwrite)")
    p.add_argument("--subjects", type=int, default=8, help="number of subjects (default: 8)")
    p.add_argument("--preset", choices=["default", "tiny"], default="default",
                   help="default: ~256x256 in-plane at ~1 mm, 3 mm slices; tiny: 64x64 for tests and CPU demos")
    p.add_argument("--field", type=float, choices=[1.5, 3.0], default=1.5, help="field strength in tesla (default 1.5)")
    p.add_argument("--misregistration-mm", type=float, default=0.0,
                   help="random rigid T2w/STIR misregistration of up to this many mm (default 0)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png (T2w | STIR | labels)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    p.set_defaults(func=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> int:
    from .phantom import generate_dataset

    if args.subjects < 1:
        raise SynthseqError(f"--subjects must be at least 1, got {args.subjects}")
    out = generate_dataset(
        args.out, subjects=args.subjects, seed=args.seed, preset=args.preset, field_strength=args.field,
        preview=args.preview, overwrite=args.overwrite, misregistration_mm=args.misregistration_mm,
    )
    print(f"wrote {args.subjects} subject(s) to {out}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train pix2pix or CycleGAN from a YAML config (same as `python train.py`)",
        description="Train a GAN from a YAML config with dotted overrides, e.g.\n"
        "  synthseq train configs/pix2pix_cpu_tiny.yaml train.steps=200 data.root=phantom/\n"
        "Multi-GPU: torchrun --nproc_per_node N train.py CONFIG [overrides]. Resume: train.resume=true.",
        formatter_class=_formatter,
    )
    p.add_argument("config", type=Path, help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (e.g. train.steps=100)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    return train_main([str(args.config), *args.overrides], seed=args.seed_given)


def train_main(argv: Sequence[str], seed: int | None = None) -> int:
    """Shared body of ``synthseq train`` and ``python train.py``: CONFIG [key=value ...]."""
    from .config import load_config

    if not argv:
        raise SynthseqError("missing CONFIG (usage: train.py CONFIG [key.sub=value ...])")
    overrides = list(argv[1:])
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    cfg = load_config(argv[0], overrides)  # validate before importing torch-heavy modules
    from .training import run

    run_dir = run(cfg)
    print(f"run directory: {run_dir}")
    return 0


def _add_synthesize(sub) -> None:
    p = sub.add_parser(
        "synthesize",
        help="T2w volume(s) -> pseudo-STIR on the same grid, from a trained checkpoint",
        description="Synthesize pseudo-STIR from T2w. A file gives a file; a folder maps every *_T2w.nii.gz to "
        "*_pseudoSTIR.nii.gz. Output has the input's exact affine and shape; inputs are never overwritten.",
        formatter_class=_formatter,
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (.pt) written by synthseq train")
    p.add_argument("--input", required=True, type=Path, help="T2w NIfTI file, DICOM folder, or folder of *_T2w.nii.gz")
    p.add_argument("--output", required=True, type=Path, help="output .nii.gz file, or folder in folder mode")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default from checkpoint)")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write a voxel-wise uncertainty map (*_uncertainty.nii.gz) from test-time sampling")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never the input)")
    p.set_defaults(func=_run_synthesize)


def _run_synthesize(args: argparse.Namespace) -> int:
    from .synthesis import synthesize_path

    outputs = synthesize_path(
        args.checkpoint, args.input, args.output, device=args.device, batch_size=args.batch_size,
        uncertainty=args.uncertainty, overwrite=args.overwrite, seed=args.seed,
    )
    for path in outputs:
        print(path)
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="image- and lesion-level metrics of pseudo-STIR against real STIR, with baselines and a report",
        description="Compare predictions with targets (files, or phantom-layout folders): metrics.csv, "
        "summary.json (means with 95% bootstrap CIs) and report.html with montages.",
        formatter_class=_formatter,
    )
    p.add_argument("--pred", required=True, type=Path, help="pseudo-STIR file or folder (*_pseudoSTIR.nii.gz)")
    p.add_argument("--target", required=True, type=Path, help="real STIR file or phantom-layout folder")
    p.add_argument("--input", type=Path, default=None, help="T2w file/folder (for baselines and montages)")
    p.add_argument("--lesions", type=Path, default=None, help="lesion mask file/folder (lesion-level metrics)")
    p.add_argument("--mask", type=Path, default=None, help="body mask or tissue-label file/folder")
    p.add_argument("--out", required=True, type=Path, help="output folder for metrics.csv, summary.json, report")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_paths

    report = evaluate_paths(args.pred, args.target, args.out, inputs=args.input, lesions=args.lesions,
                            mask=args.mask, seed=args.seed)
    print(f"report: {report}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="phantom -> train pix2pix -> synthesize held-out subjects -> evaluate -> report",
        description="The whole path on the embedded phantom (tiny preset on CPU, default preset on GPU).",
        formatter_class=_formatter,
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default depends on the device)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.out, device=args.device, seed=args.seed, steps=args.steps)
    print(f"demo finished; open {report}")
    return 0


def _add_classify(sub) -> None:
    """``synthseq classify train|predict`` (owned by synthseq.downstream)."""


def _add_outcome(sub) -> None:
    """``synthseq outcome fit|predict|explain`` (owned by synthseq.downstream)."""


def _add_utility(sub) -> None:
    """``synthseq utility`` (owned by synthseq.downstream)."""


def _add_reader_study(sub) -> None:
    """``synthseq reader-study build|serve|export|analyze`` (owned by synthseq.reader_study)."""


_REGISTRY = (
    _add_info, _add_phantom, _add_train, _add_synthesize, _add_evaluate, _add_demo,
    _add_classify, _add_outcome, _add_utility, _add_reader_study,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="synthseq",
        description="GAN-based MRI sequence synthesis for spine imaging: T2w -> pseudo-STIR with pix2pix / "
        "CycleGAN, lesion-level evaluation, downstream models and reader studies.",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"synthseq {__version__}")
    parser.add_argument("--seed", type=int, default=None, help="random seed for every random choice (default 0)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _REGISTRY:
        add(sub)
    _add_common_options(parser)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)subcommand ``--seed`` and ``--debug`` too, so they work after the command name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                                   help="random seed (default 0); the same seed gives the same files")
                child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                   help="show full tracebacks on errors")
                _add_common_options(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synthseq`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    args.seed_given = args.seed
    if args.seed is None:
        args.seed = 0
    from .utils import seed_everything

    seed_everything(args.seed)
    try:
        return int(args.func(args) or 0)
    except SynthseqError as exc:
        if args.debug:
            raise
        print(f"synthseq: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthseq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
