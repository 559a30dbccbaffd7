"""Non-learned T2w -> STIR baselines that pseudo-STIR must beat: histogram matching and a linear intensity fit.

All baselines work in the normalized model space of a :class:`~synthseq.data.preprocess.Preprocessor` (the model's
rule; default 0.5 / 99.5 percentiles inside the T2w's intensity body mask), exactly as training and synthesis
normalize: a baseline maps normalized T2w values to normalized STIR values voxel by voxel, and its output is written
back in the **input T2w's scale** (``pre.invert(y, t2w_params)``) -- the same convention as the pseudo-STIR, so
evaluation treats all methods alike. A body mask given to the functions selects the voxels the statistics use.

* :class:`HistogramMatching` (``"histmatch"``, fair): a monotone quantile map learned from TRAINING pairs. Each
  training subject gives the quantile functions of its normalized T2w and STIR inside the body; the mean quantile
  functions over subjects (the 1-D Wasserstein barycentres) define the map ``y = interp(x, q_T2w, q_STIR)``.
  Being monotone, it cannot swap the order of tissues (fat is bright on T2w and dark on STIR), which is exactly
  the point of comparing against it.
* :class:`LinearFit` with ``variant="pooled"`` (``"linear_pooled"``, fair): least squares ``STIR ~ a T2w + b`` over
  the body voxels of all training subjects pooled.
* :class:`LinearFit` with ``variant="oracle"`` (``"linear_oracle"``, NOT a fair baseline): the same fit on the
  test subject itself, using its real STIR -- an upper bound for any global linear map, labelled as an oracle.

Honest caveat for both linear variants: the metrics renormalize every volume by its own percentiles
(:mod:`synthseq.metrics`), which undoes any map ``a x + b`` with ``a > 0``. So under that convention a linear
baseline scores exactly like the (normalized) T2w itself when ``a > 0`` and like the inverted T2w when ``a < 0``;
the two variants differ only if their slopes differ in sign. That is a property of the evaluation convention, not a
bug: a global linear map carries no information beyond its sign once intensity scale is factored out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .data.preprocess import Preprocessor
from .io import Volume

#: Quantile levels of the histogram-matching map.
N_QUANTILES = 256

#: Method names as they appear in evaluation tables, with a one-line description each.
BASELINES = {
    "histmatch": "histogram matching: monotone quantile map T2w -> STIR pooled over training subjects (fair)",
    "linear_pooled": "linear fit STIR ~ a*T2w + b pooled over training subjects (fair)",
    "linear_oracle": "linear fit STIR ~ a*T2w + b on the test subject's own real STIR (ORACLE, not fair)",
}


def _data(x: Volume | np.ndarray) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Volume) else x)



@dataclass(frozen=True)
class PairStats:
    """What the fair baselines need from one training pair (normalized units, body voxels only).

    Attributes:
        t2w_quantiles, stir_quantiles: ``(N_QUANTILES,)`` quantile functions at ``linspace(0, 1, N)``.
        sums: ``(n, sum x, sum y, sum x^2, sum x*y)`` over body voxels (x = T2w, y = STIR), for least squares.
    """

    t2w_quantiles: np.ndarray
    stir_quantiles: np.ndarray
    sums: tuple[float, float, float, float, float]


def pair_stats(t2w: Volume | np.ndarray, stir: Volume | np.ndarray, mask: np.ndarray | None = None,
               name: str = "pair", preprocessor: Preprocessor | None = None) -> PairStats:
    """Summaries of one training pair (same grid), both volumes normalized by ``preprocessor`` inside ``mask``
    (default: the T2w's own preprocessing mask, as training normalizes); the statistics use the same voxels."""
    pre = preprocessor or Preprocessor()
    x_raw, y_raw = _data(t2w), _data(stir)
    if x_raw.shape != y_raw.shape:
        raise ValueError(f"{name}: T2w {x_raw.shape} and STIR {y_raw.shape} are not on one grid")
    m = pre.body_mask(x_raw) if mask is None else np.asarray(mask, bool)
    x, _ = pre(x_raw, mask=m, name=f"{name} (T2w)")
    y, _ = pre(y_raw, mask=m, name=f"{name} (STIR)")
    xv, yv = x[m].astype(np.float64), y[m].astype(np.float64)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    return PairStats(np.quantile(xv, levels), np.quantile(yv, levels),
                     (float(xv.size), float(xv.sum()), float(yv.sum()), float((xv * xv).sum()),
                      float((xv * yv).sum())))


def _apply_map(t2w: Volume, fn, mask: np.ndarray | None, preprocessor: Preprocessor | None) -> Volume:
    """Normalize the T2w (as synthesis does unless ``mask`` is given), map with ``fn``, write back in the T2w's
    scale (float32)."""
    pre = preprocessor or Preprocessor()
    x, params = pre(_data(t2w), mask=None if mask is None else np.asarray(mask, bool), name=t2w.name)
    out = t2w.with_data(np.ascontiguousarray(pre.invert(fn(x), params)))
    if out.header is not None:
        out.header.set_data_dtype(np.float32)
    return out


@dataclass(frozen=True)
class HistogramMatching:
    """Monotone quantile map from normalized T2w to normalized STIR (see the module docstring)."""

    t2w_quantiles: np.ndarray
    stir_quantiles: np.ndarray

    @classmethod
    def from_stats(cls, stats: Sequence[PairStats]) -> HistogramMatching:
        if not stats:
            raise ValueError("histogram matching needs at least one training pair")
        tq = np.mean([s.t2w_quantiles for s in stats], axis=0)
        sq = np.mean([s.stir_quantiles for s in stats], axis=0)
        tq = np.maximum.accumulate(tq)  # np.interp needs non-decreasing x (already true up to rounding)
        return cls(tq, sq)

    @classmethod
    def fit(cls, pairs: Iterable[tuple]) -> HistogramMatching:
        """Fit on training pairs ``(t2w, stir[, mask])`` (Volumes or arrays on one grid)."""
        return cls.from_stats([pair_stats(*p) for p in pairs])

    def map_normalized(self, x: np.ndarray) -> np.ndarray:
        """Normalized T2w -> normalized STIR (values beyond the learned range map to the end values)."""
        return np.interp(x, self.t2w_quantiles, self.stir_quantiles).astype(np.float32)

    def apply(self, t2w: Volume, mask: np.ndarray | None = None, preprocessor: Preprocessor | None = None) -> Volume:
        """Baseline STIR on the T2w's grid, in the T2w's scale, float32; normalized by ``preprocessor`` inside
        ``mask`` (default: its own body mask, as synthesis normalizes)."""
        return _apply_map(t2w, self.map_normalized, mask, preprocessor)


@dataclass(frozen=True)
class LinearFit:
    """``STIR_n = a * T2w_n + b`` in normalized units; ``variant`` is ``"pooled"`` (fair) or ``"oracle"``."""

    a: float
    b: float
    variant: str = "pooled"

    @classmethod
    def from_stats(cls, stats: Sequence[PairStats], variant: str = "pooled") -> LinearFit:
        if not stats:
            raise ValueError("a linear fit needs at least one pair")
        n, sx, sy, sxx, sxy = np.sum([s.sums for s in stats], axis=0)
        var = sxx - sx * sx / n
        a = float((sxy - sx * sy / n) / var) if var > 0 else 0.0
        return cls(a, float((sy - a * sx) / n), variant)

    @classmethod
    def fit(cls, pairs: Iterable[tuple]) -> LinearFit:
        """Pooled least squares over training pairs ``(t2w, stir[, mask])``: the fair variant."""
        return cls.from_stats([pair_stats(*p) for p in pairs], "pooled")

    @classmethod
    def fit_oracle(cls, t2w: Volume | np.ndarray, stir: Volume | np.ndarray,
                   mask: np.ndarray | None = None) -> LinearFit:
        """Least squares on the test subject's OWN real STIR: an oracle upper bound, not a fair baseline."""
        return cls.from_stats([pair_stats(t2w, stir, mask)], "oracle")

    def map_normalized(self, x: np.ndarray) -> np.ndarray:
        return (self.a * np.asarray(x, np.float64) + self.b).astype(np.float32)

    def apply(self, t2w: Volume, mask: np.ndarray | None = None, preprocessor: Preprocessor | None = None) -> Volume:
        """Baseline STIR on the T2w's grid, in the T2w's scale, float32; normalized by ``preprocessor`` inside
        ``mask`` (default: its own body mask, as synthesis normalizes)."""
        return _apply_map(t2w, self.map_normalized, mask, preprocessor)


__all__ = ["BASELINES", "HistogramMatching", "LinearFit", "PairStats", "pair_stats"]
