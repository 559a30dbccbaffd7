"""Cohort: columns, value ranges, agreement with the masks, prevalence, imaging information beyond clinic."""

import csv
import json

import numpy as np
import pytest

from synthseq.phantom import measure_imaging
from synthseq.phantom.cohort import (
    COEFFICIENTS,
    COLUMNS,
    IMAGING_FLAGS,
    outcome_probabilities,
    simulate_cohort,
)

DOC_COLUMNS = ("subject, age, sex, neuro_level, ais_admission, uems, lems, l3_motor_l, l3_motor_r, s1_motor_l, "
               "s1_motor_r, l3_lt_l, l3_lt_r, s1_lt_l, s1_lt_r, days_to_rehab, cord_lesion_length_mm, "
               "cord_hemorrhage, fracture, plc_injury, cord_edema, prevertebral_edema, disc_injury, "
               "canal_compression, ambulation_discharge, ais_improvement").split(", ")


@pytest.fixture(scope="module")
def sim():
    return simulate_cohort(2000, seed=1)


def test_csv_columns_and_model(tiny_dataset):
    with open(tiny_dataset / "cohort.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == DOC_COLUMNS == list(COLUMNS)
    assert [r["subject"] for r in rows] == ["sub-0001", "sub-0002", "sub-0003"]
    meta = json.loads((tiny_dataset / "dataset.json").read_text())
    for target, coef in COEFFICIENTS.items():
        stored = meta["cohort_model"][target]
        assert {"intercept": stored["intercept"], **stored["coefficients"]} == coef


def _check_row(r):
    assert 18 <= r["age"] <= 90 and r["sex"] in ("M", "F")
    assert r["neuro_level"] in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "T1")
    assert r["ais_admission"] in "ABCDE"
    assert 0 <= r["uems"] <= 50 and 0 <= r["lems"] <= 50
    for k in ("l3_motor_l", "l3_motor_r", "s1_motor_l", "s1_motor_r"):
        assert 0 <= r[k] <= 5
    for k in ("l3_lt_l", "l3_lt_r", "s1_lt_l", "s1_lt_r"):
        assert 0 <= r[k] <= 2
    assert r["days_to_rehab"] >= 1
    for k in (*IMAGING_FLAGS, "ambulation_discharge", "ais_improvement"):
        assert r[k] in (0, 1)
    assert (r["cord_lesion_length_mm"] > 0) == bool(r["cord_edema"] or r["cord_hemorrhage"])
    # ISNCSCI consistency
    if r["ais_admission"] in "AB":
        assert r["lems"] == 0
    if r["ais_admission"] == "A":
        assert r["l3_lt_l"] + r["l3_lt_r"] + r["s1_lt_l"] + r["s1_lt_r"] == 0
    if r["ais_admission"] == "E":
        assert r["uems"] == r["lems"] == 50 and r["ais_improvement"] == 0


def test_value_ranges(sim, tiny_subjects):
    for r in [*sim, *(rec.cohort for rec in tiny_subjects)]:
        _check_row(r)


def test_cohort_agrees_with_the_masks(tiny_subjects):
    for rec in tiny_subjects:
        les = rec.lesions.data
        row = rec.cohort
        for code, flag in ((1, "fracture"), (2, "plc_injury"), (3, "cord_edema"), (4, "cord_hemorrhage"),
                           (5, "prevertebral_edema"), (6, "disc_injury"), (7, "canal_compression")):
            assert row[flag] == int((les == code).any()), (rec.subject_id, flag)
        cord = np.isin(les, (3, 4))
        if cord.any():
            ks = np.flatnonzero(cord.any(axis=(0, 2)))  # storage axis 1 runs S -> I
            assert row["cord_lesion_length_mm"] == pytest.approx((ks[-1] - ks[0] + 1) * rec.lesions.spacing[1])
            planned = rec.injuries["cord"]["length_mm"]
            assert abs(row["cord_lesion_length_mm"] - planned) < 0.35 * planned + 2 * rec.lesions.spacing[1]
        assert measure_imaging(les, rec.lesions.affine)["cord_lesion_length_mm"] == row["cord_lesion_length_mm"]


def test_outcome_prevalence_sensible(sim):
    for k in ("ambulation_discharge", "ais_improvement"):
        p = np.mean([r[k] for r in sim])
        assert 0.1 < p < 0.9, (k, p)
    for flag in ("fracture", "cord_edema", "cord_hemorrhage", "plc_injury"):
        assert 0.05 < np.mean([r[flag] for r in sim]) < 0.95


def test_outcomes_follow_the_stored_model(sim):
    for k in ("ambulation_discharge", "ais_improvement"):
        p = np.array([outcome_probabilities(r, r)[k] for r in sim])
        y = np.array([r[k] for r in sim])
        assert abs(y.mean() - p.mean()) < 0.03  # calibrated in the large


def test_imaging_carries_outcome_information_beyond_clinical(sim):
    sm = pytest.importorskip("statsmodels.api")
    from scipy.stats import chi2

    clinical = ["age", "uems", "lems", "l3_motor_l", "l3_motor_r", "s1_motor_l", "s1_motor_r", "l3_lt_l", "l3_lt_r",
                "s1_lt_l", "s1_lt_r", "days_to_rehab"]
    imaging = ["cord_lesion_length_mm", "cord_hemorrhage", "fracture", "plc_injury"]

    def design(cols):
        x = [[float(r[c]) for c in cols] + [float(r["age"] >= 65)] + [float(r["ais_admission"] == g) for g in "BCD"]
             for r in sim]
        return sm.add_constant(np.array(x))

    for k in ("ambulation_discharge", "ais_improvement"):
        y = np.array([r[k] for r in sim])
        base = sm.Logit(y, design(clinical)).fit(disp=0, method="bfgs", maxiter=500)
        full = sm.Logit(y, design(clinical + imaging)).fit(disp=0, method="bfgs", maxiter=500)
        lr = 2 * (full.llf - base.llf)
        assert chi2.sf(lr, df=len(imaging)) < 1e-3, (k, lr)
