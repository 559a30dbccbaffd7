"""Render classes of the phantom: tissue compositions painted by ``anatomy`` and refined by ``injuries``.

A render class is finer than a public label (e.g. vertebral and posterior-element marrow are two classes with
one label): :data:`CLASS_LABEL` maps each class to its code in :data:`synthseq.codes.TISSUES`, and
:func:`class_composition` gives its compartment fractions (``tissues.py``). This module sits below both
``anatomy`` and ``injuries`` so that neither imports the other's internals (no import cycle).
"""

from __future__ import annotations

import numpy as np

from ..codes import T as LABEL

# ------------------------------------------------------------------------------------------ render classes
AIR, SKIN, SUBCUT_FAT, MUSCLE, PREVERT, AIRWAY, CORTEX, MARROW, ANNULUS, NUCLEUS, CSF, CORD, EPIFAT, \
    LONGLIG, FLAVUM, ISL, POST_CORTEX, SKULL_CORTEX, BRAIN, POST_MARROW, SKULL_MARROW, IM_FAT = range(22)
N_CLASSES = 22

#: render class -> public label code
CLASS_LABEL = np.array([
    0, LABEL["skin"], LABEL["subcutaneous_fat"], LABEL["muscle"], LABEL["prevertebral_soft_tissue"],
    LABEL["airway"], LABEL["vertebral_cortex"], LABEL["vertebral_marrow"], LABEL["disc_annulus"],
    LABEL["disc_nucleus"], LABEL["csf"], LABEL["cord"], LABEL["epidural_fat"], LABEL["longitudinal_ligament"],
    LABEL["ligamentum_flavum"], LABEL["interspinous_ligament"], LABEL["posterior_elements"],
    LABEL["skull_base"], LABEL["brain"], LABEL["posterior_elements"], LABEL["skull_base"],
    LABEL["intermuscular_fat"],
], dtype=np.uint8)


def class_composition(ff_marrow: float) -> list[dict[str, float]]:
    """Compartment fractions of every render class (index = class id) for a subject's marrow fat fraction."""
    def marrow(ff: float) -> dict[str, float]:
        ff = float(np.clip(ff, 0.0, 0.95))
        return {"fat": ff, "marrow_water": 1.0 - ff}

    comp: list[dict[str, float]] = [{} for _ in range(N_CLASSES)]
    comp[AIR] = {"air": 1.0}
    comp[SKIN] = {"skin": 1.0}
    comp[SUBCUT_FAT] = {"fat": 0.97, "skin": 0.03}  # thin fibrous septa
    comp[MUSCLE] = {"muscle": 0.96, "fat": 0.04}  # physiological intramuscular fat
    comp[PREVERT] = {"prevertebral": 1.0}
    comp[AIRWAY] = {"air": 1.0}
    comp[CORTEX] = {"cortical_bone": 1.0}
    comp[MARROW] = marrow(ff_marrow)  # replaced voxel by voxel inside each vertebra
    comp[ANNULUS] = {"annulus": 1.0}
    comp[NUCLEUS] = {"nucleus": 1.0}
    comp[CSF] = {"csf": 1.0}
    comp[CORD] = {"cord": 1.0}
    comp[EPIFAT] = {"fat": 0.85, "blood": 0.15}  # epidural fat with its venous plexus
    comp[LONGLIG] = {"ligament": 1.0}
    comp[FLAVUM] = {"ligament": 0.8, "muscle": 0.2}  # elastic, a little brighter than the other ligaments
    # Thin ligaments with fat pads between them, 65 % fat: on two real sagittal T2w the midline interspinous spaces
    # are 0.53 / 0.72 of the posterior fat (benchmarks/interspinous_space.py); 65 % draws 0.52 / 0.48 (classic /
    # faithful); the 25 % drawn before gave 0.24, as dark as muscle (0.25).
    comp[ISL] = {"ligament": 0.35, "fat": 0.65}
    comp[POST_CORTEX] = {"cortical_bone": 1.0}
    comp[SKULL_CORTEX] = {"cortical_bone": 1.0}
    comp[BRAIN] = {"brain": 1.0}
    comp[POST_MARROW] = marrow(ff_marrow + 0.12)  # posterior elements: more yellow marrow
    comp[SKULL_MARROW] = marrow(ff_marrow + 0.25)  # clivus / diploe: fatty in adults
    comp[IM_FAT] = {"fat": 1.0}
    return comp
