"""Binary-classification statistics with subject-level bootstrap confidence intervals.

All functions take ``y`` ``(N,)`` in {0, 1} and scores/probabilities ``p`` ``(N,)``. Confidence intervals are
percentile bootstrap intervals over subjects (resampling rows with replacement); resamples holding a single
class are skipped for AUC. When a statistic is undefined (e.g. only one class present) the value is NaN.
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import json_safe, paired_bootstrap_ci

__all__ = ["auc", "binary_report", "bootstrap_ci", "brier", "calibration_bins", "json_safe",
           "sensitivity_specificity"]


def _clean(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y {y.shape} and p {p.shape} differ in length")
    return y, p


def auc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); NaN unless both classes are present."""
    y, p = _clean(y, p)
    pos, neg = p[y == 1], p[y == 0]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def bootstrap_ci(stat, y, p, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of ``stat(y, p)`` over subjects (:func:`synthseq.stats.paired_bootstrap_ci`)."""
    y, p = _clean(y, p)
    return paired_bootstrap_ci(stat, y, p, n_boot=n_boot, seed=seed, alpha=alpha)


def sensitivity_specificity(y, p, threshold: float = 0.5) -> tuple[float, float]:
    """Sensitivity (TP / P) and specificity (TN / N) of ``p >= threshold``; NaN for an absent class."""
    y, p = _clean(y, p)
    pred = p >= threshold
    sens = float(pred[y == 1].mean()) if (y == 1).any() else math.nan
    spec = float((~pred[y == 0]).mean()) if (y == 0).any() else math.nan
    return sens, spec


def brier(y, p) -> float:
    """Mean squared error of probabilities ``p`` in [0, 1] against outcomes ``y`` (0 is perfect)."""
    y, p = _clean(y, p)
    return float(np.mean((p - y) ** 2))


def calibration_bins(y, p, n_bins: int = 5) -> dict[str, list[float]]:
    """Quantile-binned reliability curve: mean predicted vs observed frequency and count per bin."""
    y, p = _clean(y, p)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    out: dict[str, list[float]] = {"predicted": [], "observed": [], "count": []}
    for b in np.unique(which):
        m = which == b
        out["predicted"].append(float(p[m].mean()))
        out["observed"].append(float(y[m].mean()))
        out["count"].append(int(m.sum()))
    return out


def binary_report(y, p, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict[str, float | int]:
    """AUC with 95% CI, sensitivity / specificity at ``threshold``, Brier score, and class counts."""
    y, p = _clean(y, p)
    lo, hi = bootstrap_ci(auc, y, p, n_boot=n_boot, seed=seed)
    sens, spec = sensitivity_specificity(y, p, threshold)
    return {"auc": auc(y, p), "auc_ci_low": lo, "auc_ci_high": hi, "sensitivity": sens, "specificity": spec,
            "threshold": float(threshold), "brier": brier(y, p) if np.all((p >= 0) & (p <= 1)) else math.nan,
            "n": int(y.size), "n_positive": int(y.sum())}
