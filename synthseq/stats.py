"""Statistics shared by every report: bootstrap confidence intervals and JSON-safe values.

Bottom layer (numpy / scipy only), so evaluation, the downstream benchmarks and the reader study all draw their
intervals and their JSON the same way.

* :func:`mean_ci`: mean of a sample with a seeded percentile bootstrap CI (``scipy.stats.bootstrap``), the interval
  every per-subject table reports (subjects resampled with replacement).
* :func:`paired_bootstrap_ci`: percentile bootstrap of any statistic of paired arrays ``stat(y, p)`` (e.g. an AUC),
  skipping resamples where the statistic is undefined (a resample holding one class).
* :func:`json_safe` / :func:`dumps`: NaN and inf become ``null`` and numpy scalars plain numbers, so a written
  JSON file is always valid JSON (``allow_nan=False``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

N_BOOTSTRAP = 2000  #: resamples for :func:`mean_ci`
CI_LEVEL = 0.95


def mean_ci(values: Sequence[float], seed: int | Sequence[int] = 0, n_boot: int = N_BOOTSTRAP,
            level: float = CI_LEVEL) -> dict[str, float | int | None]:
    """Mean of the finite ``values`` and its percentile bootstrap CI.

    Args:
        values: ``(N,)`` sample; NaN / inf entries are dropped first.
        seed: seed (or seed sequence) of the resampling; the same seed gives the same interval.
        n_boot: number of bootstrap resamples.
        level: confidence level in (0, 1).

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``; the CI is None for fewer than 2 finite values, everything but
        ``n`` is None for none. A sample of identical values gets a zero-width interval at its mean.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    if np.ptp(v) == 0:  # scipy warns and returns NaN for a degenerate sample; its interval is the point itself
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": int(v.size)}
    from scipy.stats import bootstrap

    res = bootstrap((v,), np.mean, n_resamples=int(n_boot), confidence_level=level, method="percentile",
                    vectorized=True, random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"mean": mean, "ci_low": float(ci.low), "ci_high": float(ci.high), "n": int(v.size)}


def paired_bootstrap_ci(stat: Callable[[np.ndarray, np.ndarray], float], y, p, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` of ``stat(y, p)`` over rows (subjects) of two paired ``(N,)`` arrays.

    Resamples where ``stat`` is NaN (undefined, e.g. an AUC of one class) are skipped; with fewer than
    ``max(10, n_boot // 10)`` defined resamples the interval is ``(nan, nan)``.
    """
    y = np.asarray(y).ravel()
    p = np.asarray(p).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y {y.shape} and p {p.shape} differ in length")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, y.size, y.size)
        v = stat(y[idx], p[idx])
        if not math.isnan(v):
            values.append(v)
    if len(values) < max(10, n_boot // 10):
        return math.nan, math.nan
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN / inf floats replaced by None, numpy scalars / arrays made plain and paths made strings,
    recursively."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Valid JSON text of ``obj`` (undefined statistics as ``null``; never ``NaN``), newline-terminated."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"


__all__ = ["CI_LEVEL", "N_BOOTSTRAP", "dumps", "json_safe", "mean_ci", "paired_bootstrap_ci"]
