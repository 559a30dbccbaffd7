"""How much lesion contrast a model that cannot see the target's protocol can recover: the STIR echo-time ceiling.

    python benchmarks/protocol_ceiling.py --data abl --splits runs/V/splits.json [--split test] [--stir-te 47.5]
                                          [--blind K] [--pred NAME=runs/V/pred ...] --work DIR [--out result.json]
    python benchmarks/protocol_ceiling.py --quick --work DIR

Every phantom subject's STIR is acquired at its own drawn echo time (classic mode: 35-60 ms), and nothing in the
T2w or T1w tells a model that TE: the inputs are bit-identical whatever it is (``generate_subject(...,
stir_te_ms=...)``). Dark short-T2 tissue (muscle, the interspinous ligament) darkens on STIR as TE grows while
fluid does not, so a lesion's real contrast against its reference tissue moves with a number the model never
sees. Method:

1. Regenerate the scored subjects (same seeds, preset, field and realism as ``dataset.json`` records) with the
   STIR at one fixed TE (``--stir-te``, default the classic range's centre, 47.5 ms) into ``WORK/fixed_te``; the
   T2w, T1w, labels and lesions are checked to be identical to the stored files (else the dataset was written by
   another generator version and the script stops).
2. **Ceiling** (``ceiling``): that fixed-TE STIR, taken as the "prediction" of a model that knows every subject's
   anatomy exactly but not the TE, scored by ``synthseq evaluate`` (its own percentile scale, ``--pred-norm
   own``) against each subject's drawn-TE STIR: contrast recovery per lesion class, SSIM. A model blind to the TE
   can beat it only by chance.
3. **Blind ceiling** (``blind_ceiling``, ``--blind K``, default 16; 0 skips it): the TE is not the STIR's only
   hidden number. Its TR, the TI's offset from the fat null, its SNR, gain and noise are drawn per subject too
   (``sequences.STIR_FIELDS``). Each subject's STIR is re-acquired K times with all of them redrawn from their
   ranges (``generate_subject(..., stir_redraw_seed=k)``: same anatomy, lesions and inputs), each normalized as
   the target is, and the K are averaged: a Monte-Carlo estimate of the mean STIR given everything but the
   STIR's protocol, the best an L1/L2-trained model that knows the anatomy exactly can aim at. Written in the
   subject's T2w scale and scored like a model's output (``pred_norm="auto"``).
4. **Each prediction** (``--pred NAME=FOLDER``, ``synthseq synthesize`` output; scale from its sidecars) scored
   twice: against the drawn-TE STIR (as ``synthseq evaluate`` scores it) and against the fixed-TE STIR
   (``fixed_te``): the part of the miss that comes from the TE draw, not from the model.

``--quick`` (the test suite): a 3-subject tiny phantom written into ``WORK``, the ceilings only (K = 4).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import emit, environment, fail  # noqa: E402

DEFAULT_TE_MS = 47.5  #: centre of the classic phantom's STIR TE draw (35-60 ms)
INPUT_KINDS = ("T2w", "T1w", "labels", "lesions")
CLASS_KEYS = ("ssim", "mae", "psnr")


def regenerate(data: Path, subjects: list[str], te: float, out: Path) -> dict:
    """Write ``subjects`` of the phantom folder ``data`` with the STIR at ``te`` ms into ``out`` (phantom layout);
    return each subject's drawn TE. Raises SynthseqError if a regenerated input differs from the stored one."""
    from synthseq.errors import InputError
    from synthseq.io import load_volume, save_volume
    from synthseq.phantom import generate_subject
    from synthseq.utils import atomic_write_text

    meta_path = data / "dataset.json"
    if not meta_path.is_file():
        raise InputError(f"{data}: no such phantom dataset (dataset.json missing)")
    meta = json.loads(meta_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for sid in subjects:
        if sid not in meta["subjects"]:
            raise InputError(f"{meta_path}: no subject {sid}")
        rec_meta = meta["subjects"][sid]
        rec = generate_subject(sid, rec_meta["seed"], preset=meta["preset"], field_strength=meta["field_strength_T"],
                               misregistration_mm=meta.get("misregistration_mm", 0.0),
                               realism=meta.get("realism", "classic"), stir_te_ms=te)
        folder = out / sid
        folder.mkdir(exist_ok=True)
        for kind in INPUT_KINDS:
            stored = data / sid / f"{sid}_{kind}.nii.gz"
            if not np.array_equal(load_volume(stored, allow_zero=True).data, getattr(rec, kind.lower()).data):
                raise InputError(f"{stored}: the regenerated {kind} differs (dataset written by another generator "
                                 f"version?)")
            shutil.copyfile(stored, folder / stored.name)
        save_volume(rec.stir, folder / f"{sid}_STIR.nii.gz", dtype=np.float32, overwrite=True)
        drawn[sid] = float(rec_meta["acquisition"]["stir_te_ms"])
    fixed = {**meta, "n_subjects": len(subjects), "stir_te_ms": te,
             "subjects": {s: {**meta["subjects"][s], "acquisition": {**meta["subjects"][s]["acquisition"],
                                                                       "stir_te_ms": te}} for s in subjects}}
    atomic_write_text(out / "dataset.json", json.dumps(fixed, indent=1) + "\n")
    return drawn


def oracle_folder(fixed: Path, subjects: list[str], out: Path) -> Path:
    """The fixed-TE STIRs laid out as predictions (``sub-X/sub-X_pseudoSTIR.nii.gz``)."""
    for sid in subjects:
        (out / sid).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fixed / sid / f"{sid}_STIR.nii.gz", out / sid / f"{sid}_pseudoSTIR.nii.gz")
    return out


def blind_folder(data: Path, subjects: list[str], k: int, out: Path) -> Path:
    """Per subject the mean of ``k`` STIR re-acquisitions with the STIR's own protocol and noise redrawn, in
    model units as the target is normalized, written in its T2w's scale (``sub-X/sub-X_pseudoSTIR.nii.gz``)."""
    from synthseq.codes import body_mask_from_labels
    from synthseq.data.preprocess import Preprocessor
    from synthseq.errors import InputError
    from synthseq.io import load_volume, save_volume
    from synthseq.phantom import generate_subject

    meta = json.loads((data / "dataset.json").read_text())
    pre = Preprocessor()  # the rule synthseq evaluate applies without a checkpoint
    for sid in subjects:
        rec_meta = meta["subjects"][sid]
        t2w = load_volume(data / sid / f"{sid}_T2w.nii.gz", allow_zero=True)
        body = body_mask_from_labels(load_volume(data / sid / f"{sid}_labels.nii.gz", allow_zero=True).data)
        total = np.zeros(t2w.shape, np.float64)
        for j in range(k):
            rec = generate_subject(sid, rec_meta["seed"], preset=meta["preset"], field_strength=meta["field_strength_T"],
                                   misregistration_mm=meta.get("misregistration_mm", 0.0),
                                   realism=meta.get("realism", "classic"), stir_redraw_seed=j)
            if not np.array_equal(rec.t2w.data, t2w.data):
                raise InputError(f"{data / sid}: the regenerated T2w differs (dataset written by another generator "
                                 f"version?)")
            total += pre(rec.stir.data, mask=body, name=f"{sid} redraw {j}")[0]
        mean = pre.invert((total / k).astype(np.float32), pre.fit(t2w.data, name=t2w.name))
        (out / sid).mkdir(parents=True, exist_ok=True)
        save_volume(t2w.with_data(mean), out / sid / f"{sid}_pseudoSTIR.nii.gz", dtype=np.float32, overwrite=True)
    return out


def score(pred: Path, target: Path, inputs: Path, subjects: list[str], out: Path, pred_norm: str) -> dict:
    """``synthseq evaluate`` of ``pred`` against ``target``: per metric and lesion class the pseudo-STIR mean and
    95 % CI (``summary.json``'s ``methods.pseudo_stir``, contrast recovery ``cr_*`` and reference bias ``rb_*``)."""
    from synthseq.evaluation import evaluate_paths

    evaluate_paths(pred, target, out, inputs=inputs, use_lpips=False, pred_norm=pred_norm, subjects=subjects)
    methods = json.loads((out / "summary.json").read_text())["methods"]["pseudo_stir"]
    keep = {}
    for key, v in methods.items():
        if isinstance(v, dict) and "mean" in v and (key in CLASS_KEYS or key.startswith(("cr_", "rb_"))):
            keep[key] = {k: v[k] for k in ("mean", "ci_low", "ci_high", "n") if k in v}
    return keep


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="protocol_ceiling.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="phantom folder the predictions were made from (dataset.json)")
    ap.add_argument("--splits", type=Path, help="a run's splits.json: score its --split subjects")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--stir-te", type=float, default=DEFAULT_TE_MS, help=f"fixed STIR TE, ms (default {DEFAULT_TE_MS})")
    ap.add_argument("--pred", action="append", default=[], metavar="NAME=FOLDER",
                    help="a synthesize output folder to score against the drawn- and the fixed-TE STIR (repeat)")
    ap.add_argument("--blind", type=int, default=16, metavar="K",
                    help="STIR re-acquisitions averaged for the blind ceiling (default 16; 0: skip it)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (fixed-TE phantom, evaluations)")
    ap.add_argument("--quick", action="store_true", help="3-subject tiny phantom, ceiling only (the test suite)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    from synthseq.errors import SynthseqError
    from synthseq.phantom.generate import check_stir_te

    try:
        check_stir_te(args.stir_te, "--stir-te")
    except SynthseqError as exc:
        fail(ap, exc)
    if args.blind < 0:
        ap.error(f"--blind: expected a count >= 0, got {args.blind}")
    blind = 4 if args.quick else args.blind
    preds = {}
    for spec in args.pred:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            ap.error(f"--pred: expected NAME=FOLDER with an existing folder, got {spec!r}")
        preds[name] = Path(folder)
    t0 = time.perf_counter()
    try:
        if args.quick:
            from synthseq.phantom import generate_dataset

            data = generate_dataset(args.work / "phantom", subjects=3, seed=0, preset="tiny", progress=False,
                                    overwrite=True)
            subjects = sorted(json.loads((data / "dataset.json").read_text())["subjects"])
        else:
            if args.data is None or args.splits is None:
                ap.error("--data and --splits are required (or --quick)")
            data = args.data
            if not args.splits.is_file():
                raise SynthseqError(f"{args.splits}: no such splits file")
            subjects = list(json.loads(args.splits.read_text())[args.split])
        fixed = args.work / "fixed_te"
        drawn = regenerate(data, subjects, args.stir_te, fixed)
        oracle = oracle_folder(fixed, subjects, args.work / "oracle")
        result = {"benchmark": "protocol_ceiling", "environment": environment(), "data": str(data),
                  "subjects": subjects, "stir_te_fixed_ms": args.stir_te, "stir_te_drawn_ms": drawn,
                  "ceiling": score(oracle, data, data, subjects, args.work / "eval_ceiling", "own"), "predictions": {}}
        if blind:
            folder = blind_folder(data, subjects, blind, args.work / "blind")
            result["blind_redraws"] = blind
            result["blind_ceiling"] = score(folder, data, data, subjects, args.work / "eval_blind", "auto")
        for name, folder in preds.items():
            result["predictions"][name] = {
                "drawn_te": score(folder, data, data, subjects, args.work / f"eval_{name}_drawn", "auto"),
                "fixed_te": score(folder, fixed, data, subjects, args.work / f"eval_{name}_fixed", "auto"),
            }
    except SynthseqError as exc:
        fail(ap, exc)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
