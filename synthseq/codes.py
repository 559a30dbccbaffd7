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

__all__ = ["AIRWAY", "L", "LESIONS", "T", "TISSUES", "body_mask", "body_mask_from_labels"]
