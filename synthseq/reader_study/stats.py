"""Reader-study statistics, thin wrappers over scipy / statsmodels / scikit-learn.

Every function takes plain arrays and returns a JSON-ready dict (floats, ints, None for undefined).
Proportions carry a 95% confidence interval: Clopper-Pearson (exact) for the Turing-test accuracy that is
tested with the exact binomial test, Wilson for sensitivities and specificities (better coverage at
small n than the normal approximation, and defined at 0% and 100%).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import stats as sps


def _f(x) -> float | None:
    """JSON-safe float: NaN/inf -> None."""
    x = float(x)
    return x if math.isfinite(x) else None


def proportion(successes: int, n: int, method: str = "wilson", alpha: float = 0.05) -> dict:
    """``successes / n`` with a ``1 - alpha`` CI (statsmodels ``proportion_confint``; ``beta`` = Clopper-Pearson)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return {"k": 0, "n": 0, "estimate": None, "ci_low": None, "ci_high": None, "ci_method": method}
    low, high = proportion_confint(successes, n, alpha=alpha, method=method)
    return {"k": int(successes), "n": int(n), "estimate": successes / n, "ci_low": _f(low), "ci_high": _f(high),
            "ci_method": "clopper-pearson" if method == "beta" else method}


def turing_test(correct: np.ndarray) -> dict:
    """Accuracy of real-vs-synthetic calls, exact two-sided binomial test against chance (50%).

    Args:
        correct: ``(N,)`` booleans, one per reading (True = the call matched the truth).

    Returns:
        ``proportion`` fields (Clopper-Pearson CI) plus ``p_value`` (None when N = 0).
    """
    correct = np.asarray(correct, dtype=bool)
    k, n = int(correct.sum()), int(correct.size)
    out = proportion(k, n, method="beta")
    out["p_value"] = _f(sps.binomtest(k, n, 0.5, alternative="two-sided").pvalue) if n else None
    return out


def sensitivity_specificity(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Sensitivity (positives found) and specificity (negatives cleared), each with a Wilson 95% CI.

    Args:
        truth, predicted: ``(N,)`` booleans (True = positive).
    """
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    tp = int((truth & predicted).sum())
    fn = int((truth & ~predicted).sum())
    tn = int((~truth & ~predicted).sum())
    fp = int((~truth & predicted).sum())
    return {"tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp)}


def fleiss_kappa(ratings: np.ndarray) -> float | None:
    """Fleiss' kappa of ``(N_items, N_raters)`` categorical ratings (statsmodels); None if undefined."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    ratings = np.asarray(ratings)
    if ratings.ndim != 2 or ratings.shape[0] < 1 or ratings.shape[1] < 2:
        return None
    table, _ = aggregate_raters(ratings)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one category only: kappa is undefined (None), not an error
        return _f(_fleiss(table, method="fleiss"))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (scikit-learn); None if undefined."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single label in both: kappa is undefined (None), not an error
        return _f(cohen_kappa_score(a, b))


def pairwise_cohen(ratings: dict[str, np.ndarray]) -> list[dict]:
    """Cohen's kappa for every pair of raters; ``ratings`` maps rater -> ``(N_items,)`` labels (same items)."""
    return [{"a": a, "b": b, "kappa": cohen_kappa(ratings[a], ratings[b])}
            for a, b in itertools.combinations(sorted(ratings), 2)]


def describe_scores(x: np.ndarray) -> dict:
    """n, median and interquartile range (25th, 75th percentile) of ordinal scores."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None}
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {"n": int(x.size), "median": float(med), "q1": float(q1), "q3": float(q3)}


def paired_wilcoxon(x: np.ndarray, y: np.ndarray) -> dict:
    """Wilcoxon signed-rank test of paired ``x`` vs ``y`` (two-sided, zero differences dropped: Wilcoxon 1945).

    Returns the rank sums of positive and negative differences ``w_plus``/``w_minus`` (of ``x - y``), scipy's
    statistic (``min(w_plus, w_minus)``), the p-value (exact when scipy can, normal approximation with
    tie correction otherwise), and ``n_nonzero``. ``p_value`` is None when every difference is zero.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = x - y
    nz = d[d != 0]
    out = {"n_pairs": int(d.size), "n_nonzero": int(nz.size), "w_plus": None, "w_minus": None,
           "statistic": None, "p_value": None}
    if nz.size == 0:
        return out
    ranks = sps.rankdata(np.abs(nz))
    out["w_plus"], out["w_minus"] = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    res = sps.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    out["statistic"], out["p_value"] = _f(res.statistic), _f(res.pvalue)
    return out
