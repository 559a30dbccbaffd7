"""Scoring: one metric row per subject and method (image- and lesion-level), and the summary with CIs.

Conventions (see :mod:`synthseq.metrics`): model space [-1, 1], ``data_range = 2.0``; the target is normalized by its
own percentiles inside the body mask; predictions either by their own percentiles (``pred_norm="own"``) or by the
T2w's normalization exactly as synthesis applied it (``"input"``, the scale synthseq writes pseudo-STIR in).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import metrics as M
from ..baselines import BASELINES, HistogramMatching, LinearFit, PairStats, pair_stats
from ..codes import body_mask_from_labels
from ..data.normalize import NormParams, normalize
from ..data.preprocess import Preprocessor
from ..data.slicing import SagittalView
from ..errors import InputError
from ..io import Volume, sagittal_axis
from ..stats import CI_LEVEL, N_BOOTSTRAP, mean_ci
from ..utils import progress

METHOD = "pseudo_stir"
#: The built-in image metrics (registered ones follow them: :func:`synthseq.metrics.register_metric`).
IMAGE_METRICS = tuple(M.BUILTIN_METRICS)
HIGHER_IS_BETTER = dict(M.BUILTIN_METRICS)


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
    preprocessor: Preprocessor | None = None  #: the rule the prediction was written with (None: the default)

    def body_mask(self) -> tuple[np.ndarray, str]:
        if self.labels is not None:
            return body_mask_from_labels(self.labels), "labels"
        if self.mask is not None:
            return np.asarray(self.mask) > 0, "mask"
        from ..data.preprocess import body_mask_from_intensity

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


def preprocessor_of(s: SubjectData) -> Preprocessor:
    """The Preprocessor the subject's prediction was written with (default rule when unknown)."""
    return s.preprocessor if s.preprocessor is not None else Preprocessor()


def input_params(s: SubjectData) -> NormParams:
    """The T2w's NormParams exactly as :mod:`synthseq.synthesis` fitted them (the model's
    :class:`~synthseq.data.preprocess.Preprocessor`, ``SubjectData.preprocessor``): the scale every synthseq
    prediction and baseline is written in."""
    if s.t2w is None:
        raise InputError(f"{s.pred.name}: pred_norm='input' needs the subject's T2w (--input)")
    return preprocessor_of(s).fit(s.t2w.data, name=s.t2w.name)


def normalized_pair(pred: Volume, s: SubjectData, body: np.ndarray, pred_params: NormParams | None
                    ) -> tuple[np.ndarray, np.ndarray, NormParams]:
    """Prediction and target in model units: the target by its own percentiles in ``body``; the prediction by its
    own percentiles too (``pred_params`` None), or by ``pred_params`` (``pred_norm="input"``)."""
    if pred_params is None:
        pred_n, target_n, pred_params, _ = M.normalize_pair(pred.data, s.target.data, body,
                                                            names=(pred.name, s.target.name))
        return pred_n, target_n, pred_params
    # the target as training normalized it: the model's percentiles (same method), inside the body mask
    pre = preprocessor_of(s)
    target_n = pre(s.target.data, mask=body, name=s.target.name)[0]
    return pre.apply(pred.data, pred_params), target_n, pred_params


def _image_row(pred: Volume, s: SubjectData, body: np.ndarray, view: SagittalView, use_lpips: bool,
               slice_axis: int, pred_params: NormParams | None) -> dict[str, float]:
    """Image- and lesion-level numbers of one prediction (model or baseline) of one subject."""
    pred_n, target_n, _ = normalized_pair(pred, s, body, pred_params)
    p_sl, t_sl, m_sl = view.to_slices(pred_n), view.to_slices(target_n), view.to_slices(body)
    row: dict[str, float] = {}
    vm = M.volume_metrics(np.ascontiguousarray(p_sl), np.ascontiguousarray(t_sl), np.ascontiguousarray(m_sl),
                          data_range=M.MODEL_DATA_RANGE)
    row.update(mae=vm["mae"], psnr=vm["psnr"], ssim=vm["ssim"])
    for metric in M.registered_metrics():
        row[metric.name] = float(metric.fn(p_sl, t_sl, m_sl.astype(bool), data_range=M.MODEL_DATA_RANGE))
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
            row[f"sr_{name}"] = v["step_recovery"]
            row[f"rb_{name}"] = v["reference_bias"]
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
    # normalized as training normalizes (the model's rule inside the T2w's own mask), like the prediction
    return pair_stats(s.t2w, s.target, None, s.subject, preprocessor_of(s))


def evaluate_volumes(subjects: Sequence[SubjectData], train: Sequence[PairStats] | None = None,
                     baselines: bool = True, use_lpips: bool = True, show_progress: bool = False,
                     pred_norm: str = "auto", slice_plane: str = "sagittal") -> pd.DataFrame:
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
        slice_plane: the plane SSIM is computed in (the model's, ``synthseq.data.slicing``); MAE / PSNR pool
            the same body voxels in any plane.

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
        view = SagittalView.from_affine(s.target.affine, slice_plane)  # SSIM windows in the model's plane
        axis = sagittal_axis(s.target.affine)
        pparams = input_params(s) if resolve_pred_norm(pred_norm, s) == "input" else None
        rows.append({"subject": s.subject, "method": METHOD, "mask": source,
                     **_image_row(s.pred, s, body, view, use_lpips, axis, pparams)})
        if not baselines or stats.get(s.subject) is None:
            continue
        pool = list(train) if train is not None else [v for k, v in stats.items() if k != s.subject and v]
        pre = preprocessor_of(s)
        preds = {"linear_oracle": LinearFit.from_stats([stats[s.subject]], "oracle").apply(s.t2w, preprocessor=pre)}
        if pool:
            preds["histmatch"] = HistogramMatching.from_stats(pool).apply(s.t2w, preprocessor=pre)
            preds["linear_pooled"] = LinearFit.from_stats(pool, "pooled").apply(s.t2w, preprocessor=pre)
        for method in BASELINES:
            if method in preds:
                s.extra[method] = preds[method]
                rows.append({"subject": s.subject, "method": method, "mask": source,
                             **_image_row(preds[method], s, body, view, use_lpips, axis, pparams)})
    table = pd.DataFrame(rows)
    lesion_cols = sorted(c for c in table.columns if c.startswith(M.LESION_COLUMN_PREFIXES))
    return table[["subject", "method", "mask", *M.image_metric_names(), "lpips_available", *lesion_cols]]



# ------------------------------------------------------------------------------------------------ summary

def bootstrap_ci(values: Sequence[float], seed: int | Sequence[int] = 0, n_boot: int = N_BOOTSTRAP,
                 level: float = CI_LEVEL) -> dict[str, float | int | None]:
    """Mean of the finite ``values`` with its percentile bootstrap CI (:func:`synthseq.stats.mean_ci`)."""
    return mean_ci(values, seed=seed, n_boot=n_boot, level=level)


def summarize(table: pd.DataFrame, seed: int = 0) -> dict:
    """Per method and metric: mean and 95 % bootstrap CI over subjects (seeded per method and metric)."""
    metric_cols = [c for c in table.columns if c in M.image_metric_names() or c.startswith(M.LESION_COLUMN_PREFIXES)]
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

