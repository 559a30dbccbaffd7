"""Lesion-aware sampling (data.lesion_slice_weight): weights, the epoch sampler, crops that keep the lesion, both paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthseq.config import load_config
from synthseq.data.datasets import PairedSliceDataset, WeightedEpochSampler, crop_window_around
from synthseq.data.gpu import GPUSliceBank
from synthseq.data.layout import load_subjects
from synthseq.data.transforms import AugmentSettings
from synthseq.errors import ConfigError
from synthseq.phantom import generate_dataset

KW = dict(image_size=32, min_foreground=0.05, lesion_key="lesions")


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("ph") / "ds", subjects=3, seed=3, preset="tiny", progress=False)
    return load_subjects(root)


def _lesion_slices(ds) -> np.ndarray:
    return np.array([ds.stacks[si].lesion[sj].any() for si, sj in ds.index])


def test_weights_mark_the_lesion_slices(subjects):
    uniform = PairedSliceDataset(subjects, **KW)
    assert uniform.sample_weights is None
    ds = PairedSliceDataset(subjects, lesion_slice_weight=6.0, **KW)
    has = _lesion_slices(ds)
    assert 0 < has.sum() < len(has)  # the check below can fail
    np.testing.assert_array_equal(ds.sample_weights, np.where(has, 6.0, 1.0))
    with pytest.raises(ValueError, match="lesion maps"):
        PairedSliceDataset(subjects, image_size=32, lesion_slice_weight=2.0)


def test_epoch_sampler_draws_in_proportion_and_replays():
    w = np.array([9.0] * 10 + [1.0] * 90)  # expected share of the first ten: 90 / 180 = 0.5
    s = WeightedEpochSampler(w, rank=0, world_size=1, seed=1)
    s.total = 20000  # a long epoch for a tight estimate
    draws = np.array(list(s))
    assert abs((draws < 10).mean() - 0.5) < 0.02
    s.set_epoch(1)
    other = np.array(list(s))
    s.set_epoch(0)
    np.testing.assert_array_equal(np.array(list(s)), draws)
    assert not np.array_equal(other, draws)
    shard = WeightedEpochSampler(w, rank=1, world_size=3, seed=1)
    assert len(shard) == 33 and len(list(shard)) == 33


def test_crop_window_around_keeps_the_point():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left = crop_window_around(64, 50, 32, (10, 45), rng)
        # padded coordinates: width 50 -> no padding (50 >= 32); the point lies >= 4 px inside the crop
        assert top + 4 <= 10 <= top + 27 and left + 4 <= 45 <= left + 27 or left == 50 - 32


def test_gpu_bank_draws_lesion_slices_more_and_crops_keep_them(subjects):
    def lesion_share(weight: float) -> tuple[float, float]:
        ds = PairedSliceDataset(subjects, lesion_slice_weight=weight, augment=True, **KW)
        bank = GPUSliceBank.from_dataset(ds, "cpu")
        g = torch.Generator().manual_seed(0)
        les = torch.cat([bank.sample(64, augment=True, generator=g)["lesion"] for _ in range(8)])
        return float((les.flatten(1).amax(1) > 0).float().mean()), float(_lesion_slices(ds).mean())

    base, frac = lesion_share(1.0)
    heavy, _ = lesion_share(1e6)  # practically only lesion slices
    assert heavy > 0.97 and heavy > base + 0.2, (base, heavy, frac)


def test_map_style_items_of_lesion_slices_hold_the_lesion(subjects):
    # crops only (no affine): the lesion must be where the crop put it
    ds = PairedSliceDataset(subjects, lesion_slice_weight=4.0, augment=True,
                            augment_settings=AugmentSettings(affine_prob=0.0), **KW)
    idx = np.flatnonzero(_lesion_slices(ds))
    for i in idx[:12]:
        assert ds[int(i)]["lesion"].sum() > 0


def test_config_knob_is_checked(tmp_path):
    from synthseq.training.data import train_dataset

    cfg = load_config(None, ["data.lesion_slice_weight=3"])
    with pytest.raises(ConfigError, match="data.lesion_slice_weight=3.0: needs paired data, data.lesion_key"):
        train_dataset(cfg, [object()])
