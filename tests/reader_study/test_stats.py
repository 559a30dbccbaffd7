"""Statistics against published worked examples and hand-checkable inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthseq.reader_study import stats
from synthseq.reader_study.analysis import POOLED, analyze_readings


def test_fleiss_kappa_published_example():
    """Fleiss (1971), as worked in Wikipedia's "Fleiss' kappa" article: 10 subjects, 14 raters, 5 categories,
    kappa = 0.210 (P-bar = 0.378, P-bar_e = 0.213)."""
    counts = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    # Back to one row per subject, one column per rater, as the study stores ratings.
    ratings = np.array([np.repeat(np.arange(1, 6), row) for row in counts])
    assert ratings.shape == (10, 14)
    assert round(stats.fleiss_kappa(ratings), 3) == 0.210


def test_cohen_kappa_published_example():
    """Wikipedia "Cohen's kappa", worked example: 50 proposals, both yes 20, A yes/B no 5, A no/B yes 10,
    both no 15 -> p_o = 0.7, p_e = 0.5, kappa = 0.4."""
    a = np.array(["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15)
    b = np.array(["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15)
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4)
    pairs = stats.pairwise_cohen({"B": b, "A": a, "C": a})
    assert [(p["a"], p["b"]) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert pairs[1]["kappa"] == pytest.approx(1.0)


def test_wilcoxon_published_example():
    """Wikipedia "Wilcoxon signed-rank test", example: 10 pairs, one zero difference dropped (N_r = 9),
    W = sum of signed ranks = 9 (W+ = 27, W- = 18), not significant at 5% (critical value 35 for |W|)."""
    after = np.array([125, 115, 130, 140, 140, 115, 140, 125, 140, 135])
    before = np.array([110, 122, 125, 120, 140, 124, 123, 137, 135, 145])
    out = stats.paired_wilcoxon(after, before)
    assert out["n_nonzero"] == 9
    assert out["w_plus"] - out["w_minus"] == 9
    assert (out["w_plus"], out["w_minus"]) == (27, 18)
    assert out["statistic"] == 18  # scipy reports min(W+, W-)
    assert out["p_value"] > 0.05
    assert stats.paired_wilcoxon([3, 3], [3, 3])["p_value"] is None  # all ties: undefined, not a crash


def test_binomial_and_exact_ci_by_hand():
    """7 of 10 correct: two-sided exact p = 2 * P(X >= 7) = 2 * 176/1024; Clopper-Pearson 95% CI 0.348-0.933."""
    out = stats.turing_test(np.array([1] * 7 + [0] * 3, bool))
    assert (out["k"], out["n"], out["estimate"]) == (7, 10, 0.7)
    assert out["p_value"] == pytest.approx(2 * 176 / 1024)
    assert (round(out["ci_low"], 3), round(out["ci_high"], 3)) == (0.348, 0.933)
    empty = stats.turing_test(np.array([], bool))
    assert empty["estimate"] is None and empty["p_value"] is None


def test_wilson_interval_and_sens_spec_by_hand():
    # Wilson upper bound for 0/n is z^2 / (n + z^2).
    z2 = 1.959963984540054**2
    p = stats.proportion(0, 10)
    assert p["ci_low"] == pytest.approx(0.0, abs=1e-12)
    assert p["ci_high"] == pytest.approx(z2 / (10 + z2))
    truth = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 0, 0, 0, 1], bool)
    ss = stats.sensitivity_specificity(truth, pred)
    assert (ss["tp"], ss["fn"], ss["tn"], ss["fp"]) == (2, 1, 3, 1)
    assert ss["sensitivity"]["estimate"] == pytest.approx(2 / 3)
    assert ss["specificity"]["estimate"] == pytest.approx(3 / 4)
    assert stats.describe_scores([1, 2, 3, 4, 5]) == {"n": 5, "median": 3.0, "q1": 2.0, "q3": 4.0}


def _reading(reader, subject, source, call, quality, conf=3, edema=0, truth=0):
    return {"reader": reader, "case_id": f"{subject}-{source}", "subject": subject, "source": source, "call": call,
            "confidence": conf, "quality": quality, "marrow_edema": edema, "plc_injury": 0, "cord_edema": 0,
            "truth_marrow_edema": truth, "truth_plc_injury": 0, "truth_cord_edema": 0}


def test_analysis_on_hand_checkable_readings():
    """Reader A is always right, reader B always says "real"; A rates real 5 / synthetic 3, B 4 / 4."""
    subjects = [f"s{i}" for i in range(6)]
    readings = []
    for i, s in enumerate(subjects):
        truth = int(i < 3)  # edema in the first three subjects
        readings += [_reading("A", s, "real", "real", 5, edema=truth, truth=truth),
                     _reading("A", s, "synthetic", "synthetic", 3, edema=0, truth=truth),
                     _reading("B", s, "real", "real", 4, edema=truth, truth=truth),
                     _reading("B", s, "synthetic", "real", 4, edema=truth, truth=truth)]
    res = analyze_readings(readings, ["A", "B"], has_truth=True)
    a, b, pooled = (res["turing"][g] for g in ("A", "B", POOLED))
    assert (a["k"], a["n"]) == (12, 12) and a["p_value"] == pytest.approx(2 / 2**12)
    assert (b["k"], b["n"], b["p_value"]) == (6, 12, 1.0)
    assert b["spotting_synthetic"]["sensitivity"]["estimate"] == 0.0
    assert b["spotting_synthetic"]["specificity"]["estimate"] == 1.0
    assert (pooled["k"], pooled["n"]) == (18, 24)
    # A's labels are half real, half synthetic; B's all real: p_o = 0.5 = p_e -> kappa 0.
    assert res["agreement"]["call"]["cohen"] == [{"a": "A", "b": "B", "n": 12, "kappa": 0.0}]
    assert res["agreement"]["call"]["n_cases_all_readers"] == 12
    lk = res["likert_quality"]
    assert (lk["A"]["real"]["median"], lk["A"]["synthetic"]["median"]) == (5.0, 3.0)
    assert lk["A"]["wilcoxon_real_vs_synthetic"]["w_plus"] == sum(range(1, 7))  # 6 tied positive differences
    assert lk["B"]["wilcoxon_real_vs_synthetic"]["p_value"] is None  # every difference is zero
    assert lk[POOLED]["n_subjects_paired"] == 6
    # Findings: A misses edema on synthetic images (sensitivity 0), finds it on real ones (sensitivity 1).
    fa = res["findings"]["A"]["marrow_edema"]
    assert fa["real"]["sensitivity"]["estimate"] == 1.0 and fa["synthetic"]["sensitivity"]["estimate"] == 0.0
    assert fa["synthetic"]["specificity"]["estimate"] == 1.0
    assert res["findings"][POOLED]["marrow_edema"]["synthetic"]["sensitivity"]["k"] == 3
    assert math.isclose(res["findings"][POOLED]["marrow_edema"]["synthetic"]["sensitivity"]["estimate"], 0.5)
