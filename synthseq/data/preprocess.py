"""The one intensity-preprocessing rule: the body mask estimated from intensities, and normalization to [-1, 1].

Training, synthesis, evaluation, the baselines and the downstream classifiers all put a volume into model space
with a :class:`Preprocessor`, and every checkpoint stores it (``Preprocessor.to_dict()``), so a model is always fed,
written back and scored in exactly the scale it was trained in (``data.norm`` / ``data.norm_percentiles``).

* **Mask**: :func:`body_mask_from_intensity` of the volume itself (``mask="intensity"``; labels are not used, because
  a user's scan at synthesis time has none) or every voxel (``mask="none"``).
* **Normalization**: ``method="percentile"`` maps the ``percentiles`` inside the mask to -1 / +1;
  ``"zscore"`` maps mean / std inside the mask to 0 / 1 (:mod:`synthseq.data.normalize`). The inverse is exact
  (``invert(apply(x)) == x`` up to float rounding) unless ``clip=True`` (training targets only).

>>> pre = Preprocessor(percentiles=(1.0, 99.0))
>>> Preprocessor.from_dict(pre.to_dict()) == pre
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from .normalize import METHODS, NormParams, apply_normalization, denormalize, fit_normalization

MASKS = ("intensity", "none")
DEFAULT_PERCENTILES = (0.5, 99.5)


# ---------------------------------------------------------------------------------------------- body mask
def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (maximizes the between-class variance of the histogram)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(centers[int(np.argmax(between))])


def body_mask_from_intensity(volume_data: np.ndarray) -> np.ndarray:
    """Estimated body mask of a 3D magnitude image (bool, same shape), for subjects without labels.

    Threshold at half of Otsu's threshold of log(1 + intensity) (air is orders of magnitude darker than any
    tissue, while dark tissue on T2w / STIR is only a few times darker than bright tissue: the log scale
    separates the first, the halving keeps the second), then: opening (drops noise specks), the largest
    connected component, closing, and hole filling in 3D and in every 2D slice (holes open to the field-of-view
    edge in 3D are often closed in 2D). A volume that is all body (a tight crop) gives a nearly full mask.
    Every step is symmetric under axis permutations and flips, so storage order does not change the mask.
    """
    data = np.asarray(volume_data, dtype=np.float32)
    positive = data[data > 0]
    if positive.size < 16:
        return np.ones(data.shape, dtype=bool)
    thr = 0.5 * float(np.expm1(_otsu(np.log1p(positive))))
    mask = ndimage.binary_opening(data > thr, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.ones(data.shape, dtype=bool)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    it = 2
    padded = np.pad(mask, it, mode="edge")  # edge padding: the FOV border does not erode the closing
    mask |= ndimage.binary_closing(padded, iterations=it)[it:-it, it:-it, it:-it]
    mask = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        moved = np.moveaxis(mask, axis, 0)
        moved[:] = np.stack([ndimage.binary_fill_holes(s) for s in moved])
    return mask


# -------------------------------------------------------------------------------------------- preprocessor
@dataclass(frozen=True)
class Preprocessor:
    """Volume (scanner units) <-> model space [-1, 1]: fit / apply / invert, serializable.

    Attributes:
        method: ``"percentile"`` | ``"zscore"``.
        percentiles: ``(low, high)`` in [0, 100] mapped to -1 / +1 (percentile method).
        mask: ``"intensity"`` (fit inside :func:`body_mask_from_intensity`) | ``"none"`` (all voxels).
    """

    method: str = "percentile"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    mask: str = "intensity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.method not in METHODS:
            raise ConfigError(f"data.norm: expected one of {', '.join(METHODS)}, got {self.method!r}")
        lo, hi = self.percentiles if len(self.percentiles) == 2 else (None, None)
        if lo is None or not (0.0 <= lo < hi <= 100.0):
            raise ConfigError(f"data.norm_percentiles: expected [low, high] with 0 <= low < high <= 100, "
                              f"got {list(self.percentiles)}")
        if self.mask not in MASKS:
            raise ConfigError(f"normalization mask: expected one of {', '.join(MASKS)}, got {self.mask!r}")

    # ---------------------------------------------------------------------------------------- the rule
    def body_mask(self, data: np.ndarray) -> np.ndarray:
        """The voxels normalization is fitted on: bool array of ``data``'s shape."""
        if self.mask == "none":
            return np.ones(np.shape(data), dtype=bool)
        return body_mask_from_intensity(data)

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, name: str = "volume") -> NormParams:
        """NormParams of ``data`` (any shape) fitted inside ``mask`` (default: :meth:`body_mask`).

        Raises:
            InputError: constant intensities inside the mask (message names ``name``).
        """
        if mask is None:
            mask = self.body_mask(data)
        return fit_normalization(data, self.method, self.percentiles, mask, name)

    def apply(self, data: np.ndarray, params: NormParams, clip: bool = False) -> np.ndarray:
        """``data`` in model units (float32); ``clip`` clips to [-1, 1] (percentile method only)."""
        return apply_normalization(data, params, clip=clip and self.method == "percentile")

    def invert(self, y: np.ndarray, params: NormParams) -> np.ndarray:
        """Model units back to the fitted volume's scanner units (exact inverse of an unclipped :meth:`apply`)."""
        return denormalize(y, params)

    def __call__(self, data: np.ndarray, mask: np.ndarray | None = None, clip: bool = False,
                 name: str = "volume") -> tuple[np.ndarray, NormParams]:
        """Fit and apply: ``(data in model units, NormParams)``."""
        params = self.fit(data, mask, name)
        return self.apply(data, params, clip), params

    # ------------------------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "percentiles": list(self.percentiles), "mask": self.mask}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Preprocessor:
        """Inverse of :meth:`to_dict`; also reads version-0.1.0 checkpoints' ``normalization`` entry
        (``{"method", "percentiles"[, "mask": "foreground"]}``)."""
        d = dict(d or {})
        mask = {"foreground": "intensity"}.get(str(d.get("mask", "intensity")), str(d.get("mask", "intensity")))
        return cls(method=str(d.get("method", "percentile")),
                   percentiles=tuple(d.get("percentiles", DEFAULT_PERCENTILES)), mask=mask)

    @classmethod
    def from_sidecar(cls, entry: Mapping[str, Any]) -> Preprocessor:
        """From the ``"Preprocessing"`` entry of a synthesized file's JSON sidecar (:mod:`synthseq.provenance`:
        ``Normalization``, ``NormalizationPercentiles``, ``NormalizationMask``)."""
        return cls.from_dict({"method": entry.get("Normalization", "percentile"),
                              "percentiles": entry.get("NormalizationPercentiles", DEFAULT_PERCENTILES),
                              "mask": entry.get("NormalizationMask", "intensity")})

    @classmethod
    def from_config(cls, data_cfg: Any) -> Preprocessor:
        """From a :class:`~synthseq.config.DataConfig` (``norm``, ``norm_percentiles``)."""
        return cls(method=data_cfg.norm, percentiles=tuple(data_cfg.norm_percentiles))


__all__ = ["DEFAULT_PERCENTILES", "MASKS", "Preprocessor", "body_mask_from_intensity"]
