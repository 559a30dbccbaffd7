"""AUC, bootstrap CIs, sensitivity/specificity, Brier and calibration bins."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from synthseq.downstream.stats import (
    auc,
    binary_report,
    bootstrap_ci,
    brier,
    calibration_bins,
    json_safe,
    sensitivity_specificity,
)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60) + 0.3 * y, 1)  # rounded: many ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert math.isnan(auc(np.ones(5), np.arange(5)))


def test_bootstrap_ci_brackets_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p = rng.random(80) + 0.5 * y
    lo, hi = bootstrap_ci(auc, y, p, n_boot=300, seed=4)
    assert lo < auc(y, p) < hi and 0 <= lo and hi <= 1
    assert (lo, hi) == bootstrap_ci(auc, y, p, n_boot=300, seed=4)


def test_threshold_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    assert sensitivity_specificity(y, p, 0.5) == (pytest.approx(2 / 3), pytest.approx(1 / 2))
    assert brier(y, p) == pytest.approx(np.mean([0.01, 0.16, 0.64, 0.49, 0.01]))
    bins = calibration_bins(y, p, n_bins=2)
    assert sum(bins["count"]) == 5
    rep = binary_report(y, p, 0.5, n_boot=50)
    assert rep["n"] == 5 and rep["n_positive"] == 3 and rep["auc"] == pytest.approx(roc_auc_score(y, p))


def test_json_safe_replaces_nan():
    assert json_safe({"a": [1.0, math.nan], "b": math.nan}) == {"a": [1.0, None], "b": None}
