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

from ._version import __version__
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
        help="print a volume's shape, voxel size, orientation, dtype and intensity percentiles, or a checkpoint's "
        "model card",
        description="Describe a NIfTI file or DICOM series folder: shape, voxel size (mm), orientation code "
        "(e.g. PSR), on-disk dtype and intensity percentiles. For a checkpoint (.pt): print its model card "
        "(training data, inputs, metrics, intended use, known failure modes).",
        formatter_class=_formatter,
    )
    p.add_argument("files", nargs="+", type=Path,
                   help="NIfTI files (.nii/.nii.gz), DICOM series folders or checkpoints (.pt)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--attach-evaluation", type=Path, default=None, metavar="SUMMARY",
                   help="checkpoint only: first add the test results of an evaluation summary.json (synthseq "
                   "evaluate) to its model card, in the checkpoint and in MODEL_CARD.md beside it")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from .io import describe_volume, load_volume

    if args.attach_evaluation is not None and (len(args.files) != 1 or args.files[0].suffix != ".pt"):
        raise SynthseqError("--attach-evaluation: give exactly one checkpoint (.pt)")
    for path in args.files:
        if path.suffix == ".pt":
            from .training.checkpoint import load_checkpoint
            from .training.model_card import attach_evaluation, model_card_of

            if args.attach_evaluation is not None:
                attach_evaluation(path, args.attach_evaluation)
            card = model_card_of(load_checkpoint(path), path)
            print(json.dumps({"path": str(path), "model_card": card}) if args.json else card)
            continue
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
    p.add_argument("--realism", choices=["classic", "faithful", "randomized"], default="classic",
                   help="classic: the original phantom; faithful: patient-like anatomy, texture and acquisition "
                   "physics (k-space, coil, vendor-like protocols); randomized: faithful with widened ranges "
                   "(domain randomization for training). Default: classic")
    p.add_argument("--stir-te", type=float, default=None, metavar="MS",
                   help="acquire every STIR at this echo time (ms) instead of a per-subject draw; the inputs, labels "
                   "and noise stay identical to the drawn-TE phantom of the same seed (default: drawn, 35-60 ms in "
                   "classic mode)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png (T2w | STIR | labels)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    p.set_defaults(func=_run_phantom)


MAX_MISREGISTRATION_MM = 20.0  #: beyond this a shift is not a misregistration but another field of view


def _run_phantom(args: argparse.Namespace) -> int:
    from .phantom import generate_dataset
    from .phantom.generate import check_stir_te

    if args.subjects < 1:
        raise SynthseqError(f"--subjects must be at least 1, got {args.subjects}")
    if not 0.0 <= args.misregistration_mm <= MAX_MISREGISTRATION_MM:  # also false for nan; inf is out of range
        raise SynthseqError(f"--misregistration-mm: expected a finite number of mm in [0, {MAX_MISREGISTRATION_MM:g}], "
                            f"got {args.misregistration_mm}")
    check_stir_te(args.stir_te, "--stir-te")  # named as the option, before anything is written
    out = generate_dataset(
        args.out, subjects=args.subjects, seed=args.seed, preset=args.preset, field_strength=args.field,
        preview=args.preview, overwrite=args.overwrite, misregistration_mm=args.misregistration_mm,
        realism=args.realism, stir_te_ms=args.stir_te,
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
        "*_pseudoSTIR.nii.gz (a BIDS folder or CSV manifest: each subject's T2w). Slices are cut in the plane the "
        "model was trained in (stored in the checkpoint). Output has the input's exact affine and shape; inputs are never overwritten.",
        formatter_class=_formatter,
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (.pt) written by synthseq train")
    p.add_argument("--input", required=True, type=Path, help="T2w NIfTI file, DICOM folder, or folder of *_T2w.nii.gz")
    p.add_argument("--output", type=Path, default=None,
                   help="output .nii.gz file, or folder in folder mode (required, except for a BIDS dataset input: "
                   "default <input>/derivatives/synthseq)")
    p.add_argument("--dicom-out", type=Path, default=None, metavar="DIR",
                   help="DICOM series --input only: also write the pseudo-STIR as a new DICOM series (same geometry, "
                   "study and patient; marked SYNTHETIC, DERIVED\\SECONDARY) into the new folder DIR")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default from checkpoint)")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write a voxel-wise uncertainty map (*_uncertainty.nii.gz) from test-time sampling")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never the input)")
    p.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="only the subjects of this split of the checkpoint's run (dataset / folder input)")
    p.add_argument("--subjects", default=None, help="only these subject ids (comma-separated)")
    p.add_argument("--extra", action="append", default=None, metavar="KEY=FILE",
                   help="another input of a multi-input model, e.g. --extra T1w=sub-01_T1w.nii.gz (repeatable; any "
                   "grid: resampled onto the --input T2w's). Folder mode reads <subject>_T1w.nii.gz beside each "
                   "<subject>_T2w.nii.gz instead")
    p.add_argument("--register", action="store_true",
                   help="refine the resampling of --extra inputs onto the T2w grid by rigid NCC registration")
    p.add_argument("--no-erasure-check", dest="erasure_check", action="store_false",
                   help="skip the erasure check (default: flag T2w foci the pseudo-STIR hides and pseudo-STIR foci no "
                   "input supports; writes *_flags.nii.gz beside each output, counts on stderr and in the sidecar)")
    p.add_argument("--engine", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="what runs the generator: torch, or onnxruntime (the generator exported to ONNX in memory; "
                   "CPU only); auto (default): the faster one measured on the CPU (benchmarks/RESULTS.md), torch "
                   "on CUDA. A --checkpoint written by `synthseq export` runs as exported")
    p.set_defaults(func=_run_synthesize)


def _run_synthesize(args: argparse.Namespace) -> int:
    from .synthesis import synthesize_path

    outputs = synthesize_path(
        args.checkpoint, args.input, args.output, device=args.device, batch_size=args.batch_size,
        uncertainty=args.uncertainty, overwrite=args.overwrite, seed=args.seed, split=args.split,
        subjects=_id_list(args.subjects), extra=_key_files(args.extra), register=args.register,
        erasure_check=args.erasure_check,
        dicom_out=args.dicom_out, engine=args.engine,
    )
    for path in outputs:
        print(path)
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint's generator as ONNX or TorchScript (runs without synthseq) + preprocessing JSON",
        description="Export the generator of a pix2pix / CycleGAN checkpoint, e.g.\n"
        "  synthseq export runs/pix2pix/best.pt --format onnx generator.onnx\n"
        "writes generator.onnx (ONNX Runtime runs it; TorchScript: torch.jit.load) and generator.onnx.json (the "
        "preprocessing, provenance and the export check: exported vs torch output within 1e-3). "
        "`synthseq synthesize --checkpoint generator.onnx` uses it.",
        formatter_class=_formatter,
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint (.pt) written by synthseq train")
    p.add_argument("out", type=Path, help="model file to write (e.g. generator.onnx); OUT.json goes beside it")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default onnx")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    model, side = export_checkpoint(args.checkpoint, args.out, args.format, overwrite=args.overwrite, seed=args.seed)
    meta = json.loads(side.read_text())
    print(f"wrote {model} ({args.format}; max |exported - torch| = {meta['export_check']['max_abs_diff_vs_torch']:.1e})"
          f" and {side}")
    return 0


def _key_files(items: list[str] | None) -> dict[str, Path]:
    """``["T1w=a.nii.gz"]`` -> ``{"T1w": Path("a.nii.gz")}`` (one-line InputError for a malformed or repeated key)."""
    from .errors import InputError

    out: dict[str, Path] = {}
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep or not key.strip() or not path.strip():
            raise InputError(f"--extra {item}: expected KEY=FILE, e.g. --extra T1w=sub-01_T1w.nii.gz")
        if key.strip() in out:
            raise InputError(f"--extra {key.strip()}: given twice")
        out[key.strip()] = Path(path.strip())
    return out


def _add_dataset(sub) -> None:
    """``synthseq dataset check`` (owned by synthseq.data.qc)."""
    p = sub.add_parser(
        "dataset",
        help="check a dataset (phantom layout, BIDS or CSV) before training: sequences, grids, pairs, contrasts",
        description="synthseq dataset check DATA --out QC/: per subject the sequences found, shape, voxel size, "
        "orientation, intensity range, grid overlap, NCC before/after rigid refinement and flags (no target, "
        "misregistered pair, suspected wrong contrast from fat/CSF heuristics); QC/index.html with checkerboard "
        "overlays and QC/qc.json. Exit status 1 (every unusable subject named on stderr) when any is unusable. "
        "Training runs the same checks and refuses unusable pairs.",
        formatter_class=_formatter,
    )
    dsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    c = dsub.add_parser("check", help="check every subject and write an HTML / JSON report",
                        formatter_class=_formatter)
    c.add_argument("data", type=Path, help="phantom-layout folder, BIDS folder or manifest CSV")
    c.add_argument("--out", required=True, type=Path, help="report folder (must be empty unless --overwrite)")
    c.add_argument("--inputs", default="T2w", help="input sequence key(s), comma-separated (default T2w)")
    c.add_argument("--target", default="STIR", help="target sequence key (default STIR)")
    c.add_argument("--bids", action="append", default=[], metavar="KEY=PATTERN",
                   help="BIDS key map entry, e.g. STIR=acq-tirm_T2w (repeatable)")
    c.add_argument("--sessions", choices=["separate", "grouped"], default="separate", help="BIDS sessions")
    c.add_argument("--register", action="store_true",
                   help="the run will refine pairs rigidly (data.register): misregistration is then a warning")
    c.add_argument("--slice-plane", default="sagittal", help="plane of the checkerboard slices (default sagittal)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    c.set_defaults(func=_run_dataset_check)
    d = dsub.add_parser("import-dicom", help="sort a DICOM study folder by series, recognise T2w/STIR/T1w, write NIfTI",
                        description="Sort every DICOM image under STUDY by series (like dcm2niix), recognise each "
                        "series from SeriesDescription / ProtocolName / ScanningSequence / InversionTime (STIR: "
                        "inversion recovery with TI 130-250 ms) and write OUT/sub-ID/anat/sub-ID_<key>.nii.gz plus "
                        "OUT/sub-ID/series.tsv; mixed or incomplete series stop it with one line naming the series.",
                        formatter_class=_formatter)
    d.add_argument("study", type=Path, help="folder with the study's DICOM files (any depth, any names)")
    d.add_argument("--out", required=True, type=Path, help="dataset folder to add the subject to")
    d.add_argument("--subject", default=None, help="subject id (default: sub-<PatientID>)")
    d.add_argument("--series", action="append", default=[], metavar="ID=KEY",
                   help="override: series NUMBER, UID or description -> key (T2w, STIR, T1w, or 'other' to skip)")
    d.add_argument("--overwrite", action="store_true", help="replace the subject's folder if it exists")
    d.set_defaults(func=_run_import_dicom)


def _run_import_dicom(args: argparse.Namespace) -> int:
    from .data.dicom import import_study
    from .errors import ConfigError

    overrides = {}
    for item in args.series:
        ident, sep, key = item.partition("=")
        if not sep or not ident.strip() or not key.strip():
            raise ConfigError(f"--series {item}: expected ID=KEY, e.g. 7=STIR")
        overrides[ident.strip()] = key.strip()
    dest, rows = import_study(args.study, args.out, args.subject, overrides, overwrite=args.overwrite)
    for r in rows:
        print(f"series {r['series']} {r['description']!r} ({r['images']} images): "
              f"{r['key'] or 'skipped'} ({r['why']})")
    print(dest)
    return 0


def _run_dataset_check(args: argparse.Namespace) -> int:
    from .data.layout import load_subjects
    from .data.qc import check_subjects, write_report
    from .data.slicing import PLANE_CHOICES
    from .errors import ConfigError, InputError

    bids = {}
    for item in args.bids:
        key, sep, pattern = item.partition("=")
        if not sep or not key.strip() or not pattern.strip():
            raise ConfigError(f"--bids {item}: expected KEY=PATTERN, e.g. STIR=acq-tirm_T2w")
        bids.setdefault(key.strip(), []).append(pattern.strip())
    if args.slice_plane not in PLANE_CHOICES:
        raise ConfigError(f"--slice-plane: expected one of {', '.join(PLANE_CHOICES)}, got {args.slice_plane!r}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())) and not args.overwrite:
        raise InputError(f"{args.out}: already exists and is not empty (use --overwrite to replace it)")
    subjects = load_subjects(args.data, bids=bids, sessions=args.sessions)
    inputs = _id_list(args.inputs) or ["T2w"]
    reports = check_subjects(subjects, inputs, args.target, register=args.register, slice_plane=args.slice_plane)
    page = write_report(reports, args.out, source=str(args.data), overwrite=args.overwrite)
    bad = [r for r in reports if not r.usable]
    warned = sum(1 for r in reports for lv, _ in r.flags if lv == "warn")
    print(f"{len(reports)} subject(s) checked, {len(bad)} unusable, {warned} warning(s): {page}")
    for r in bad:
        print(f"synthseq: unusable: {r.subject}: {'; '.join(r.errors)}", file=sys.stderr)
    return 1 if bad else 0


def _add_resample(sub) -> None:
    p = sub.add_parser(
        "resample",
        help="put a volume onto another volume's grid (e.g. a STIR onto its T2w), from the affines",
        description="Resample MOVING onto the grid (shape and affine) of --like, from the two affines (no "
        "registration): linear interpolation for images, nearest neighbour for label / lesion maps (--labels). "
        "Voxels outside MOVING's field of view become 0. Written atomically as NIfTI (float32 for images, the "
        "input's type for labels); the input is never overwritten.",
        formatter_class=_formatter,
    )
    p.add_argument("moving", type=Path, help="NIfTI file or DICOM series folder to resample")
    p.add_argument("--like", required=True, type=Path, help="reference volume whose grid the output gets")
    p.add_argument("--out", required=True, type=Path, help="output .nii or .nii.gz")
    p.add_argument("--labels", action="store_true", help="nearest neighbour (codes stay codes) instead of linear")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_run_resample)


def _run_resample(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.layout import strip_nifti
    from .data.registration import overlap_fraction, resample_to
    from .errors import InputError
    from .io import load_volume, save_volume

    if strip_nifti(args.out.name) is None:
        raise InputError(f"{args.out}: output must end in .nii or .nii.gz")
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out}: already exists (use --overwrite to replace it)")
    if args.out.resolve() in (args.moving.resolve(), args.like.resolve()):
        raise InputError(f"{args.out}: refusing to overwrite an input file")
    moving = load_volume(args.moving, allow_zero=True)
    like = load_volume(args.like, allow_zero=True)
    out = resample_to(moving, like, order=0 if args.labels else 1)
    if moving.header is not None:  # keep the moving volume's header fields (descriptions), on the new grid
        out.header = moving.header.copy()
    dtype = moving.header.get_data_dtype() if args.labels and moving.header is not None else np.float32
    written = save_volume(out, args.out, dtype=dtype, overwrite=args.overwrite)
    print(f"{written}  ({'nearest' if args.labels else 'linear'}; {overlap_fraction(moving, like):.0%} of the "
          f"reference grid inside {args.moving.name}'s field of view)")
    return 0


def _id_list(text: str | None) -> list[str] | None:
    """``"sub-01, sub-02"`` -> ``["sub-01", "sub-02"]`` (None stays None)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


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
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the model's checkpoint: predictions are scored in its preprocessing scale (default: what "
                        "each prediction's JSON sidecar records, else the default 0.5/99.5 percentile rule)")
    p.add_argument("--out", required=True, type=Path, help="output folder for metrics.csv, summary.json, report")
    p.add_argument("--train-subjects", default=None,
                   help="subjects that fit the fair baselines: a run's splits.json (its 'train' list) or "
                   "comma-separated ids (default: leave-one-subject-out over the evaluated subjects)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS (reported as not requested)")
    p.add_argument("--pred-norm", choices=["auto", "own", "input"], default="auto",
                   help="put predictions into [-1, 1] by their T2w's percentiles (input: the scale synthseq writes "
                   "them in; needs --input) or by their own (own); auto (default): input when --input is given")
    p.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="score only this split of the --checkpoint's run (it warns when scoring its train subjects)")
    p.add_argument("--subjects", default=None, help="score only these subject ids (comma-separated)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_paths, parse_train_subjects

    report = evaluate_paths(args.pred, args.target, args.out, inputs=args.input, lesions=args.lesions,
                            mask=args.mask, seed=args.seed, train_subjects=parse_train_subjects(args.train_subjects),
                            use_lpips=not args.no_lpips, pred_norm=args.pred_norm, checkpoint=args.checkpoint,
                            subjects=_id_list(args.subjects), split=args.split)
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
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    p.add_argument("--config", type=Path, default=None,
                   help="training config (default configs/pix2pix_cpu_tiny.yaml on CPU, pix2pix_t2_stir.yaml on GPU)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.out, device=args.device, seed=args.seed, steps=args.steps, config=args.config)
    print(f"demo finished; open {report}")
    return 0


def _add_classify(sub) -> None:
    """``synthseq classify train|predict`` (owned by synthseq.downstream)."""
    p = sub.add_parser(
        "classify",
        help="multi-label injury classifiers (fracture/marrow edema, PLC injury, cord edema) on sagittal stacks",
        description="Train a MONAI injury classifier from a YAML config (T2w, T2w+STIR or T2w+pseudo-STIR input) "
        "and evaluate it on held-out subjects (AUC with 95% CI, sensitivity/specificity, Grad-CAM PNGs), or "
        "apply a saved model to a folder.",
        formatter_class=_formatter,
    )
    csub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    t = csub.add_parser("train", help="train + evaluate from a config; writes OUT_DIR/model.ssmodel, metrics.json",
                        description="e.g. synthseq classify train configs/classifier_cpu_tiny.yaml "
                        "data=phantom/ input=t2w+stir", formatter_class=_formatter)
    t.add_argument("config", type=Path, help="YAML config (see configs/classifier_*.yaml)")
    t.add_argument("overrides", nargs="*", help="key=value overrides (e.g. epochs=5 input=t2w+stir)")
    t.set_defaults(func=_run_classify_train)
    q = csub.add_parser("predict", help="probabilities of a saved classifier for every subject of a folder",
                        formatter_class=_formatter)
    q.add_argument("--model", required=True, type=Path, help="model.ssmodel written by classify train")
    q.add_argument("--data", required=True, type=Path, help="phantom-layout folder (sub-*/sub-*_T2w.nii.gz ...)")
    q.add_argument("--out", required=True, type=Path, help="output CSV (subject, prob_<label>, pred_<label>)")
    q.add_argument("--checkpoint", type=Path, default=None,
                   help="synthesis checkpoint for a t2w+pseudostir model (default: the one in its config)")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never an input)")
    q.set_defaults(func=_run_classify_predict)


def _run_classify_train(args: argparse.Namespace) -> int:
    from .config import load_typed
    from .downstream.classifier import ClassifierConfig, train_classifier

    overrides = list(args.overrides) + ([f"seed={args.seed_given}"] if args.seed_given is not None else [])
    cfg = load_typed(ClassifierConfig, args.config, overrides).validate()
    metrics = train_classifier(cfg)
    for label, m in metrics["labels"].items():
        print(f"{label}: AUC {m['auc']:.3f} (95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f})  "
              f"sens {m['sensitivity']:.2f} spec {m['specificity']:.2f}  n={m['n']}")
    print(f"model: {Path(cfg.out_dir) / 'model.ssmodel'}")
    return 0


def _run_classify_predict(args: argparse.Namespace) -> int:
    from .downstream.classifier import predict_classifier

    check_output(args.out, {"--model": args.model, "--data": args.data, "--checkpoint": args.checkpoint},
                 args.overwrite)
    print(predict_classifier(args.model, args.data, args.out, checkpoint=args.checkpoint, device=args.device))
    return 0


def _add_outcome(sub) -> None:
    """``synthseq outcome fit|predict|explain`` (owned by synthseq.downstream)."""
    p = sub.add_parser(
        "outcome",
        help="ambulation / AIS-improvement predictors (gradient boosting, logistic regression) with SHAP",
        description="Fit an outcome model from a YAML config (stratified CV AUC with 95% CI, Brier score, "
        "calibration plot, van Middendorp baseline, SHAP), predict with it, or explain its predictions.",
        formatter_class=_formatter,
    )
    osub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    f = osub.add_parser("fit", help="cross-validate + fit from a config; writes OUT_DIR/model.ssmodel, metrics.json, "
                        "comparison.csv",
                        description="e.g. synthseq outcome fit configs/outcome_ambulation.yaml data=phantom/ "
                        "image_features=stir", formatter_class=_formatter)
    f.add_argument("config", type=Path, help="YAML config (see configs/outcome_*.yaml)")
    f.add_argument("overrides", nargs="*", help="key=value overrides (e.g. model=logreg target=ais_improvement)")
    f.set_defaults(func=_run_outcome_fit)
    for name, helptext in (("predict", "outcome probabilities for every cohort subject -> CSV"),
                           ("explain", "SHAP summary plot, values CSV and per-patient explanations")):
        q = osub.add_parser(name, help=helptext, formatter_class=_formatter)
        q.add_argument("--model", required=True, type=Path, help="model.ssmodel written by outcome fit")
        q.add_argument("--data", required=True, type=Path, help="phantom-layout folder or cohort CSV")
        q.add_argument("--out", required=True, type=Path,
                       help="output CSV" if name == "predict" else "output folder")
        q.add_argument("--checkpoint", type=Path, default=None,
                       help="synthesis checkpoint when the model uses pseudo-STIR features")
        if name == "predict":
            q.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never an input)")
        if name == "explain":
            q.add_argument("--subject", action="append", default=None,
                           help="subject to explain individually (repeatable; default: the first three)")
        q.set_defaults(func=_run_outcome_predict if name == "predict" else _run_outcome_explain)
    from .downstream.web.schema import API_SCHEMA

    v = osub.add_parser("serve", help="local web page: probability with interval, SHAP waterfall, van Middendorp, "
                        "model card; JSON API and batch CSV", formatter_class=_formatter,
                        description="Serve the outcome models given (never a path from a request) on a local web "
                        "page, e.g. synthseq outcome serve runs/outcome_ambulation/model.ssmodel. Research use "
                        "only, not a medical device.", epilog="JSON API (the page uses it):\n" + API_SCHEMA)
    v.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="model.ssmodel file(s) from outcome fit")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    v.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    v.add_argument("--checkpoint", type=Path, default=None,
                   help="synthesis checkpoint: an uploaded T2w gets a pseudo-STIR (and its image features)")
    v.add_argument("--device", default="auto", help="device for --checkpoint: auto | cpu | cuda")
    v.add_argument("--log-predictions", type=Path, default=None, metavar="FILE",
                   help="append every answer (inputs and probabilities) to this JSON-lines file; default: nothing "
                   "about a patient is stored or logged")
    v.add_argument("--max-upload-mb", type=float, default=64.0, help="request size limit in MB (default 64)")
    v.set_defaults(func=_run_outcome_serve)


def _run_outcome_fit(args: argparse.Namespace) -> int:
    from .config import load_typed
    from .downstream.outcome import OutcomeConfig, fit_outcome

    overrides = list(args.overrides) + ([f"seed={args.seed_given}"] if args.seed_given is not None else [])
    cfg = load_typed(OutcomeConfig, args.config, overrides).validate()
    m = fit_outcome(cfg)
    cv, vm = m["cv"], m["van_middendorp"]
    print(f"{cfg.target} ({cfg.model}, image features {cfg.image_features}): CV AUC {cv['auc']:.3f} "
          f"(95% CI {cv['auc_ci_low']:.3f}-{cv['auc_ci_high']:.3f}), Brier {cv['brier']:.3f}; "
          f"van Middendorp AUC {vm['auc']:.3f}")
    print(f"cross-validated comparison ({m['n']} subjects, same folds):")
    print(f"  {'model':<10} {'AUC':>6} {'95% CI':>13} {'Brier':>6}")
    for r in m["comparison"]:
        if "skipped" in r:
            print(f"  {r['model']:<10} skipped: {r['skipped']}")
        else:
            print(f"  {r['model']:<10} {r['auc']:6.3f} {r['auc_ci_low']:6.3f}-{r['auc_ci_high']:<6.3f} "
                  f"{r['brier']:6.3f}")
    print(f"model: {Path(cfg.out_dir) / 'model.ssmodel'}")
    return 0


def _run_outcome_serve(args: argparse.Namespace) -> int:
    from .downstream.web.app import create_app, serve_outcome
    from .web import check_port

    check_port(args.port)  # before the models load
    synth = None
    if args.checkpoint is not None:
        from .downstream.sources import synthesizer_from_checkpoint

        synth = synthesizer_from_checkpoint(args.checkpoint, args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    app = create_app([str(m) for m in args.models], synthesizer=synth, log_predictions=args.log_predictions,
                     max_upload_mb=args.max_upload_mb, host=args.host)
    serve_outcome(app, args.host, args.port, ready=lambda url: print(f"serving the outcome page on {url}/ "
                                                                    "(Ctrl+C to stop)", flush=True))
    return 0


def _run_outcome_predict(args: argparse.Namespace) -> int:
    from .downstream.outcome import predict_outcome

    check_output(args.out, {"--model": args.model, "--data": args.data, "--checkpoint": args.checkpoint},
                 args.overwrite)
    print(predict_outcome(args.model, args.data, args.out, checkpoint=args.checkpoint))
    return 0


def _run_outcome_explain(args: argparse.Namespace) -> int:
    from .downstream.outcome import explain_outcome

    res = explain_outcome(args.model, args.data, args.out, subjects=args.subject, checkpoint=args.checkpoint)
    print(f"SHAP additivity max error {res['additivity_max_error']:.2e}; wrote {len(res['files'])} plot(s) to "
          f"{args.out}")
    return 0


def _add_utility(sub) -> None:
    """``synthseq utility`` (owned by synthseq.downstream)."""
    p = sub.add_parser(
        "utility",
        help="does pseudo-STIR help? T2w vs T2w+pseudo-STIR vs T2w+STIR for classifiers and the outcome model",
        description="Train injury classifiers and the outcome model (clinical + image features) with T2w only, "
        "T2w + pseudo-STIR and T2w + real STIR on the same training subjects; compare held-out AUCs (95% CIs) "
        "and report how much of the gap to real STIR pseudo-STIR closes. Writes utility.{json,csv,md,png}.",
        formatter_class=_formatter,
    )
    p.add_argument("--data", required=True, type=Path, help="phantom-layout folder (with real STIR)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="synthesis checkpoint (.pt) making the pseudo-STIR")
    src.add_argument("--pseudo-stir", type=Path, help="or a folder of precomputed <subject>_pseudoSTIR.nii.gz")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--config", type=Path, default=None, help="YAML UtilityConfig (classifier:, outcome: ...)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (e.g. classifier.epochs=10)")
    p.set_defaults(func=_run_utility)


def _run_utility(args: argparse.Namespace) -> int:
    from .config import load_typed
    from .downstream.utility import UtilityConfig, run_utility

    cfg = load_typed(UtilityConfig, args.config, [*args.overrides, f"seed={args.seed}"])
    res = run_utility(args.data, args.out, checkpoint=args.checkpoint, cfg=cfg, pseudo_stir_dir=args.pseudo_stir,
                      device=args.device)
    for task, s in res["summary"].items():
        gap = f"{s['gap_closed']:.2f}" if s["real_beats_t2w"] else "n/a (real STIR not better beyond chance)"
        print(f"{task}: AUC T2w {s['auc_t2w']:.3f} | +pseudo-STIR {s['auc_pseudo']:.3f} | +STIR {s['auc_real']:.3f}"
              f" | gap closed {gap}")
    print(f"table: {Path(args.out) / 'utility.md'}")
    return 0


def _port(text: str) -> int:
    """argparse type of --port: an integer 0..65535 (argparse turns the ValueError into a one-line usage error)."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


_port.__name__ = "port (0-65535)"  # argparse names the type in its message: "invalid port (0-65535) value"


def _add_reader_study(sub) -> None:
    """``synthseq reader-study build|serve|export|analyze`` (owned by synthseq.reader_study)."""
    p = sub.add_parser(
        "reader-study",
        help="blinded reader studies: build a case set, serve the reading page, export and analyze answers",
        description="Visual Turing test / image-quality / finding-detection reader studies on real vs synthetic "
        "STIR:\n  build -> serve (each reader opens a personal link) -> export -> analyze.",
        formatter_class=_formatter,
    )
    rs = p.add_subparsers(dest="rs_command", metavar="STEP", parser_class=_Parser, required=True)

    b = rs.add_parser("build", help="pair real and synthetic volumes, render blinded cases, shuffle per reader",
                      description="Pair sub-XXXX*_STIR.nii.gz (real) with sub-XXXX*_pseudoSTIR.nii.gz (synthetic) "
                      "by subject, render the chosen sagittal slices (same percentile window for both) and write "
                      "STUDY/{manifest.json,key.csv,cases/}. Same --seed -> identical files.",
                      formatter_class=_formatter)
    b.add_argument("--real", required=True, type=Path, help="folder with real *_STIR.nii.gz (searched recursively)")
    b.add_argument("--synthetic", required=True, type=Path,
                   help="folder with synthetic *_pseudoSTIR.nii.gz (or *_STIR.nii.gz) on the real grid")
    b.add_argument("--lesions", type=Path, default=None,
                   help="folder with sub-XXXX*_lesions.nii.gz (phantom codes): finding truth")
    b.add_argument("--out", required=True, type=Path, help="study folder to create (must not exist or be empty)")
    b.add_argument("--readers", required=True, help="comma-separated reader names, e.g. R1,R2,R3")
    b.add_argument("--slices", choices=["mid", "lesion", "all"], default="mid",
                   help="mid: middle slice +/-2; lesion: slices spanning the findings; all (default mid)")
    b.add_argument("--cases", type=int, default=None,
                   help="total cases, even (a real and a synthetic per subject); default: every paired subject")
    b.add_argument("--min-gap", type=int, default=None,
                   help="a subject's real and synthetic case are at least this many positions apart in every "
                   "reader's order (default 5, less for small studies)")
    b.add_argument("--t2w", type=Path, default=None,
                   help="folder with sub-XXXX*_T2w.nii.gz on the real grid: show each subject's T2w beside its cases")
    b.add_argument("--sessions", type=int, choices=[1, 2], default=1,
                   help="2: every subject's real and synthetic case in different reading sessions (default 1)")
    b.add_argument("--washout-days", type=float, default=0.0,
                   help="with --sessions 2: days between submitting session 1 and session 2 opening (default 0)")
    b.set_defaults(func=_run_reader_study_build)

    s = rs.add_parser("serve", help="serve the reading page locally and print each reader's personal link",
                      description="Serve STUDY on HOST:PORT (loopback by default). Answers are saved in "
                      "STUDY/answers.sqlite as readers click; stop with Ctrl-C and restart any time.",
                      formatter_class=_formatter)
    s.add_argument("study", type=Path, help="study folder written by `reader-study build`")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; other hosts expose the page on the network)")
    s.add_argument("--port", type=_port, default=8000, help="port 0-65535 (default 8000; 0 picks a free one)")
    s.set_defaults(func=_run_reader_study_serve)

    e = rs.add_parser("export", help="write every reader's answers as CSV (default STUDY/answers.csv)",
                      formatter_class=_formatter)
    e.add_argument("study", type=Path, help="study folder")
    e.add_argument("--out", type=Path, default=None,
                   help="CSV file (default STUDY/answers.csv, refreshed); never one of the study's own files")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.set_defaults(func=_run_reader_study_export)

    a = rs.add_parser("analyze", help="unblind and analyze: Turing test, agreement, Likert, findings; report",
                      description="Writes OUT/{report.html,results.json,figures.json,readings.csv,*.png}.",
                      formatter_class=_formatter)
    a.add_argument("study", type=Path, help="study folder")
    a.add_argument("--out", required=True, type=Path, help="report folder")
    a.add_argument("--answers", type=Path, default=None,
                   help="analyze an exported answers CSV instead of STUDY/answers.sqlite")
    a.set_defaults(func=_run_reader_study_analyze)


def _run_reader_study_build(args: argparse.Namespace) -> int:
    from .reader_study import build_study

    summary = build_study(args.real, args.synthetic, args.out, args.readers.split(","), lesions=args.lesions,
                          seed=args.seed, slices=args.slices, cases=args.cases, min_gap=args.min_gap, t2w=args.t2w,
                          sessions=args.sessions, washout_days=args.washout_days)
    print(f"wrote {summary.cases} cases ({len(summary.subjects)} subjects) for {len(summary.readers)} reader(s) "
          f"to {summary.study}")
    if summary.unpaired:
        print(f"skipped {len(summary.unpaired)} subject(s) found in only one folder: {', '.join(summary.unpaired)}")
    if summary.resampled:
        print("resampled onto the synthetic volume's grid (linear for images, nearest for lesions): "
              f"{', '.join(summary.resampled)}")
    print(f"next: synthseq reader-study serve {summary.study}")
    return 0


def _run_reader_study_serve(args: argparse.Namespace) -> int:
    from .reader_study.app import serve_study

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"synthseq: warning: serving on {args.host}: anyone who can reach this address and has a link can "
              "read; links travel unencrypted (plain HTTP)", file=sys.stderr)

    def ready(url: str, links: dict[str, str]) -> None:
        print(f"serving {args.study} on {url} (Ctrl-C to stop)")
        for reader, link in links.items():
            print(f"  {reader}: {link}")
        sys.stdout.flush()

    serve_study(args.study, host=args.host, port=args.port, ready=ready)
    return 0


def _run_reader_study_export(args: argparse.Namespace) -> int:
    from .reader_study import export_answers

    print(export_answers(args.study, args.out, overwrite=args.overwrite))
    return 0


def _run_reader_study_analyze(args: argparse.Namespace) -> int:
    from .reader_study import analyze_study

    print(f"report: {analyze_study(args.study, args.out, answers_csv=args.answers)}")
    return 0


_REGISTRY = (
    _add_info, _add_phantom, _add_train, _add_synthesize, _add_export, _add_evaluate, _add_demo,
    _add_classify, _add_outcome, _add_utility, _add_reader_study, _add_resample, _add_dataset,
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
        print(f"synthseq: error: {_one_line(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # Any file the system refused (full disk, read-only, a folder where a file goes, a path under a file):
        # one line naming the path, wherever in the code the write or read happened.
        if args.debug:
            raise
        print(f"synthseq: error: {_one_line(_os_error_message(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthseq: interrupted", file=sys.stderr)
        return 130


def check_output(out: Path, inputs: dict[str, Path | None], overwrite: bool, flag: str = "--out") -> None:
    """Refuse an output file that is one of the command's inputs (or a file inside an input folder), a folder,
    or an existing file without ``--overwrite``: a command never destroys what the user did not name as output."""
    from .errors import InputError

    target = Path(out).resolve()
    for name, given in inputs.items():
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or (source.is_dir() and target.is_relative_to(source) and target.exists()):
            what = "is" if target == source else "is a file of the input folder"
            raise InputError(f"{out}: {what} {name} {given}; choose another {flag}")
    if target.is_dir():
        raise InputError(f"{out}: is a folder; {flag} takes a file name")
    if target.exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")


def _one_line(text: str) -> str:
    """Messages are one line: a newline (e.g. inside a path) is shown as ``\\n`` instead of cutting the message."""
    return text.strip().replace("\r", "\\r").replace("\n", "\\n")


def _os_error_message(exc: OSError) -> str:
    """``PATH: reason`` (or ``PATH -> PATH2: reason``) of an OSError, naming the file whenever one is known."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"{reason} ({type(exc).__name__})"
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if getattr(exc, "filename2", None) else "")
    return f"{where}: {reason}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
