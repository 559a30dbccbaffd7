"""The phantom's code tables live in :mod:`synthseq.codes` (the bottom layer); this name is kept for imports."""

from ..codes import AIRWAY, LESIONS, TISSUES, L, T, body_mask, body_mask_from_labels

__all__ = ["AIRWAY", "L", "LESIONS", "T", "TISSUES", "body_mask", "body_mask_from_labels"]
