"""Evaluation of pseudo-STIR against real STIR: metric tables, bootstrap CIs, baselines, an HTML report.

:func:`evaluate_paths` takes files or phantom-layout folders (subjects paired by their ``sub-XXXX`` id), and writes

* ``metrics.csv``: one row per subject and method (``pseudo_stir`` and, when T2w inputs are given, the baselines of
  :mod:`synthseq.baselines`): ``mae``, ``psnr`` (dB), ``ssim`` (masked), ``lpips`` (NaN when unavailable, with
  ``lpips_available``), and per lesion class ``cr_<class>`` (contrast recovery), ``cnr_<class>`` (lesion CNR in the
  method's image) and ``cnr_target_<class>`` (in real STIR) and, when the T2w is given, ``cnr_input_<class>`` (in the T2w: a lesion
  iso-intense on T2w, such as edema in fatty marrow, cannot be recovered by any T2w-only mapping);
* ``summary.json``: per method and metric the mean over subjects with a seeded 95 % percentile bootstrap CI
  (subjects resampled with replacement), plus the conventions used;
* ``report.html`` with ``montages/<subject>.png``: T2w | pseudo-STIR | STIR | |difference| | uncertainty (when an
  ``*_uncertainty.nii.gz`` lies beside the prediction) at the sagittal slices with the most lesion voxels,
  fixed display windows ([-1, 1] for images, [0, 1] for |difference|, [0, 0.25] for uncertainty, all in
  normalized units).

Conventions (see :mod:`synthseq.metrics`): each volume is normalized to [-1, 1] by its own 0.5 / 99.5 percentiles
inside the body mask, ``data_range = 2.0``; metrics are pooled over all body voxels of the volume's sagittal slices.
``pred_norm="input"`` instead maps each prediction with its T2w's NormParams -- the scale synthseq writes
pseudo-STIR and baselines in -- so their model-space output is scored as is: own-percentile renormalization
re-stretches a prediction whose range is compressed (e.g. an undertrained model), which can move its numbers a lot
(and makes any positive-slope linear baseline score exactly like the T2w itself).
The body mask comes from phantom tissue labels (``labels > 0`` and not airway), else from a ``--mask`` file, else is
estimated from the T2w (or the target) by :func:`synthseq.data.datasets.body_mask_from_intensity`.
The fair baselines are fit on ``train_subjects`` when given (the demo passes the training split), otherwise
leave-one-subject-out over the evaluated subjects; ``linear_oracle`` uses each subject's own STIR and is labelled
as an oracle.
"""

from __future__ import annotations

import html
import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as M
from .baselines import BASELINES, HistogramMatching, LinearFit, PairStats, pair_stats
from .data.normalize import NormParams, apply_normalization, fit_normalization, normalize
from .data.slicing import SagittalView
from .errors import InputError
from .io import Volume, load_volume, sagittal_axis
from .utils import atomic_path, atomic_write_text, progress

SUBJECT_RE = re.compile(r"sub-[A-Za-z0-9]+")
METHOD = "pseudo_stir"
IMAGE_METRICS = ("mae", "psnr", "ssim", "lpips")
N_BOOTSTRAP = 2000
CI_LEVEL = 0.95
DIFF_WINDOW = (0.0, 1.0)
UNCERTAINTY_WINDOW = (0.0, 0.25)
MONTAGE_SLICES = 2
#: Which direction is better for each metric (for the report).
HIGHER_IS_BETTER = {"mae": False, "psnr": True, "ssim": True, "lpips": False}


# ------------------------------------------------------------------------------------------- subject data
@dataclass
class SubjectData:
    """Everything known about one evaluated subject (arrays on the target's grid)."""

    subject: str
    pred: Volume
    target: Volume
    t2w: Volume | None = None
    labels: np.ndarray | None = None
    lesions: np.ndarray | None = None
    mask: np.ndarray | None = None  #: binary body mask (used when labels are absent)
    uncertainty: Volume | None = None
    extra: dict[str, Volume] = field(default_factory=dict)  #: baseline predictions, by method name

    def body_mask(self) -> tuple[np.ndarray, str]:
        if self.labels is not None:
            return M.body_mask_from_labels(self.labels), "labels"
        if self.mask is not None:
            return np.asarray(self.mask) > 0, "mask"
        from .data.datasets import body_mask_from_intensity

        if self.t2w is not None:
            return body_mask_from_intensity(self.t2w.data), "estimated from T2w"
        return body_mask_from_intensity(self.target.data), "estimated from target"


def _check_grid(vol: Volume | np.ndarray | None, target: Volume, what: str) -> None:
    if vol is None:
        return
    shape = vol.shape if isinstance(vol, Volume) else np.asarray(vol).shape
    name = vol.name if isinstance(vol, Volume) else what
    if tuple(shape) != tuple(target.shape):
        raise InputError(f"{name}: {what} shape {tuple(shape)} differs from the target's {target.shape} "
                         f"({target.name}); resample onto one grid first")
    if isinstance(vol, Volume) and not np.allclose(vol.affine, target.affine, atol=1e-3):
        raise InputError(f"{name}: {what} affine differs from the target's ({target.name}); "
                         f"resample onto one grid first")


# -------------------------------------------------------------------------------------------- one subject
PRED_NORMS = ("auto", "own", "input")


def resolve_pred_norm(pred_norm: str, s: SubjectData) -> str:
    """``"auto"``: ``"input"`` when the subject's T2w is known (every synthseq output and baseline is written in
    its T2w's scale, so this scores their model-space output as is), else ``"own"``."""
    if pred_norm == "auto":
        return "input" if s.t2w is not None else "own"
    return pred_norm


def input_params(s: SubjectData) -> NormParams:
    """The T2w's NormParams exactly as :mod:`synthseq.synthesis` fits them (percentiles inside the body mask
    estimated from the T2w's intensities): the scale every synthseq prediction and baseline is written in."""
    from .data.datasets import body_mask_from_intensity

    if s.t2w is None:
        raise InputError(f"{s.pred.name}: pred_norm='input' needs the subject's T2w (--input)")
    return fit_normalization(s.t2w.data, "percentile", M.METRIC_PERCENTILES, body_mask_from_intensity(s.t2w.data),
                             s.t2w.name)


def normalized_pair(pred: Volume, s: SubjectData, body: np.ndarray, pred_params: NormParams | None
                    ) -> tuple[np.ndarray, np.ndarray, NormParams]:
    """Prediction and target in model units: the target by its own percentiles in ``body``; the prediction by its
    own percentiles too (``pred_params`` None), or by ``pred_params`` (``pred_norm="input"``)."""
    if pred_params is None:
        pred_n, target_n, pred_params, _ = M.normalize_pair(pred.data, s.target.data, body,
                                                            names=(pred.name, s.target.name))
        return pred_n, target_n, pred_params
    target_n = normalize(s.target.data, "percentile", M.METRIC_PERCENTILES, mask=body, name=s.target.name)[0]
    return apply_normalization(pred.data, pred_params), target_n, pred_params


def _image_row(pred: Volume, s: SubjectData, body: np.ndarray, view: SagittalView, use_lpips: bool,
               slice_axis: int, pred_params: NormParams | None) -> dict[str, float]:
    """Image- and lesion-level numbers of one prediction (model or baseline) of one subject."""
    pred_n, target_n, _ = normalized_pair(pred, s, body, pred_params)
    p_sl, t_sl, m_sl = view.to_slices(pred_n), view.to_slices(target_n), view.to_slices(body)
    row: dict[str, float] = {}
    vm = M.volume_metrics(np.ascontiguousarray(p_sl), np.ascontiguousarray(t_sl), np.ascontiguousarray(m_sl),
                          data_range=M.MODEL_DATA_RANGE)
    row.update(mae=vm["mae"], psnr=vm["psnr"], ssim=vm["ssim"])
    row["lpips"], row["lpips_available"] = float("nan"), False
    if use_lpips:
        keep = m_sl.reshape(m_sl.shape[0], -1).sum(1) > 0
        if keep.any():
            res = M.lpips_distance(np.ascontiguousarray(p_sl[keep]), np.ascontiguousarray(t_sl[keep]),
                                   np.ascontiguousarray(m_sl[keep]))
            if res.available:
                row["lpips"] = M.weighted_volume_mean(res.values, m_sl[keep].reshape(int(keep.sum()), -1).sum(1))
                row["lpips_available"] = True
    if s.labels is not None and s.lesions is not None:
        for name, v in M.lesion_metrics(pred_n, target_n, s.labels, s.lesions, slice_axis).items():
            row[f"cr_{name}"] = v["recovery"]
            row[f"cnr_{name}"] = v["cnr_pred"]
            row[f"cnr_target_{name}"] = v["cnr_target"]
        if s.t2w is not None:
            # how visible each lesion already is on the INPUT: a T2w-only mapping cannot recover what is not there
            t2w_n = normalize(s.t2w.data, "percentile", M.METRIC_PERCENTILES, body, name=s.t2w.name)[0]
            for name, v in M.lesion_metrics(t2w_n, t2w_n, s.labels, s.lesions, slice_axis).items():
                row[f"cnr_input_{name}"] = v["cnr_target"]
    return row


def _baseline_stats(s: SubjectData) -> PairStats | None:
    if s.t2w is None:
        return None
    body, _ = s.body_mask()
    return pair_stats(s.t2w, s.target, body, s.subject)


def evaluate_volumes(subjects: Sequence[SubjectData], train: Sequence[PairStats] | None = None,
                     baselines: bool = True, use_lpips: bool = True, show_progress: bool = False,
                     pred_norm: str = "auto") -> pd.DataFrame:
    """The metric table of :func:`evaluate_paths`, from data in memory.

    Args:
        subjects: one :class:`SubjectData` per subject (prediction, real STIR and whatever else is known).
        train: :func:`synthseq.baselines.pair_stats` of TRAINING pairs for the fair baselines; None:
            leave-one-subject-out over ``subjects`` (needs 2+ subjects with a T2w).
        baselines: add baseline rows for subjects with a T2w; their predictions are kept in ``SubjectData.extra``.
        use_lpips: compute LPIPS where backbone weights are cached.
        pred_norm: ``"auto"`` (default): ``"input"`` where the T2w is known, else ``"own"``;
            ``"own"``: every prediction is normalized by its own percentiles, like the target;
            ``"input"``: by the T2w's NormParams (:func:`input_params`), which recovers exactly the model-space
            output of synthseq predictions and baselines (all written in the T2w's scale) instead of re-stretching
            it; needs the T2w.

    Returns:
        DataFrame with one row per subject and method: ``subject, method, mask, mae, psnr, ssim, lpips,
        lpips_available`` and the lesion columns.
    """
    if not subjects:
        raise InputError("nothing to evaluate: no prediction / target pairs")
    if pred_norm not in PRED_NORMS:
        raise InputError(f"pred_norm: expected one of {', '.join(PRED_NORMS)}, got {pred_norm!r}")
    for s in subjects:
        _check_grid(s.pred, s.target, "prediction")
        for what, vol in (("T2w", s.t2w), ("labels", s.labels), ("lesions", s.lesions), ("mask", s.mask),
                          ("uncertainty", s.uncertainty)):
            _check_grid(vol, s.target, what)
    stats = {s.subject: _baseline_stats(s) for s in subjects} if baselines else {}
    rows = []
    for s in progress(subjects, desc="evaluate", total=len(subjects), unit="subj", disable=None if show_progress else True):
        body, source = s.body_mask()
        if not body.any():
            raise InputError(f"{s.target.name}: the body mask is empty")
        view = SagittalView.from_affine(s.target.affine)
        axis = sagittal_axis(s.target.affine)
        pparams = input_params(s) if resolve_pred_norm(pred_norm, s) == "input" else None
        rows.append({"subject": s.subject, "method": METHOD, "mask": source,
                     **_image_row(s.pred, s, body, view, use_lpips, axis, pparams)})
        if not baselines or stats.get(s.subject) is None:
            continue
        pool = list(train) if train is not None else [v for k, v in stats.items() if k != s.subject and v]
        preds = {"linear_oracle": LinearFit.from_stats([stats[s.subject]], "oracle").apply(s.t2w, body)}
        if pool:
            preds["histmatch"] = HistogramMatching.from_stats(pool).apply(s.t2w, body)
            preds["linear_pooled"] = LinearFit.from_stats(pool, "pooled").apply(s.t2w, body)
        for method in BASELINES:
            if method in preds:
                s.extra[method] = preds[method]
                rows.append({"subject": s.subject, "method": method, "mask": source,
                             **_image_row(preds[method], s, body, view, use_lpips, axis, pparams)})
    table = pd.DataFrame(rows)
    lesion_cols = sorted(c for c in table.columns if c.startswith(("cr_", "cnr_")))
    return table[["subject", "method", "mask", *IMAGE_METRICS, "lpips_available", *lesion_cols]]


# ------------------------------------------------------------------------------------------------ summary
def bootstrap_ci(values: Sequence[float], seed: int = 0, n_boot: int = N_BOOTSTRAP,
                 level: float = CI_LEVEL) -> dict[str, float | int | None]:
    """Mean of the finite ``values`` and its percentile bootstrap CI (resampling values with replacement).

    Returns ``{"mean", "ci_low", "ci_high", "n"}``; the CI is None for fewer than 2 finite values, everything but
    ``n`` is None for none.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": int(v.size)}


def summarize(table: pd.DataFrame, seed: int = 0) -> dict:
    """Per method and metric: mean and 95 % bootstrap CI over subjects (seeded per method and metric)."""
    metric_cols = [c for c in table.columns if c in IMAGE_METRICS or c.startswith(("cr_", "cnr_"))]
    out: dict[str, dict] = {}
    for method, part in table.groupby("method", sort=False):
        out[str(method)] = {
            col: bootstrap_ci(part[col].to_numpy(dtype=float), seed=_stream(seed, f"{method}/{col}"))
            for col in metric_cols if col in part
        }
    return out


def _stream(seed: int, name: str) -> list[int]:
    """A seed sequence for one (method, metric): adding a metric never changes another's CI."""
    return [int(seed), zlib.crc32(name.encode())]


# ------------------------------------------------------------------------------------------------ montages
def _montage_slices(s: SubjectData, view: SagittalView, body_sl: np.ndarray) -> list[int]:
    """Canonical sagittal slice indices to show: the slices with the most lesion voxels, else the body centre."""
    if s.lesions is not None:
        les = view.to_slices(np.asarray(s.lesions) > 0)
        counts = les.reshape(les.shape[0], -1).sum(1)
        order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        if order:
            picked = [order[0]]
            for i in order[1:]:
                if len(picked) >= MONTAGE_SLICES:
                    break
                if all(abs(i - j) > 1 for j in picked):  # a different part of the lesion, not its neighbour
                    picked.append(i)
            return sorted(picked)
    counts = body_sl.reshape(body_sl.shape[0], -1).sum(1)
    idx = np.flatnonzero(counts)
    return [int(idx[len(idx) // 2])] if idx.size else [body_sl.shape[0] // 2]


def write_montage(s: SubjectData, path: Path, pred_norm: str = "auto") -> Path:
    """PNG: rows = lesion slices; columns T2w | pseudo-STIR | STIR | |difference| | uncertainty (where present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body, _ = s.body_mask()
    view = SagittalView.from_affine(s.target.affine)
    pred_n, target_n, pred_params = normalized_pair(s.pred, s, body, input_params(s) if resolve_pred_norm(pred_norm, s) == "input" else None)
    panels: list[tuple[str, np.ndarray, tuple[float, float], str]] = []
    if s.t2w is not None:
        t2_n = normalize(s.t2w.data, "percentile", M.METRIC_PERCENTILES, mask=body)[0]
        panels.append(("T2w", view.to_slices(t2_n), (-1, 1), "gray"))
    panels += [("pseudo-STIR", view.to_slices(pred_n), (-1, 1), "gray"),
               ("STIR", view.to_slices(target_n), (-1, 1), "gray"),
               ("|difference|", view.to_slices(np.abs(pred_n - target_n) * body), DIFF_WINDOW, "magma")]
    if s.uncertainty is not None:
        unc = np.asarray(s.uncertainty.data, np.float64) / pred_params.scale  # std in normalized units
        panels.append(("uncertainty (std)", view.to_slices(unc), UNCERTAINTY_WINDOW, "viridis"))
    body_sl = view.to_slices(body)
    rows = _montage_slices(s, view, body_sl)
    lesion_sl = view.to_slices(np.asarray(s.lesions) > 0) if s.lesions is not None else None
    dh, dw = view.inplane_spacing(s.target.spacing)
    h, w = body_sl.shape[1:]
    cell = 2.4
    fig, axes = plt.subplots(len(rows), len(panels), squeeze=False,
                             figsize=(cell * len(panels), cell * len(rows) * (h * dh) / max(w * dw, 1e-6) + 0.4))
    for r, idx in enumerate(rows):
        for c, (title, sl, (vmin, vmax), cmap) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(sl[idx], cmap=cmap, vmin=vmin, vmax=vmax, aspect=dh / dw, interpolation="nearest")
            if title == "STIR" and lesion_sl is not None and lesion_sl[idx].any():
                ax.contour(lesion_sl[idx].astype(float), levels=[0.5], colors="red", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"slice {idx}", fontsize=8)
    fig.suptitle(s.subject, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------------- report
def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    return f"{v:.{digits}f}"


def write_report(table: pd.DataFrame, summary: dict, subjects: Sequence[SubjectData], out: Path,
                 notes: Sequence[str] = ()) -> Path:
    """``report.html`` (summary table with CIs, notes, per-subject table and montages) in ``out``."""
    methods = list(summary["methods"])
    metric_cols = [c for c in table.columns if c in IMAGE_METRICS or c.startswith(("cr_", "cnr_"))]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = []
    for col in metric_cols:
        cells = []
        for m in methods:
            st = summary["methods"][m].get(col, {})
            if st.get("mean") is None:
                cells.append("<td>&ndash;</td>")
                continue
            ci = f" [{_fmt(st['ci_low'])}, {_fmt(st['ci_high'])}]" if st.get("ci_low") is not None else ""
            cells.append(f"<td>{_fmt(st['mean'])}{ci} <small>n={st['n']}</small></td>")
        arrow = {True: " &uarr;", False: " &darr;"}.get(HIGHER_IS_BETTER.get(col), "")
        body.append(f"<tr><th>{html.escape(col)}{arrow}</th>{''.join(cells)}</tr>")
    method_notes = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in BASELINES.items()
                           if k in methods)
    imgs = "".join(
        f"<h3>{html.escape(s.subject)}</h3><img src=\"montages/{html.escape(s.subject)}.png\" "
        f"alt=\"montage {html.escape(s.subject)}\">" for s in subjects)
    per_subject = table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>synthseq evaluation</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Pseudo-STIR evaluation</h1>
<p>{summary['n_subjects']} subject(s). Means over subjects with {int(CI_LEVEL * 100)}% bootstrap CIs
({summary['bootstrap']['n_resamples']} resamples, seed {summary['seed']}).</p>
<h2>Summary</h2><table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>
<h2>How to read it</h2><ul>
<li>{html.escape(summary['conventions']['normalization'])}</li>
<li>{html.escape(summary['conventions']['metrics'])}</li>
<li>{html.escape(summary['conventions']['lesions'])}</li>
<li>LPIPS: {html.escape(summary['lpips'])}</li>
<li><b>pseudo_stir</b>: the model's prediction.</li>{method_notes}
{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>
<h2>Montages</h2><p>T2w | pseudo-STIR | STIR (red: lesion outline) | |difference| | uncertainty; fixed windows:
images [-1, 1], |difference| {list(DIFF_WINDOW)}, uncertainty {list(UNCERTAINTY_WINDOW)} (normalized units).</p>
{imgs}
<h2>Per subject</h2>{per_subject}
</body></html>
"""
    return atomic_write_text(out / "report.html", text)


# -------------------------------------------------------------------------------------------------- files
def _nifti_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz")))


def _subject_of(path: Path) -> str | None:
    m = SUBJECT_RE.search(path.name)
    return m.group(0) if m else None


def _index(root: Path | None, tag: str, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """``{subject: file}`` for files named ``*<tag>.nii(.gz)`` under folder ``root`` (by their sub-XXXX id)."""
    if root is None or not root.is_dir():
        return {}
    out: dict[str, Path] = {}
    for p in _nifti_files(root):
        stem = p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else p.name[: -len(".nii")]
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


def _train_stats(subject_ids: Sequence[str], inputs: Path | None, target: Path, labels_root: Path | None
                 ) -> list[PairStats]:
    t2 = _index(inputs, "_T2w")
    stir = _index(target, "_STIR")
    labels = _index(labels_root or target, "_labels")
    stats = []
    for sid in subject_ids:
        if sid not in t2 or sid not in stir:
            raise InputError(f"{inputs or target}: training subject {sid} has no T2w / STIR pair for the baselines")
        lab = load_volume(labels[sid], allow_zero=True).data if sid in labels else None
        body = M.body_mask_from_labels(lab) if lab is not None else None
        stats.append(pair_stats(load_volume(t2[sid]), load_volume(stir[sid]), body, sid))
    return stats


def evaluate_paths(pred: str | Path, target: str | Path, out: str | Path, inputs: str | Path | None = None,
                   lesions: str | Path | None = None, mask: str | Path | None = None, seed: int = 0,
                   train_subjects: Sequence[str] | None = None, use_lpips: bool = True, pred_norm: str = "auto") -> Path:
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

    Returns:
        Path of ``report.html``.
    """
    pred, target, out = Path(pred), Path(target), Path(out)
    inputs = Path(inputs) if inputs is not None else None
    lesions = Path(lesions) if lesions is not None else None
    mask = Path(mask) if mask is not None else None
    for p, what in ((pred, "--pred"), (target, "--target"), (inputs, "--input"), (lesions, "--lesions"),
                    (mask, "--mask")):
        if p is not None and not p.exists():
            raise InputError(f"{p}: no such file or folder ({what})")
    single = pred.is_file()
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

    target_labels = _index(target, "_labels") if target.is_dir() else {}
    target_lesions = _index(target, "_lesions") if target.is_dir() else {}
    subjects = []
    for sid, (p, t) in sorted(pairs.items()):
        t2w_path = _lookup(inputs, {}, "_T2w", sid, single)
        les_path = _lookup(lesions, target_lesions, "_lesions", sid, single)
        mask_path = None
        if mask is not None:
            mask_path = mask if mask.is_file() else next(
                (x for tag in ("_labels", "_mask", "_seg") if (x := _index(mask, tag).get(sid))), None)
        lab_path = target_labels.get(sid) if mask_path is None else None
        mask_arr = load_volume(mask_path, allow_zero=True).data if mask_path is not None else None
        labels = load_volume(lab_path, allow_zero=True).data if lab_path is not None else None
        if mask_arr is not None and mask_arr.max() > 1:  # a tissue-label map given as --mask
            labels, mask_arr = mask_arr, None
        unc_path = _uncertainty_beside(p)
        subjects.append(SubjectData(
            subject=sid, pred=load_volume(p), target=load_volume(t),
            t2w=load_volume(t2w_path) if t2w_path is not None else None,
            labels=np.rint(labels).astype(np.int16) if labels is not None else None,
            lesions=np.rint(load_volume(les_path, allow_zero=True).data).astype(np.int16) if les_path else None,
            mask=mask_arr, uncertainty=load_volume(unc_path, allow_zero=True) if unc_path else None,
        ))

    train = None
    notes = []
    if train_subjects is not None and inputs is not None and inputs.is_dir():
        train = _train_stats(list(train_subjects), inputs, target, mask if mask is not None and mask.is_dir() else None)
        notes.append(f"Fair baselines fit on {len(train)} training subject(s).")
    elif inputs is not None:
        notes.append("Fair baselines fit leave-one-subject-out over the evaluated subjects "
                     "(no training subjects given).")
    if unpaired:
        notes.append(f"Predictions without a target (not evaluated): {', '.join(unpaired)}.")

    table = evaluate_volumes(subjects, train=train, baselines=inputs is not None, use_lpips=use_lpips,
                             show_progress=True, pred_norm=pred_norm)
    summary = {
        "n_subjects": len(subjects),
        "subjects": [s.subject for s in subjects],
        "unpaired_predictions": unpaired,
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
                       "mean reference)/std(reference) in the method's image, cnr_target_<class> in real STIR",
        },
        "lpips": _lpips_status(table, use_lpips),
        "methods": summarize(table, seed),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    atomic_write_text(out / "summary.json", json.dumps(_jsonable(summary), indent=2) + "\n")
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
    from .synthesis import uncertainty_path

    p = uncertainty_path(pred_path)
    return p if p.is_file() else None


def _lpips_status(table: pd.DataFrame, requested: bool) -> str:
    if not requested:
        return "not requested"
    if bool(table["lpips_available"].all()):
        return "computed (AlexNet LPIPS from the local torch cache)"
    return ("unavailable: pretrained backbone weights are not in the local torch cache (nothing is downloaded); "
            "reported as NaN")


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


__all__ = ["SubjectData", "bootstrap_ci", "evaluate_paths", "evaluate_volumes", "parse_train_subjects", "summarize",
           "write_montage", "write_report"]
