"""The van Middendorp clinical prediction rule for independent walking after traumatic spinal cord injury.

Reference: van Middendorp JJ, Hosman AJF, Donders ART, et al. A clinical prediction rule for ambulation
outcomes after traumatic spinal cord injury: a longitudinal cohort study. Lancet 2011; 377: 1004-10.
doi:10.1016/S0140-6736(10)62276-3.

Score (range -10 .. 40), from the early (<= 15 days) ISNCSCI examination, using the BETTER of the left and
right side for each neurological item::

    score = -10 * [age >= 65]
            + 2 * max(L3 motor L, R)     (quadriceps, MRC 0-5)
            + 2 * max(S1 motor L, R)     (gastrocsoleus, MRC 0-5)
            + 5 * max(L3 light touch L, R)  (0 absent, 1 impaired, 2 normal)
            + 5 * max(S1 light touch L, R)

Higher scores mean a higher chance of walking independently. The probability mapping
``p = 1 / (1 + exp(-(0.267 * score - 3.273)))`` is the logistic form reported for the rule by secondary
sources (medicalalgorithms.com, "Traumatic spinal cord injury"); only the score's ranking matters for AUC, so
the baseline's discrimination does not depend on these two constants.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: Cohort columns the rule needs.
RULE_COLUMNS = ("age", "l3_motor_l", "l3_motor_r", "s1_motor_l", "s1_motor_r", "l3_lt_l", "l3_lt_r", "s1_lt_l",
                "s1_lt_r")
_SLOPE, _INTERCEPT = 0.267, -3.273


def van_middendorp_score(age, l3_motor_l, l3_motor_r, s1_motor_l, s1_motor_r, l3_lt_l, l3_lt_r, s1_lt_l, s1_lt_r):
    """The rule's score (scalars or arrays of shape ``(N,)``), an integer in [-10, 40] per patient.

    Motor grades must lie in 0..5 and light-touch grades in 0..2 (ValueError otherwise).
    """
    motor = [np.asarray(v, dtype=np.float64) for v in (l3_motor_l, l3_motor_r, s1_motor_l, s1_motor_r)]
    touch = [np.asarray(v, dtype=np.float64) for v in (l3_lt_l, l3_lt_r, s1_lt_l, s1_lt_r)]
    if any(np.any((m < 0) | (m > 5)) for m in motor):
        raise ValueError("motor grades must lie in 0..5")
    if any(np.any((t < 0) | (t > 2)) for t in touch):
        raise ValueError("light-touch grades must lie in 0..2")
    age = np.asarray(age, dtype=np.float64)
    score = (-10.0 * (age >= 65) + 2 * np.maximum(motor[0], motor[1]) + 2 * np.maximum(motor[2], motor[3])
             + 5 * np.maximum(touch[0], touch[1]) + 5 * np.maximum(touch[2], touch[3]))
    return score.astype(np.int64) if score.ndim else int(score)


def van_middendorp_probability(score):
    """Probability of independent walking from the rule's score (logistic map, see the module docstring)."""
    return 1.0 / (1.0 + np.exp(-(_SLOPE * np.asarray(score, dtype=np.float64) + _INTERCEPT)))


def van_middendorp_from_cohort(cohort) -> np.ndarray:
    """Scores ``(N,)`` for every subject of a :class:`~synthseq.downstream.dataset.Cohort`."""
    cohort.require(RULE_COLUMNS)
    cols = [cohort.numeric(c) for c in RULE_COLUMNS]
    if any(np.isnan(c).any() for c in cols):
        raise InputError(f"{cohort.path}: empty cells in the van Middendorp columns ({', '.join(RULE_COLUMNS)})")
    try:
        return np.asarray(van_middendorp_score(*cols))
    except ValueError as exc:
        raise InputError(f"{cohort.path}: {exc}") from None
