"""Tissue label and lesion code tables, and the body mask of a label map (fixed interface, ``docs/overview.md``).

The one owner of every code number in the package: the phantom paints them, datasets, metrics, downstream features
and the reader study read them. Nowhere else is a code written as a number (``tests/test_codes.py`` greps for it).
Codes are never renumbered; new ones are only appended. A phantom's ``dataset.json`` stores both tables.
"""

from __future__ import annotations

import numpy as np

#: Tissue label codes (``sub-XXXX_labels.nii.gz``, uint8).
TISSUES: dict[int, str] = {
    0: "background",
    1: "skin",
    2: "subcutaneous_fat",
    3: "muscle",
    4: "prevertebral_soft_tissue",
    5: "airway",
    6: "vertebral_cortex",
    7: "vertebral_marrow",
    8: "disc_annulus",
    9: "disc_nucleus",
    10: "csf",
    11: "cord",
    12: "epidural_fat",
    13: "longitudinal_ligament",
    14: "ligamentum_flavum",
    15: "interspinous_ligament",
    16: "posterior_elements",
    17: "skull_base",
    18: "brain",
    19: "intermuscular_fat",  # appended: fat planes between the posterior neck muscles
}

#: Injury / confounder codes (``sub-XXXX_lesions.nii.gz``, uint8); one code per voxel.
LESIONS: dict[int, str] = {
    0: "none",
    1: "marrow_edema",
    2: "plc_injury",
    3: "cord_edema",
    4: "cord_hemorrhage",
    5: "prevertebral_edema",
    6: "disc_injury",
    7: "canal_compression",
    8: "modic2_fatty",
    9: "hemangioma",
    10: "modic1",
}

# Name -> code, for readable code elsewhere in the package.
T = {name: code for code, name in TISSUES.items()}
L = {name: code for code, name in LESIONS.items()}

AIRWAY = T["airway"]


def body_mask_from_labels(labels: np.ndarray) -> np.ndarray:
    """Body mask of a tissue label map (any shape): ``labels > 0`` and not airway. Same shape, dtype bool."""
    labels = np.asarray(labels)
    return (labels > 0) & (labels != AIRWAY)


#: Short alias used by the phantom.
body_mask = body_mask_from_labels

def tissue_balance_weights(labels: np.ndarray) -> np.ndarray:
    """Per-voxel weights that give every tissue class of a label map the same total weight.

    A body voxel of tissue ``t`` gets ``N / (K * n_t)`` (``N`` body voxels, ``K`` tissue classes present, ``n_t``
    voxels of ``t``), so the weights average 1 over the body and each class sums to ``N / K``; outside the body
    (background, airway) 0. Averaging an error with these weights averages the per-tissue mean errors: a thin
    ligament counts as much as all of the neck's muscle, where a plain mean gives it ~1 % of the say.

    Args:
        labels: tissue label map (phantom codes), any shape.

    Returns:
        float32 array of ``labels``' shape (all 0 when there is no body voxel).
    """
    labels = np.asarray(labels)
    body = body_mask_from_labels(labels)
    out = np.zeros(labels.shape, np.float32)
    codes, inverse, counts = np.unique(labels[body], return_inverse=True, return_counts=True)
    if len(codes):
        out[body] = (body.sum() / (len(codes) * counts.astype(np.float64)))[inverse.ravel()]
    return out


# ----------------------------------------------------------------------------- lesion reference tissue
#: Fewest reference-tissue voxels accepted for a lesion contrast (else the next candidate tissue is tried).
MIN_REFERENCE_VOXELS = 10

#: Reference tissue per lesion class: candidate groups of tissue names, tried in order (first group with at least
#: MIN_REFERENCE_VOXELS normal voxels in the lesion's sagittal slices wins). canal_compression is morphological
#: (no intensity contrast) and has no entry.
REFERENCE_TISSUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "marrow_edema": (("vertebral_marrow",),),
    "plc_injury": (("interspinous_ligament",), ("muscle",)),
    "cord_edema": (("cord",),),
    "cord_hemorrhage": (("cord",),),
    "prevertebral_edema": (("prevertebral_soft_tissue",),),
    "disc_injury": (("disc_nucleus", "disc_annulus"),),
    "modic2_fatty": (("vertebral_marrow",),),
    "hemangioma": (("vertebral_marrow",),),
    "modic1": (("vertebral_marrow",),),
}


def _slices_containing(mask: np.ndarray, axis: int | None) -> np.ndarray:
    """Boolean array of mask's shape: True in every slice (along ``axis``) that contains part of ``mask``."""
    if axis is None:
        return np.ones_like(mask, dtype=bool)
    other = tuple(i for i in range(mask.ndim) if i != axis)
    hit = mask.any(axis=other)
    shape = [1] * mask.ndim
    shape[axis] = -1
    return np.broadcast_to(hit.reshape(shape), mask.shape)


def reference_masks(labels: np.ndarray, lesions: np.ndarray, slice_axis: int | None = None) -> dict[str, np.ndarray]:
    """Normal reference tissue for each lesion class present in ``lesions``.

    Args:
        labels: tissue labels (phantom codes), same shape as ``lesions``.
        lesions: lesion codes (0 = none).
        slice_axis: array axis across sagittal slices; the reference is taken from the slices that contain the
            lesion (the whole volume if too few voxels there, or when None).

    Returns:
        ``{lesion_class_name: bool mask}`` of tissue voxels (per :data:`REFERENCE_TISSUES`) with no lesion of any
        kind; classes without a usable reference are left out.
    """
    labels = np.asarray(labels)
    lesions = np.asarray(lesions)
    if labels.shape != lesions.shape:
        raise ValueError(f"labels {labels.shape} and lesions {lesions.shape} differ in shape")
    normal = lesions == 0
    out: dict[str, np.ndarray] = {}
    for name, code in L.items():
        if name not in REFERENCE_TISSUES or not np.any(lesions == code):
            continue
        near = _slices_containing(lesions == code, slice_axis)
        for region in (near, None):
            chosen = None
            for group in REFERENCE_TISSUES[name]:
                wanted = [T[t] for t in group if t in T]
                ref = np.isin(labels, wanted) & normal
                if region is not None:
                    ref &= region
                if int(ref.sum()) >= MIN_REFERENCE_VOXELS:
                    chosen = ref
                    break
            if chosen is not None:
                out[name] = chosen
                break
    return out

__all__ = ["AIRWAY", "L", "LESIONS", "MIN_REFERENCE_VOXELS", "REFERENCE_TISSUES", "T", "TISSUES", "body_mask",
           "body_mask_from_labels", "reference_masks",
           "tissue_balance_weights"]
