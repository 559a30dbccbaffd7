"""The van Middendorp rule against hand-computed cases (Lancet 2011; 377: 1004-10)."""

import numpy as np
import pytest

from synthseq.downstream.dataset import Cohort
from synthseq.downstream.rules import (
    RULE_COLUMNS,
    van_middendorp_from_cohort,
    van_middendorp_probability,
    van_middendorp_score,
)
from synthseq.errors import InputError

# (age, L3 motor L, R, S1 motor L, R, L3 LT L, R, S1 LT L, R) -> score worked out by hand
CASES = [
    ((30, 5, 5, 5, 5, 2, 2, 2, 2), 40),  # intact, young: maximum
    ((70, 0, 0, 0, 0, 0, 0, 0, 0), -10),  # complete, old: minimum
    ((70, 5, 5, 5, 5, 2, 2, 2, 2), 30),  # -10 + 10 + 10 + 10 + 10
    ((30, 3, 4, 0, 2, 1, 0, 0, 0), 17),  # 2*4 + 2*2 + 5*1 + 5*0 (better side of each item)
    ((64, 1, 0, 0, 0, 0, 0, 0, 1), 7),  # 2*1 + 5*1, age 64 is below the cut-off
    ((65, 1, 0, 0, 0, 0, 0, 0, 1), -3),  # the same at 65: -10
    ((45, 0, 0, 2, 2, 1, 1, 1, 2), 4 + 5 + 10),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_score_hand_cases(args, expected):
    assert van_middendorp_score(*args) == expected


def test_vectorized_matches_scalar_and_probability_is_monotone():
    args = np.array([c[0] for c in CASES], dtype=float).T
    scores = van_middendorp_score(*args)
    assert scores.tolist() == [c[1] for c in CASES]
    p = van_middendorp_probability(np.arange(-10, 41))
    assert np.all(np.diff(p) > 0) and 0 < p[0] < 0.05 and p[-1] > 0.99
    # logistic map 1 / (1 + exp(-(0.267 s - 3.273))) at s = 0 by hand
    assert van_middendorp_probability(0) == pytest.approx(1 / (1 + np.exp(3.273)))


def test_invalid_grades_rejected():
    with pytest.raises(ValueError, match="motor"):
        van_middendorp_score(30, 6, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="light-touch"):
        van_middendorp_score(30, 0, 0, 0, 0, 3, 0, 0, 0)


def test_from_cohort_and_missing_column(tmp_path):
    cols = {name: [str(v)] for name, v in zip(RULE_COLUMNS, CASES[3][0])}
    cohort = Cohort(tmp_path / "cohort.csv", ["sub-0001"], cols)
    assert van_middendorp_from_cohort(cohort).tolist() == [17]
    del cols["s1_lt_r"]
    with pytest.raises(InputError, match=r"cohort.csv: missing cohort column\(s\) s1_lt_r$"):
        van_middendorp_from_cohort(Cohort(tmp_path / "cohort.csv", ["sub-0001"], cols))
