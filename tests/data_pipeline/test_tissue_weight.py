"""Tissue-balance weights (loss.pix2pix.lambda_tissue): every tissue class of the label map the same total weight,
carried as a training map on both data paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthseq.codes import AIRWAY, T, body_mask_from_labels, tissue_balance_weights
from synthseq.config import load_config
from synthseq.data.datasets import PairedSliceDataset
from synthseq.data.gpu import GPUSliceBank
from synthseq.data.layout import load_subjects
from synthseq.data.transforms import AugmentSettings
from synthseq.errors import ConfigError
from synthseq.io import load_volume
from synthseq.phantom import generate_dataset

KW = dict(image_size=32, min_foreground=0.05, label_key="labels", tissue_weights=True)
GEOMETRY = AugmentSettings(flip_prob=0.5, affine_prob=1.0, rotate_deg=10, scale=0.1, translate_px=4,
                           bias_prob=0, gamma_prob=0, noise_prob=0)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("ph") / "ds", subjects=2, seed=5, preset="tiny", progress=False)
    return load_subjects(root)


def test_every_tissue_gets_the_same_total_weight():
    labels = np.full((4, 10), T["muscle"])
    labels[0] = 0  # background
    labels[1, :3] = AIRWAY
    labels[2, :2] = T["cord"]
    labels[3, :5] = T["interspinous_ligament"]
    w = tissue_balance_weights(labels)
    body = body_mask_from_labels(labels)
    assert w.dtype == np.float32 and w.shape == labels.shape
    assert np.all(w[~body] == 0)
    np.testing.assert_allclose(w[body].mean(), 1.0, rtol=1e-6)
    totals = [w[labels == t].sum() for t in (T["muscle"], T["cord"], T["interspinous_ligament"])]
    np.testing.assert_allclose(totals, [body.sum() / 3] * 3, rtol=1e-6)
    assert w[2, 0] > w[3, 0] > w[3, 9]  # the rarer the tissue, the heavier its voxels
    assert not tissue_balance_weights(np.zeros((3, 3), int)).any()


def test_weight_map_is_the_label_maps_weights_and_moves_with_the_pair(subjects):
    ds = PairedSliceDataset(subjects, **KW)
    for sub, st in zip(subjects, ds.stacks):
        assert st.reference is None  # no lesion map asked for: only the weights
        labels = load_volume(sub.paths["labels"], allow_zero=True).data.astype(np.int64)
        np.testing.assert_allclose(st.view.from_slices(st.tissue_weight[:, 0]), tissue_balance_weights(labels),
                                   rtol=1e-6)
        assert np.all((st.tissue_weight > 0) == (st.mask > 0))  # the weights live on the body mask
    aug = PairedSliceDataset(subjects, augment=True, augment_settings=GEOMETRY, **KW)
    values = set()
    for i in range(0, len(aug), 3):
        item = aug[i]
        w, body = item["tissue_weight"], item["mask"].bool()
        assert (w >= 0).all() and not (w[~body] > 0.5 * w.max()).any()
        values |= set(np.round(w.unique().numpy(), 4).tolist())
    assert len(values - {0.0, 1.0}) > 10  # interpolated like an image, not binarized like a mask
    bank = GPUSliceBank.from_dataset(ds, "cpu")
    assert bank.mask_names == ("mask", "tissue_weight")
    exact = bank.sample(8, augment=False, generator=torch.Generator().manual_seed(1))
    stored = np.concatenate([st.tissue_weight.ravel() for st in ds.stacks])
    assert np.isin(exact["tissue_weight"].numpy(), stored).all()  # un-augmented: an exact window of the maps
    batch = bank.sample(16, augment=True, generator=torch.Generator().manual_seed(2))
    assert set(batch) == {"A", "B", "mask", "tissue_weight"}
    w = batch["tissue_weight"]
    assert (w >= 0).all() and len(set(w.unique().tolist()) - {0.0, 1.0}) > 10


def test_lesion_maps_and_weights_together_keep_their_channels(subjects):
    ds = PairedSliceDataset(subjects, lesion_key="lesions", lesion_slice_weight=4, **KW)
    bank = GPUSliceBank.from_dataset(ds, "cpu")
    assert bank.mask_names == ("mask", "lesion", "reference", "tissue_weight")
    batch = bank.sample(16, augment=True, generator=torch.Generator().manual_seed(3))
    assert set(batch["lesion"].unique().tolist()) <= {0.0, 1.0} and batch["lesion"].any()
    assert set(batch["reference"].unique().tolist()) <= {0.0, 1.0}
    assert batch["tissue_weight"].max() > 1.0


def test_weights_need_a_label_map_and_pix2pix(subjects):
    with pytest.raises(ValueError, match="tissue_weights needs label_key"):
        PairedSliceDataset(subjects, image_size=32, tissue_weights=True)
    from synthseq.training.data import train_dataset

    with pytest.raises(ConfigError, match=r"lambda_tissue > 0 needs paired data and data.label_key"):
        train_dataset(load_config(None, ["loss.pix2pix.lambda_tissue=5"]), [object()])
    with pytest.raises(ConfigError, match=r"lambda_tissue > 0 needs paired data"):
        train_dataset(load_config(None, ["loss.pix2pix.lambda_tissue=5", "data.label_key=labels",
                                         "data.paired=false"]), [object()])
