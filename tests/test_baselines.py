"""synthseq.baselines: histogram matching and linear fits learn the intended maps and keep the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from synthseq.baselines import HistogramMatching, LinearFit, pair_stats
from synthseq.data.normalize import normalize
from synthseq.io import Volume

AFFINE = np.array([[0, 0, 1.0, -3], [-0.8, 0, 0, 10], [0, 1.2, 0, 4], [0, 0, 0, 1]])


def _t2w(seed: int) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = np.zeros((10, 12, 8), np.float32)
    mask = np.zeros(data.shape, bool)
    mask[1:9, 2:10, 1:7] = True
    data[mask] = rng.uniform(100, 900, int(mask.sum())) * rng.uniform(0.8, 1.25)  # subject-specific scale
    return Volume(data, AFFINE), mask


def _norm(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return normalize(x, "percentile", (0.5, 99.5), mask=mask)[0]


def test_histogram_matching_learns_a_monotone_map_from_training_pairs():
    # "STIR" is a monotone but nonlinear function of T2w (squared), in another arbitrary scale
    train = []
    for seed in range(3):
        t2w, mask = _t2w(seed)
        train.append((t2w, 5.0 * t2w.data**2 + 7.0, mask))
    hm = HistogramMatching.fit(train)
    test, mask = _t2w(10)
    out = hm.apply(test, mask)
    assert out.shape == test.shape and np.array_equal(out.affine, test.affine) and out.data.dtype == np.float32
    expected = _norm(test.data**2, mask)
    got = _norm(out.data, mask)
    assert np.abs(got - expected)[mask].mean() < 0.05
    # a linear map cannot express the square: its error is clearly larger
    linear = _norm(LinearFit.fit(train).apply(test, mask).data, mask)
    assert np.abs(linear - expected)[mask].mean() > 2 * np.abs(got - expected)[mask].mean()


def test_linear_fits_recover_an_inverted_relation_and_are_labelled():
    train = []
    for seed in range(3):
        t2w, mask = _t2w(seed)
        train.append((t2w, np.where(mask, 2000.0 - 2 * t2w.data, 0.0), mask))
    pooled = LinearFit.fit(train)
    assert pooled.variant == "pooled" and pooled.a == pytest.approx(-1.0, abs=0.02)
    test, mask = _t2w(11)
    oracle = LinearFit.fit_oracle(test, np.where(mask, 2000.0 - 2 * test.data, 0.0), mask)
    assert oracle.variant == "oracle" and oracle.a == pytest.approx(-1.0, abs=0.02)
    out = pooled.apply(test, mask)
    # the output is in the T2w's scale: -1/+1 of the map land on the T2w's own low/high percentiles
    _, p = normalize(test.data, "percentile", (0.5, 99.5), mask=mask)
    np.testing.assert_allclose(out.data, (pooled.a * _norm(test.data, mask) + pooled.b) * p.scale + p.center,
                               rtol=1e-4, atol=1e-2)


def test_pair_stats_rejects_pairs_on_different_grids():
    t2w, mask = _t2w(0)
    with pytest.raises(ValueError, match="one grid"):
        pair_stats(t2w, np.zeros((3, 3, 3)), mask)
