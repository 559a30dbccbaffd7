"""Downstream models: injury classifiers, image features, outcome predictors (+ SHAP), utility benchmark.

* :mod:`~synthseq.downstream.classifier` - multi-label injury classifiers on sagittal stacks (MONAI), Grad-CAM
* :mod:`~synthseq.downstream.features`   - cord lesion length, cord / marrow edema volume, PLC signal
* :mod:`~synthseq.downstream.outcome`    - ambulation / AIS-improvement models, CV metrics, SHAP
* :mod:`~synthseq.downstream.rules`      - the van Middendorp clinical prediction rule (baseline)
* :mod:`~synthseq.downstream.utility`    - T2w vs T2w + pseudo-STIR vs T2w + STIR on held-out subjects
* :mod:`~synthseq.downstream.stats`, :mod:`~synthseq.downstream.plots`, :mod:`~synthseq.downstream.dataset`,
  :mod:`~synthseq.downstream.sources` - shared statistics, figures, cohort I/O and pseudo-STIR provision
"""

from .classifier import ClassifierConfig, InjuryClassifier, predict_classifier, train_classifier
from .features import FEATURE_NAMES, extract_features, lesion_truth, validate_features
from .outcome import OutcomeConfig, OutcomeModel, explain_outcome, fit_outcome, predict_outcome
from .rules import van_middendorp_probability, van_middendorp_score
from .utility import UtilityConfig, run_utility

__all__ = [
    "FEATURE_NAMES", "ClassifierConfig", "InjuryClassifier", "OutcomeConfig", "OutcomeModel", "UtilityConfig",
    "explain_outcome", "extract_features", "fit_outcome", "lesion_truth", "predict_classifier",
    "predict_outcome", "run_utility", "train_classifier", "validate_features", "van_middendorp_probability",
    "van_middendorp_score",
]
