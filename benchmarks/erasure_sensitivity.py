"""Erasure check, measured by deletion: how often does it flag a lesion that has been erased on purpose?

    python benchmarks/erasure_sensitivity.py --data abl [--pred runs/V/pred] [--splits runs/V/splits.json]
                                             [--split test] [--modes t1w,t2w] [--out result.json]
    python benchmarks/erasure_sensitivity.py --quick          # the test suite: one default-preset subject

A trained model seldom erases a whole lesion, so scoring the check against the lesions a model happened to erase
(``synthseq evaluate``'s "erasure" block) has a handful of cases at most. Here every lesion that the T2w and the
image under test both show (T2w CNR >= 3, brighter than its normal reference tissue) is deleted in turn, its voxels
set to the mean of that reference tissue (:func:`synthseq.erasure.deletion_trials`), and the check runs on the
result: a trial is a hit when a *missing* flag lies on the deleted lesion.

The image under test is a model's pseudo-STIR (``--pred``: the folder ``synthseq synthesize`` wrote, so the check
works next to that model's own errors) or, without ``--pred``, the phantom's real STIR (the check on its own).
Modes: ``t1w`` runs the check with the subject's T1w (what ``synthesize`` does for a T1w + T2w model), ``t2w``
without it (a T2w-only model). Reported per mode: per lesion class and pooled, hits / trials with a Wilson 95 % CI,
and the flags on the unmodified image per volume (with the real STIR every one of them is a false alarm).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import emit, environment, fail  # noqa: E402

MODES = ("t1w", "t2w")


def _pred_path(pred: Path, subject: str) -> Path:
    for p in (pred / subject / f"{subject}_pseudoSTIR.nii.gz", pred / f"{subject}_pseudoSTIR.nii.gz"):
        if p.exists():
            return p
    raise SystemExit(f"{pred}: no pseudo-STIR of {subject} ({subject}/{subject}_pseudoSTIR.nii.gz)")


def _subjects(data: Path, splits: Path | None, split: str, only: list[str] | None) -> list[str]:
    from synthseq.data.layout import load_subjects

    ids = [s.id for s in load_subjects(data)]
    if only:
        ids = [s for s in ids if s in only]
    elif splits is not None:
        wanted = set(json.loads(splits.read_text())[split])
        ids = [s for s in ids if s in wanted]
    return ids


def _quick_phantom(root: Path) -> Path:
    """One default-preset subject (seed 2: PLC injury, cord, prevertebral and disc injury) in the phantom layout."""
    from synthseq.io import save_volume
    from synthseq.phantom import generate_subject

    rec = generate_subject("sub-0001", rng_seed=2, preset="default")
    for key, vol, dt in (("T2w", rec.t2w, np.float32), ("STIR", rec.stir, np.float32), ("T1w", rec.t1w, np.float32),
                         ("labels", rec.labels, np.uint8), ("lesions", rec.lesions, np.uint8)):
        save_volume(vol, root / "sub-0001" / f"sub-0001_{key}.nii.gz", dtype=dt)
    return root


def run(data: Path, pred: Path | None, subjects: list[str], modes: tuple[str, ...]) -> dict:
    from synthseq import erasure
    from synthseq.data.layout import load_subjects
    from synthseq.io import load_volume
    from synthseq.reader_study.stats import proportion

    by_id = {s.id: s for s in load_subjects(data)}
    trials: dict[str, list[dict]] = {m: [] for m in modes}
    baseline: dict[str, list[dict]] = {m: [] for m in modes}
    for sid in subjects:
        s = by_id[sid]
        t2w = load_volume(s.path("T2w"))
        img = load_volume(_pred_path(pred, sid)) if pred is not None else load_volume(s.path("STIR"))
        lesions = np.asarray(load_volume(s.path("lesions"), allow_zero=True).data).astype(np.uint8)
        labels = np.asarray(load_volume(s.path("labels")).data).astype(np.uint8)
        for mode in modes:
            t1w = load_volume(s.path("T1w")) if mode == "t1w" else None
            res = erasure.deletion_trials(t2w, img, lesions, labels, t1w)
            trials[mode] += [{"subject": sid, **t} for t in res["trials"]]
            baseline[mode].append({"subject": sid, **res["baseline"]})
    out = {}
    for mode in modes:
        rows = trials[mode]
        classes = sorted({r["class"] for r in rows})
        per_class = {c: proportion(sum(r["flagged"] for r in rows if r["class"] == c),
                                   sum(r["class"] == c for r in rows)) for c in classes}
        out[mode] = {"pooled": proportion(sum(r["flagged"] for r in rows), len(rows)), "per_class": per_class,
                     "missing_flags_per_volume_unmodified": float(np.mean([b["missing"] for b in baseline[mode]])),
                     "unsupported_flags_per_volume_unmodified":
                         float(np.mean([b["unsupported"] for b in baseline[mode]])),
                     "trials": rows, "unmodified": baseline[mode]}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="phantom folder (T2w, STIR, T1w, labels, lesions per subject)")
    parser.add_argument("--pred", type=Path, default=None,
                        help="folder of pseudo-STIR written by `synthseq synthesize` (default: test the real STIR)")
    parser.add_argument("--splits", type=Path, default=None, help="a run's splits.json: use its --split subjects")
    parser.add_argument("--split", default="test", help="which split of --splits (default: test)")
    parser.add_argument("--subjects", nargs="*", default=None, help="subject ids (default: all, or --splits)")
    parser.add_argument("--modes", default="t1w,t2w", help="comma list of t1w (check reads the T1w), t2w (not)")
    parser.add_argument("--quick", action="store_true", help="one default-preset phantom subject, real STIR")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: a comma list of {', '.join(MODES)}, got {args.modes!r}")
    from synthseq.errors import SynthseqError

    t0 = time.perf_counter()
    try:
        result = _measure(args, parser, modes)
    except SynthseqError as exc:  # a missing / corrupt file: one line naming it, no traceback
        fail(parser, exc)
    result["seconds"] = time.perf_counter() - t0
    emit(result, args.out)
    return result


def _measure(args: argparse.Namespace, parser: argparse.ArgumentParser, modes: tuple[str, ...]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.quick:
            data = _quick_phantom(Path(tmp) / "phantom")
        elif data is None:
            parser.error("--data is required (or --quick)")
        subjects = _subjects(data, args.splits, args.split, args.subjects)
        if not subjects:
            parser.error(f"{data}: no subjects to test")
        result = {"benchmark": "erasure_sensitivity", "environment": environment("cpu"), "quick": args.quick,
                  "data": str(args.data) if args.data else "quick phantom", "image_under_test":
                      str(args.pred) if args.pred else "real STIR", "subjects": subjects,
                  "modes": run(data, args.pred, subjects, modes)}
    return result


if __name__ == "__main__":
    main()
