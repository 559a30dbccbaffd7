"""Quantitative image features of spinal injury from a (pseudo-)STIR or T2w volume.

Method (documented so results can be reproduced by hand):

1. **Regions** come from the tissue label map (:mod:`synthseq.codes`): spinal cord,
   vertebral marrow, posterior ligamentous complex = ligamentum flavum + interspinous/supraspinous ligament,
   and paraspinal muscle as the reference tissue.
2. **Cord, level by level.** The cord is thin (2-4 voxels across at clinical resolution) and every border voxel
   shares partial volume with the bright CSF around it, so single voxels cannot tell edema from CSF. Instead each
   superior-inferior level (row of the canonical sagittal slices, ``synthseq.data.slicing``) is summarized by
   the 25th percentile and the median of its cord voxels (partial-volume voxels are the bright minority; edema
   fills the whole cross-section). With ``base`` = the median of these row statistics over all levels (normal
   cord), a level is a *seed* if its 25th percentile exceeds ``(1 + cord_seed_contrast) * base_p25`` and
   lesional if it is a seed or joins a seed through consecutive levels whose median exceeds
   ``(1 + cord_grow_contrast) * base_median`` (hysteresis). Hyperintense cord voxels are the cord voxels of
   lesional levels above ``(1 + cord_grow_contrast) * base_median``.
3. **Marrow, voxel by voxel.** Normal marrow is the majority: its median and ``sigma = 1.4826 * MAD`` describe
   it; marrow voxels above ``median + max(k * sigma, min_contrast * |median|)`` are hyperintense, and connected
   components (26-connectivity) smaller than ``min_voxels`` are dropped as noise. Edema-like confounders
   (Modic 1 endplate change, hemangioma) are bright too and are counted: intensity alone cannot tell them apart.
4. **Features** (units in the names):

   * ``cord_lesion_length_mm`` - rostro-caudal extent of all hyperintense cord voxels: the span of their
     voxel centres along the superior-inferior world axis plus one voxel (0 when none);
   * ``cord_edema_ml`` - hyperintense cord volume;
   * ``marrow_edema_ml`` and ``marrow_edema`` (0/1: volume >= ``min_marrow_ml``);
   * ``plc_signal`` - mean PLC intensity divided by the median muscle intensity (dimensionless), and
     ``plc_hyper_fraction`` - fraction of PLC voxels above the PLC-independent muscle-based threshold
     ``median_muscle + k * sigma_muscle`` (an injured, oedematous PLC is brighter than muscle on STIR).

:func:`lesion_truth` measures the same quantities on the phantom's lesion mask and :func:`validate_features`
reports the errors. Labels are required: a label-free (T2w-segmentation) variant is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..codes import L, T
from ..errors import InputError
from ..io import Volume, anatomical_axis, load_volume

CORD, MARROW, MUSCLE = T["cord"], T["vertebral_marrow"], T["muscle"]
PLC = (T["ligamentum_flavum"], T["interspinous_ligament"])
LESION_MARROW, LESION_PLC = L["marrow_edema"], L["plc_injury"]
LESION_CORD_EDEMA, LESION_CORD_HEMORRHAGE = L["cord_edema"], L["cord_hemorrhage"]

FEATURE_NAMES = ("cord_lesion_length_mm", "cord_edema_ml", "marrow_edema_ml", "marrow_edema", "plc_signal",
                 "plc_hyper_fraction")


@dataclass(frozen=True)
class FeatureSettings:
    """Thresholds of the hyperintensity method (see the module docstring)."""

    k: float = 3.0  #: robust standard deviations above the regional median
    min_contrast: float = 0.25  #: and at least this fraction above the median
    min_voxels: int = 3  #: smaller connected components are noise
    cord_seed_contrast: float = 0.6  #: a level's 25th percentile this much above normal cord seeds a lesion
    cord_grow_contrast: float = 0.2  #: neighbouring levels with a median this much above normal extend it
    min_marrow_ml: float = 0.05  #: marrow-edema presence threshold


def _voxel_ml(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


def _si_extent_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """Span of ``mask``'s voxel centres along world superior-inferior, plus one voxel's SI size (mm)."""
    if not mask.any():
        return 0.0
    idx = np.argwhere(mask)
    z = idx @ affine[2, :3] + affine[2, 3]
    si_axis, _ = anatomical_axis(affine, "SI")
    step = abs(float(affine[2, si_axis]))
    return float(z.max() - z.min() + step)


def _robust(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(1.4826 * np.median(np.abs(values - med)))


def _threshold(values: np.ndarray, s: FeatureSettings) -> float:
    med, sigma = _robust(values)
    return med + max(s.k * sigma, s.min_contrast * abs(med))


def _drop_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    if min_voxels <= 1 or not mask.any():
        return mask
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= min_voxels
    return keep[lab]


def _cord_lesion(image: np.ndarray, cord: np.ndarray, affine: np.ndarray, s: FeatureSettings) -> np.ndarray:
    """Hyperintense cord voxels by the level-wise hysteresis of step 2 (boolean, storage order)."""
    from ..data.slicing import SagittalView

    view = SagittalView.from_affine(affine)
    img, mask = view.to_slices(image), view.to_slices(cord)
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    out = np.zeros(mask.shape, bool)
    if rows.size < 3:
        return view.from_slices(out)
    p25 = np.array([np.percentile(img[:, r][mask[:, r]], 25) for r in rows])
    med = np.array([np.median(img[:, r][mask[:, r]]) for r in rows])
    seed = p25 > (1 + s.cord_seed_contrast) * np.median(p25)
    grow_level = (1 + s.cord_grow_contrast) * np.median(med)
    grow = (med > grow_level) | seed
    # keep runs of consecutive growing levels that contain a seed
    runs, n = ndimage.label(grow)
    keep = np.zeros(rows.size, bool)
    for k in range(1, n + 1):
        run = runs == k
        if seed[run].any():
            keep |= run
    for r in rows[keep]:
        out[:, r] = mask[:, r] & (img[:, r] > grow_level)
    return view.from_slices(out)


def hyperintense_masks(image: np.ndarray, labels: np.ndarray, affine: np.ndarray,
                       settings: FeatureSettings = FeatureSettings()) -> dict[str, np.ndarray]:
    """Boolean ``(X, Y, Z)`` masks of hyperintense cord and marrow voxels (steps 1-3 of the method)."""
    marrow = labels == MARROW
    out = {"cord": _cord_lesion(image, labels == CORD, affine, settings), "marrow": np.zeros_like(marrow)}
    if marrow.sum() >= 2:
        t = _threshold(image[marrow], settings)
        out["marrow"] = _drop_small(marrow & (image > t), settings.min_voxels)
    return out


def extract_features(image: Volume, labels: Volume, settings: FeatureSettings = FeatureSettings()) -> dict[str, float]:
    """Injury features of ``image`` (STIR, pseudo-STIR or T2w; any scale) given its tissue ``labels``.

    Returns a dict with the keys of :data:`FEATURE_NAMES` (units: mm, mL, 0/1, ratios).
    """
    data = np.asarray(image.data, dtype=np.float64)
    lab = np.rint(np.asarray(labels.data)).astype(np.int64)
    if data.shape != lab.shape:
        raise InputError(f"{labels.name}: label grid {lab.shape} differs from the image grid {data.shape}")
    if not (lab == CORD).any():
        raise InputError(f"{labels.name}: no spinal cord voxels (label {CORD}); features need tissue labels")
    masks = hyperintense_masks(data, lab, image.affine, settings)
    vml = _voxel_ml(image.affine)
    marrow_ml = float(masks["marrow"].sum() * vml)
    muscle = lab == MUSCLE
    plc = np.isin(lab, PLC)
    if muscle.sum() >= 2 and plc.any():
        m_med, m_sigma = _robust(data[muscle])
        plc_signal = float(data[plc].mean() / m_med) if m_med > 0 else math.nan
        plc_frac = float((data[plc] > m_med + settings.k * m_sigma).mean())
    else:
        plc_signal, plc_frac = math.nan, math.nan
    return {
        "cord_lesion_length_mm": _si_extent_mm(masks["cord"], image.affine),
        "cord_edema_ml": float(masks["cord"].sum() * vml),
        "marrow_edema_ml": marrow_ml,
        "marrow_edema": float(marrow_ml >= settings.min_marrow_ml),
        "plc_signal": plc_signal,
        "plc_hyper_fraction": plc_frac,
    }


def lesion_truth(lesions: Volume, labels: Volume | None = None) -> dict[str, float]:
    """The same quantities measured on a lesion-code mask (phantom ``_lesions``): the reference standard.

    Cord lesion length spans cord edema and hemorrhage; cord edema volume counts cord edema only; marrow
    edema counts marrow edema (inside the marrow label when labels are given, matching what the method can see).
    """
    les = np.rint(np.asarray(lesions.data)).astype(np.int64)
    vml = _voxel_ml(lesions.affine)
    marrow = les == LESION_MARROW
    if labels is not None:
        marrow &= np.rint(np.asarray(labels.data)).astype(np.int64) == MARROW
    cord_any = np.isin(les, (LESION_CORD_EDEMA, LESION_CORD_HEMORRHAGE))
    return {
        "cord_lesion_length_mm": _si_extent_mm(cord_any, lesions.affine),
        "cord_edema_ml": float((les == LESION_CORD_EDEMA).sum() * vml),
        "marrow_edema_ml": float(marrow.sum() * vml),
        "marrow_edema": float(marrow.any()),
        "plc_injury": float((les == LESION_PLC).any()),
    }


@dataclass
class FeatureValidation:
    """Errors of extracted features against :func:`lesion_truth` over subjects."""

    n: int
    length_mae_mm: float  #: mean absolute error of cord lesion length
    length_max_err_mm: float
    cord_volume_mae_ml: float
    marrow_volume_mae_ml: float
    marrow_presence_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def validate_features(pairs: list[tuple[dict[str, float], dict[str, float]]]) -> FeatureValidation:
    """Compare ``(extracted, truth)`` feature dicts of several subjects."""
    if not pairs:
        raise ValueError("no subjects to validate")
    ext = {k: np.array([e[k] for e, _ in pairs]) for k in FEATURE_NAMES}
    tru = {k: np.array([t[k] for _, t in pairs]) for k in ("cord_lesion_length_mm", "cord_edema_ml",
                                                             "marrow_edema_ml", "marrow_edema")}
    length_err = np.abs(ext["cord_lesion_length_mm"] - tru["cord_lesion_length_mm"])
    return FeatureValidation(
        n=len(pairs),
        length_mae_mm=float(length_err.mean()),
        length_max_err_mm=float(length_err.max()),
        cord_volume_mae_ml=float(np.abs(ext["cord_edema_ml"] - tru["cord_edema_ml"]).mean()),
        marrow_volume_mae_ml=float(np.abs(ext["marrow_edema_ml"] - tru["marrow_edema_ml"]).mean()),
        marrow_presence_accuracy=float((ext["marrow_edema"] == tru["marrow_edema"]).mean()),
    )


def features_for_subjects(root: str | Path, subjects, source: str, pseudo=None,
                          settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Feature matrix ``(N, len(FEATURE_NAMES))`` for subjects of a phantom-layout folder.

    Args:
        source: ``"t2w"``, ``"stir"`` or ``"pseudostir"`` - which image the features are measured on.
        pseudo: for ``"pseudostir"``: a :class:`~synthseq.downstream.sources.PseudoStirSource`.
    """
    from .dataset import subject_file

    rows = []
    for s in subjects:
        t2w_path = subject_file(root, s, "t2w")
        labels = load_volume(subject_file(root, s, "labels"), allow_zero=True)
        if source == "t2w":
            img = load_volume(t2w_path)
        elif source == "stir":
            img = load_volume(subject_file(root, s, "stir"))
        elif source == "pseudostir":
            if pseudo is None:
                raise InputError("pseudo-STIR features need a synthesis checkpoint or a pseudo-STIR folder")
            img = pseudo.get(s, load_volume(t2w_path))
        else:
            raise ValueError(f"unknown feature source {source!r}")
        feats = extract_features(img, labels, settings)
        rows.append([feats[k] for k in FEATURE_NAMES])
    return np.asarray(rows, dtype=np.float64)
