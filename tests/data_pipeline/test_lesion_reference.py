"""Lesion reference tissue (data.label_key): the normal tissue each lesion is measured against, as a training map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthseq import metrics as M
from synthseq.config import load_config
from synthseq.data.datasets import PairedSliceDataset
from synthseq.data.gpu import GPUSliceBank
from synthseq.data.layout import load_subjects
from synthseq.data.transforms import AugmentSettings
from synthseq.errors import ConfigError, InputError
from synthseq.io import load_volume, sagittal_axis
from synthseq.phantom import generate_dataset

KW = dict(image_size=32, min_foreground=0.05, lesion_key="lesions", label_key="labels")
GEOMETRY = AugmentSettings(flip_prob=0.5, affine_prob=1.0, rotate_deg=10, scale=0.1, translate_px=4,
                           bias_prob=0, gamma_prob=0, noise_prob=0)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("ph") / "ds", subjects=3, seed=3, preset="tiny", progress=False)
    return load_subjects(root)


def test_reference_map_is_the_metrics_reference_tissue(subjects):
    ds = PairedSliceDataset(subjects, **KW)
    with_lesions = 0
    for sub, st in zip(subjects, ds.stacks):
        labels = load_volume(sub.paths["labels"], allow_zero=True).data.astype(np.int64)
        lesions = load_volume(sub.paths["lesions"], allow_zero=True).data.astype(np.int64)
        refs = M.reference_masks(labels, lesions, slice_axis=sagittal_axis(load_volume(sub.paths["T2w"]).affine))
        expected = np.zeros(labels.shape, bool)
        for m in refs.values():
            expected |= m
        got = st.reference[:, 0].astype(bool)
        with_lesions += bool(refs)
        assert got.any() == bool(refs)  # a subject without lesions has no reference tissue
        np.testing.assert_array_equal(st.view.from_slices(got), expected)
        assert not (got & st.lesion[:, 0].astype(bool)).any()  # reference tissue is normal tissue
    assert with_lesions >= 2
    plain = PairedSliceDataset(subjects, image_size=32, min_foreground=0.05, lesion_key="lesions")
    assert plain.stacks[0].reference is None and "reference" not in plain[0]


def test_reference_moves_with_the_pair_on_both_paths(subjects):
    ds = PairedSliceDataset(subjects, augment=True, augment_settings=GEOMETRY, **KW)
    for i in range(0, len(ds), 5):
        item = ds[i]
        ref, les, body = item["reference"].bool(), item["lesion"].bool(), item["mask"].bool()
        assert not (ref & les).any() and not (ref & ~body).any()
    bank = GPUSliceBank.from_dataset(ds, "cpu")
    for augment in (False, True):
        batch = bank.sample(16, augment=augment, generator=torch.Generator().manual_seed(2))
        assert set(batch) == {"A", "B", "mask", "lesion", "reference"}
        ref, les, body = batch["reference"].bool(), batch["lesion"].bool(), batch["mask"].bool()
        assert ref.any() and set(batch["reference"].unique().tolist()) <= {0.0, 1.0}
        assert not (ref & les).any() and not (ref & ~body).any()


def test_missing_label_map_names_the_subject(subjects, tmp_path):
    import shutil

    folder = tmp_path / subjects[0].id
    shutil.copytree(subjects[0].paths["T2w"].parent, folder)
    (folder / f"{subjects[0].id}_labels.nii.gz").unlink()
    with pytest.raises(InputError, match=f"{subjects[0].id}: no labels file .*data.label_key=null"):
        PairedSliceDataset(load_subjects(tmp_path), **KW)
    with pytest.raises(ValueError, match="needs lesion_key"):
        PairedSliceDataset(subjects, image_size=32, label_key="labels")


@pytest.mark.parametrize("overrides,match", [
    (["loss.pix2pix.lambda_reference=5", "data.lesion_key=lesions"], r"lambda_reference > 0 needs .*data.label_key"),
    (["data.label_key=labels"], r"data.label_key=labels: .*needs data.lesion_key"),
])
def test_config_knobs_are_checked(overrides, match):
    from synthseq.training.data import train_dataset

    with pytest.raises(ConfigError, match=match):
        train_dataset(load_config(None, overrides), [object()])
