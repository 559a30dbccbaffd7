"""Physics-based cervical spine injury phantom: paired T2w / STIR volumes, tissue and lesion labels, and a
clinical cohort with known outcome model (the project's ground truth; no public paired data exists).

>>> from synthseq.phantom import generate_subject
>>> rec = generate_subject("sub-0001", rng_seed=1, preset="tiny")
>>> rec.t2w.shape == rec.stir.shape == rec.labels.shape
True

Modules: ``codes`` (label / lesion tables), ``tissues`` (T1/T2/PD at 1.5 and 3 T), ``anatomy`` (3D shapes in
a lordotic spine frame), ``injuries`` (injuries and confounders), ``sequences`` (signal equations and the
acquisition chain), ``cohort`` (clinical generative model), ``presets`` (grids), ``generate`` (writers).
"""

from .codes import LESIONS, TISSUES, body_mask
from .generate import PhantomSubject, generate_dataset, generate_subject, measure_imaging, subject_seed
from .presets import PRESETS, Preset, get_preset

__all__ = [
    "LESIONS", "PRESETS", "PhantomSubject", "Preset", "TISSUES", "body_mask", "generate_dataset",
    "generate_subject", "get_preset", "measure_imaging", "subject_seed",
]
