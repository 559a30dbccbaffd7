"""Robust per-volume intensity normalization to the model's range, with an exact inverse.

Model space is [-1, 1] (generators end in tanh). Percentile scaling maps the ``percentiles`` (computed inside an
optional body mask) to -1 and +1; z-score maps the mean and standard deviation to 0 and 1. Both are affine maps
``y = (x - center) / scale`` whose parameters are returned as :class:`NormParams`, so
``denormalize(normalize(x)[0], params) == x`` up to float rounding whenever ``clip=False``.
MRI intensities are never cast to uint8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError

METHODS = ("percentile", "zscore")


@dataclass(frozen=True)
class NormParams:
    """Parameters of ``y = (x - center) / scale`` (x in scanner units, y in model units)."""

    method: str
    center: float
    scale: float
    low: float | None = None  #: percentile method: intensity mapped to -1
    high: float | None = None  #: percentile method: intensity mapped to +1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NormParams:
        return cls(**d)


def fit_normalization(
    x: np.ndarray,
    method: str = "percentile",
    percentiles: tuple[float, float] | list[float] = (0.5, 99.5),
    mask: np.ndarray | None = None,
    name: str = "volume",
) -> NormParams:
    """Compute normalization parameters for array ``x`` (any shape), using voxels inside ``mask`` if given."""
    if method not in METHODS:
        raise ValueError(f"unknown normalization {method!r} (use one of {METHODS})")
    values = np.asarray(x, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
        if values.size == 0:
            raise InputError(f"{name}: the normalization mask is empty")
    if method == "percentile":
        low, high = np.percentile(values, percentiles)
        if not high > low:
            raise InputError(f"{name}: intensities are constant between the {percentiles} percentiles")
        return NormParams("percentile", center=float(high + low) / 2, scale=float(high - low) / 2,
                          low=float(low), high=float(high))
    mean, std = float(values.mean()), float(values.std())
    if not std > 0:
        raise InputError(f"{name}: intensities are constant (zero standard deviation)")
    return NormParams("zscore", center=mean, scale=std)


def apply_normalization(x: np.ndarray, params: NormParams, clip: bool = False) -> np.ndarray:
    """``(x - center) / scale`` as float32; ``clip`` limits the result to [-1, 1] (percentile targets)."""
    y = ((np.asarray(x, dtype=np.float64) - params.center) / params.scale).astype(np.float32)
    return np.clip(y, -1.0, 1.0) if clip else y


def normalize(
    x: np.ndarray,
    method: str = "percentile",
    percentiles: tuple[float, float] | list[float] = (0.5, 99.5),
    mask: np.ndarray | None = None,
    clip: bool = False,
    name: str = "volume",
) -> tuple[np.ndarray, NormParams]:
    """Normalize ``x`` and return ``(y, params)``; see the module docstring for the maps."""
    params = fit_normalization(x, method, percentiles, mask, name)
    return apply_normalization(x, params, clip=clip), params


def denormalize(y: np.ndarray, params: NormParams) -> np.ndarray:
    """Inverse of :func:`apply_normalization` (without clipping): model units -> scanner units, float32."""
    return (np.asarray(y, dtype=np.float64) * params.scale + params.center).astype(np.float32)
