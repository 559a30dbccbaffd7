"""Preprocessor: the one normalization rule (fit / apply / invert / serialize) and its intensity body mask."""

import numpy as np
import pytest

from synthseq.data.preprocess import Preprocessor, body_mask_from_intensity
from synthseq.errors import ConfigError


def _volume(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.zeros((24, 20, 16), np.float32)
    vol[4:20, 3:17, 2:14] = rng.uniform(100, 900, (16, 14, 12))  # "body" in air
    return vol


def test_percentiles_inside_the_body_map_to_minus_one_and_one_and_invert_exactly():
    vol = _volume()
    pre = Preprocessor(percentiles=(1.0, 99.0))
    y, params = pre(vol)
    body = pre.body_mask(vol)
    block = np.zeros_like(body)
    block[4:20, 3:17, 2:14] = True
    assert not body[~block].any() and body[block].mean() > 0.7  # air is not body (opening rounds the corners)
    lo, hi = np.percentile(vol[body], [1.0, 99.0])
    assert (params.low, params.high) == pytest.approx((lo, hi))
    np.testing.assert_allclose(np.percentile(y[body], [1.0, 99.0]), [-1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(pre.invert(y, params), vol, atol=1e-3)


def test_clip_only_for_percentile_and_mask_none_uses_every_voxel():
    vol = _volume(1)
    y, _ = Preprocessor()(vol, clip=True)
    assert y.min() >= -1 and y.max() <= 1
    z, zp = Preprocessor(method="zscore", mask="none")(vol, clip=True)
    assert z.max() > 1  # z-scores are never clipped
    assert zp.center == pytest.approx(float(vol.mean()), rel=1e-5)


def test_serialization_round_trip_and_legacy_entry():
    pre = Preprocessor(method="zscore", percentiles=(2, 98), mask="none")
    assert Preprocessor.from_dict(pre.to_dict()) == pre
    # version 0.1.0 checkpoints stored {"method", "percentiles"} (and synthesis called the mask "foreground")
    legacy = Preprocessor.from_dict({"method": "percentile", "percentiles": [0.5, 99.5], "mask": "foreground"})
    assert legacy == Preprocessor()


@pytest.mark.parametrize("kw", [{"method": "minmax"}, {"percentiles": (99, 1)}, {"percentiles": (0, 101)},
                                {"mask": "labels"}])
def test_bad_settings_are_config_errors_naming_the_key(kw):
    with pytest.raises(ConfigError, match=r"^(data\.norm|normalization mask)"):
        Preprocessor(**kw)


def test_body_mask_does_not_depend_on_storage_order():
    vol = _volume(2)
    mask = body_mask_from_intensity(vol)
    np.testing.assert_array_equal(body_mask_from_intensity(vol.transpose(2, 0, 1)[::-1]), mask.transpose(2, 0, 1)[::-1])
