"""Files: find predictions, targets, inputs, labels and lesions on disk, run the evaluation, write its outputs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..baselines import PairStats, pair_stats
from ..data.layout import strip_nifti, subject_of
from ..data.preprocess import Preprocessor
from ..data.registration import resample_to, same_grid
from ..erasure import flags_path
from ..errors import InputError
from ..io import Volume, load_volume
from ..stats import CI_LEVEL, N_BOOTSTRAP, dumps
from ..utils import atomic_path, atomic_write_text
from .figures import write_montage
from .lesions import class_summary, count_lesions, erasure_rows, erasure_summary
from .report import write_report
from .scoring import SubjectData, evaluate_volumes, summarize


def _nifti_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz")))


def _subject_of(path: Path) -> str | None:
    return subject_of(path, anywhere=True)


def _index(root: Path | None, tag: str, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """``{subject: file}`` for files named ``*<tag>.nii(.gz)`` under folder ``root`` (by their sub-XXXX id)."""
    if root is None or not root.is_dir():
        return {}
    out: dict[str, Path] = {}
    for p in _nifti_files(root):
        stem = strip_nifti(p.name)
        if not stem.endswith(tag) or any(x in p.name for x in exclude):
            continue
        sid = _subject_of(p)
        if sid is None:
            continue
        if sid in out:
            raise InputError(f"{p}: a second {tag.lstrip('_')} file for {sid} (also {out[sid]})")
        out[sid] = p
    return out


def _lookup(arg: Path | None, fallback: dict[str, Path], tag: str, sid: str, single: bool) -> Path | None:
    """The file for ``sid``: ``arg`` itself in single-file mode, else ``arg``'s (or the fallback's) index."""
    if arg is not None and arg.is_file():
        return arg if single else None
    if arg is not None and arg.is_dir():
        return _index(arg, tag).get(sid)
    return fallback.get(sid)


def _train_stats(subject_ids: Sequence[str], inputs: Path | None, target: Path, pre: Preprocessor
                 ) -> list[PairStats]:
    t2 = _index(inputs, "_T2w")
    stir = _index(target, "_STIR")
    stats = []
    for sid in subject_ids:
        if sid not in t2 or sid not in stir:
            raise InputError(f"{inputs or target}: training subject {sid} has no T2w / STIR pair for the baselines")
        stats.append(pair_stats(load_volume(t2[sid]), load_volume(stir[sid]), None, sid, pre))
    return stats


def _onto_grid(vol: Volume, ref: Volume, order: int, what: str, log: list[str]) -> Volume:
    """``vol`` on ``ref``'s grid: as is when it already is, else resampled (``order`` 1 linear, 0 nearest) and
    named in ``log`` (InputError naming both files when their fields of view do not overlap)."""
    if same_grid(vol, ref):
        return vol
    log.append(what)
    return resample_to(vol, ref, order=order)


def sidecar_preprocessor(pred_path: Path) -> Preprocessor | None:
    """The Preprocessor recorded in a prediction's JSON sidecar (``X.nii.gz`` -> ``X.json``), if any."""
    name = pred_path.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")] if name.endswith(".nii") else name
    side = pred_path.with_name(stem + ".json")
    if not side.is_file():
        return None
    try:
        entry = json.loads(side.read_text()).get("Preprocessing")
    except (json.JSONDecodeError, AttributeError, OSError, UnicodeDecodeError):
        raise InputError(f"{side}: unreadable JSON sidecar of {pred_path.name}") from None
    return Preprocessor.from_sidecar(entry) if isinstance(entry, dict) else None


def _checkpoint_facts(checkpoint: str | Path | None) -> tuple[Preprocessor | None, dict | None, str]:
    """The checkpoint's Preprocessor, subject splits and slice plane (None, None, sagittal without one)."""
    ckpt_pre, ckpt_splits, plane = None, None, "sagittal"
    if checkpoint is not None:
        from ..checkpoint import ModelSpec, load_checkpoint

        spec = ModelSpec.from_checkpoint(load_checkpoint(checkpoint))
        ckpt_pre, ckpt_splits = spec.preprocessing, spec.splits
        plane = spec.slice_plane or "sagittal"  # SSIM in the plane the model works in
    return ckpt_pre, ckpt_splits, plane


def _limit_to_split(subjects: Sequence[str] | None, split: str | None, ckpt_splits: dict | None
                    ) -> Sequence[str] | None:
    """``subjects`` limited to the checkpoint's split ``split`` (needs its stored splits)."""
    if split is not None:
        from ..data.layout import SPLITS

        if split not in SPLITS:
            raise InputError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
        if not ckpt_splits:
            raise InputError(f"--split {split}: needs --checkpoint of a run that stores its subject splits")
        wanted = set(ckpt_splits.get(split, []))
        subjects = [s for s in subjects if s in wanted] if subjects is not None else sorted(wanted)
    return subjects


def _pair_files(pred: Path, target: Path, single: bool, subjects: Sequence[str] | None
                ) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """``{subject: (prediction, target)}`` and the predictions without a target, limited to ``subjects``."""
    if single:
        if not target.is_file():
            raise InputError(f"{target}: --target must be a file when --pred is a file")
        pairs = {_subject_of(pred) or _subject_of(target) or "subject": (pred, target)}
    else:
        preds = _index(pred, "_pseudoSTIR", exclude=("_uncertainty",))
        if not preds:
            raise InputError(f"{pred}: no *_pseudoSTIR.nii.gz files (with a sub-XXXX id) in this folder")
        if not target.is_dir():
            raise InputError(f"{target}: --target must be a folder when --pred is a folder")
        targets = _index(target, "_STIR")
        pairs = {sid: (p, targets[sid]) for sid, p in preds.items() if sid in targets}
        if not pairs:
            raise InputError(f"{target}: no *_STIR.nii.gz matches the subjects of {pred} ({', '.join(sorted(preds))})")
    unpaired = [] if single else sorted(set(preds) - set(pairs))
    if subjects is not None:
        missing = sorted(set(subjects) - set(pairs))
        if missing and not single:
            raise InputError(f"{pred}: subject {missing[0]!r} has no prediction / target pair here")
        pairs = {sid: v for sid, v in pairs.items() if sid in set(subjects)} if not single else pairs
        unpaired = [sid for sid in unpaired if sid in set(subjects)]
    return pairs, unpaired


def _load_subjects(pairs: dict[str, tuple[Path, Path]], single: bool, target: Path, inputs: Path | None,
                   lesions: Path | None, mask: Path | None, ckpt_pre: Preprocessor | None
                   ) -> tuple[list[SubjectData], list[str]]:
    """Every pair's volumes and maps on the prediction's grid, and what had to be resampled onto it."""
    target_labels = _index(target, "_labels") if target.is_dir() else {}
    target_lesions = _index(target, "_lesions") if target.is_dir() else {}
    subjects, resampled = [], []
    for sid, (p, t) in sorted(pairs.items()):
        t2w_path = _lookup(inputs, {}, "_T2w", sid, single)
        les_path = _lookup(lesions, target_lesions, "_lesions", sid, single)
        mask_path = None
        if mask is not None:
            mask_path = mask if mask.is_file() else next(
                (x for tag in ("_labels", "_mask", "_seg") if (x := _index(mask, tag).get(sid))), None)
        lab_path = target_labels.get(sid) if mask_path is None else None
        pred_vol = load_volume(p)
        # the prediction's grid (the T2w's) is the reference: targets and maps on another grid are resampled onto it

        def onto(path, order, what, allow_zero=False, ref=pred_vol, sid=sid):
            return _onto_grid(load_volume(path, allow_zero=allow_zero), ref, order, f"{sid} {what}", resampled)

        mask_arr = onto(mask_path, 0, "mask", True).data if mask_path is not None else None
        labels = onto(lab_path, 0, "labels", True).data if lab_path is not None else None
        if mask_arr is not None and mask_arr.max() > 1:  # a tissue-label map given as --mask
            labels, mask_arr = mask_arr, None
        unc_path = _uncertainty_beside(p)
        subjects.append(SubjectData(
            subject=sid, pred=pred_vol, target=onto(t, 1, "target"), preprocessor=ckpt_pre or sidecar_preprocessor(p),
            t2w=onto(t2w_path, 1, "T2w") if t2w_path is not None else None,
            labels=np.rint(labels).astype(np.int16) if labels is not None else None,
            lesions=np.rint(onto(les_path, 0, "lesions", True).data).astype(np.int16) if les_path else None,
            mask=mask_arr, uncertainty=load_volume(unc_path, allow_zero=True) if unc_path else None,
        ))
    if resampled:
        line = (f"resampled onto the prediction's grid (linear for images, nearest for labels and masks): "
                f"{', '.join(resampled)}")
        print(f"synthseq: evaluate: {line}", file=sys.stderr, flush=True)

    return subjects, resampled


def _rule_baselines_notes(subjects: list[SubjectData], pred: Path, checkpoint, ckpt_pre, train_subjects, inputs,
                          target: Path, unpaired: list[str], trained_on: list[str], resampled: list[str]):
    """The one preprocessing rule of the predictions, the fair baselines' training pool and the report's notes."""
    rules = {s.preprocessor for s in subjects}
    if len(rules) > 1:
        raise InputError(f"{pred}: predictions were written with different preprocessing ({len(rules)} rules); "
                         "evaluate one model's predictions at a time")
    pre = next(iter(rules)) or Preprocessor()
    train = None
    source = (f"from {checkpoint}" if ckpt_pre is not None else "from the predictions' sidecars"
              if rules != {None} else "the default rule: no checkpoint or sidecar says otherwise")
    notes = [f"Predictions and baselines put into model units with the preprocessing {pre.to_dict()} ({source})."]
    if train_subjects is not None and inputs is not None and inputs.is_dir():
        train = _train_stats(list(train_subjects), inputs, target, pre)
        notes.append(f"Fair baselines fit on {len(train)} training subject(s).")
    elif inputs is not None:
        notes.append("Fair baselines fit leave-one-subject-out over the evaluated subjects "
                     "(no training subjects given).")
    if unpaired:
        notes.append(f"Predictions without a target (not evaluated): {', '.join(unpaired)}.")
    if trained_on:
        notes.append(f"Warning: {len(trained_on)} scored subject(s) are in the checkpoint's training split: "
                     f"{', '.join(trained_on)}.")
    if resampled:
        notes.append(f"Resampled onto the prediction's grid (linear for images, nearest for labels and masks): "
                     f"{', '.join(resampled)}.")

    return pre, train, notes


def _erasure_check(subjects: list[SubjectData], pairs: dict[str, tuple[Path, Path]], inputs: Path | None,
                   pred_norm: str):
    """The erasure check's per-volume rows (flag maps beside the predictions, else run here, with the T1w when
    the inputs folder holds one: :mod:`synthseq.evaluation.lesions`), one stderr line each."""
    t1_files = _index(inputs, "_T1w") if inputs is not None and inputs.is_dir() else {}
    t1w = {s.subject: _onto_grid(load_volume(t1_files[s.subject]), s.pred, 1, f"{s.subject} T1w", [])
           for s in subjects if s.subject in t1_files}
    flag_files = {sid: flags_path(p) for sid, (p, _) in pairs.items() if flags_path(p).is_file()}
    erasure = erasure_rows(subjects, t1w, flag_files, pred_norm)
    for _, r in erasure.iterrows():
        print(f"synthseq: evaluate: {r['subject']}: erasure check: {r['erasure_missing']} missing, "
              f"{r['erasure_unsupported']} unsupported" + (f"; {r['erased_flagged']} of {r['erased_lesions']} erased "
              f"lesions flagged, {r['erasure_false_alarms']} false alarm(s)" if "erased_lesions" in r else ""),
              file=sys.stderr, flush=True)
    return erasure


def evaluate_paths(pred: str | Path, target: str | Path, out: str | Path, inputs: str | Path | None = None,
                   lesions: str | Path | None = None, mask: str | Path | None = None, seed: int = 0,
                   train_subjects: Sequence[str] | None = None, use_lpips: bool = True, pred_norm: str = "auto",
                   checkpoint: str | Path | None = None, subjects: Sequence[str] | None = None,
                   split: str | None = None) -> Path:
    """Evaluate predictions against targets and write ``metrics.csv``, ``summary.json`` and ``report.html``.

    Args:
        pred: a pseudo-STIR file, or a folder of ``*_pseudoSTIR.nii(.gz)`` files (any depth; uncertainty maps
            ``*_uncertainty.nii.gz`` beside them are picked up for the montages).
        target: the real STIR file, or a phantom-layout folder (``sub-X/sub-X_STIR.nii.gz`` with ``_labels`` and
            ``_lesions`` beside it, used automatically).
        out: output folder.
        inputs: T2w file or folder (``*_T2w.nii.gz``): enables the baselines and the T2w montage column.
        lesions: lesion-code file or folder (``*_lesions.nii.gz``), overriding the target folder's.
        mask: body mask or tissue-label file or folder (``*_labels`` / ``*_mask`` / ``*_seg``), overriding the
            target folder's labels for the body mask.
        seed: bootstrap seed.
        train_subjects: subject ids whose T2w / STIR pairs (from ``inputs`` / ``target`` folders) fit the fair
            baselines; None: leave-one-subject-out over the evaluated subjects.
        use_lpips: compute LPIPS where backbone weights are cached (else NaN, reported as unavailable).
        pred_norm: how predictions are put into model units (see :func:`evaluate_volumes`); ``"input"`` needs
            ``inputs``.
        checkpoint: the model's checkpoint: its Preprocessor is the scale predictions were written in. Without
            it, each prediction's JSON sidecar (written by ``synthseq synthesize``) says; else the default rule.
            Its stored split also says which scored subjects it trained on (a warning line and a report note).
        subjects: score only these subject ids (folder mode).
        split: score only the checkpoint's ``train`` / ``val`` / ``test`` subjects (needs ``checkpoint``).

    Returns:
        Path of ``report.html``.
    """
    pred, target, out = Path(pred), Path(target), Path(out)
    inputs = Path(inputs) if inputs is not None else None
    lesions = Path(lesions) if lesions is not None else None
    mask = Path(mask) if mask is not None else None
    ckpt_pre, ckpt_splits, plane = _checkpoint_facts(checkpoint)
    subjects = _limit_to_split(subjects, split, ckpt_splits)
    for p, what in ((pred, "--pred"), (target, "--target"), (inputs, "--input"), (lesions, "--lesions"),
                    (mask, "--mask")):
        if p is not None and not p.exists():
            raise InputError(f"{p}: no such file or folder ({what})")
    single = pred.is_file()
    pairs, unpaired = _pair_files(pred, target, single, subjects)
    trained_on = sorted(set(pairs) & set((ckpt_splits or {}).get("train", [])))
    if trained_on:  # the checkpoint knows its split: scores of its own training subjects are optimistic
        print(f"synthseq: warning: evaluate: {len(trained_on)} scored subject(s) are in the checkpoint's training "
              f"split (optimistic scores): {', '.join(trained_on)}", file=sys.stderr, flush=True)

    subjects, resampled = _load_subjects(pairs, single, target, inputs, lesions, mask, ckpt_pre)
    pre, train, notes = _rule_baselines_notes(subjects, pred, checkpoint, ckpt_pre, train_subjects, inputs, target,
                                              unpaired, trained_on, resampled)
    table = evaluate_volumes(subjects, train=train, baselines=inputs is not None, use_lpips=use_lpips,
                             show_progress=True, pred_norm=pred_norm, slice_plane=plane)
    erasure = _erasure_check(subjects, pairs, inputs, pred_norm)
    summary = {
        "n_subjects": len(subjects),
        "subjects": [s.subject for s in subjects],
        "unpaired_predictions": unpaired,
        "resampled_onto_prediction_grid": resampled,
        "scored_training_subjects": trained_on,
        "seed": int(seed),
        "bootstrap": {"n_resamples": N_BOOTSTRAP, "level": CI_LEVEL, "method": "percentile, subjects resampled"},
        "conventions": {
            "normalization": ("each volume mapped to [-1, 1] by its own 0.5/99.5 percentiles inside the body mask "
                              "(no clipping); data_range = 2.0" if pred_norm == "own" or (pred_norm == "auto" and inputs is None) else
                              "target mapped to [-1, 1] by its own 0.5/99.5 percentiles inside the body mask, "
                              "predictions by their T2w's percentiles (the scale they were written in), no "
                              "clipping; data_range = 2.0"),
            "pred_norm": pred_norm,
            "metrics": "MAE (normalized units) and PSNR (dB) pooled over body voxels; SSIM = mean SSIM map "
                       "(Gaussian 11x11, sigma 1.5) over body voxels of the sagittal slices",
            "lesions": "cr_<class> = contrast(pred)/contrast(STIR), contrast = (mean lesion - mean reference "
                       "tissue)/mean reference on [0, 2]-shifted normalized images; cnr_<class> = (mean lesion - "
                       "mean reference)/std(reference) in the method's image, cnr_target_<class> in real STIR; "
                       "sr_<class> = step(pred)/step(STIR), step = mean lesion - mean reference in normalized "
                       "units (offset-free: a dark reference does not make it steep); rb_<class> = mean reference "
                       "tissue in pred - in STIR, normalized units (> 0: rendered too bright)",
        },
        "lpips": _lpips_status(table, use_lpips),
        "methods": summarize(table, seed),
        "lesion_classes": class_summary(table, count_lesions(subjects), seed),
        "erasure": {**erasure_summary(erasure), "per_volume": erasure.to_dict(orient="records")},
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    atomic_write_text(out / "summary.json", dumps(summary))
    for s in subjects:
        write_montage(s, out / "montages" / f"{s.subject}.png", pred_norm)
    return write_report(table, summary, subjects, out, notes)


def parse_train_subjects(spec: str | None) -> list[str] | None:
    """``--train-subjects``: a ``splits.json`` path (its ``"train"`` list) or comma-separated subject ids."""
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix == ".json":
        if not path.is_file():
            raise InputError(f"{path}: no such splits file")
        try:
            ids = json.loads(path.read_text())["train"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: expected a JSON object with a 'train' list of subject ids") from exc
        return [str(i) for i in ids]
    ids = [s.strip() for s in spec.split(",") if s.strip()]
    if not ids:
        raise InputError(f"--train-subjects: no subject ids in {spec!r}")
    return ids


def _uncertainty_beside(pred_path: Path) -> Path | None:
    from ..synthesis import uncertainty_path

    p = uncertainty_path(pred_path)
    return p if p.is_file() else None


def _lpips_status(table: pd.DataFrame, requested: bool) -> str:
    if not requested:
        return "not requested"
    if bool(table["lpips_available"].all()):
        return "computed (AlexNet LPIPS from the local torch cache)"
    return ("unavailable: pretrained backbone weights are not in the local torch cache (nothing is downloaded); "
            "reported as NaN")

