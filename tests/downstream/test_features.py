"""Image features against the lesion masks: error bounds, orientation invariance, STIR vs T2w."""

import numpy as np
import pytest

from synthseq.downstream.dataset import read_cohort, subject_file
from synthseq.downstream.features import (
    FEATURE_NAMES,
    extract_features,
    features_for_subjects,
    lesion_truth,
    validate_features,
)
from synthseq.errors import InputError
from synthseq.io import Volume, load_volume


def _pairs(root, kind):
    pairs = []
    for s in read_cohort(root).subjects:
        img = load_volume(subject_file(root, s, kind))
        labels = load_volume(subject_file(root, s, "labels"), allow_zero=True)
        lesions = load_volume(subject_file(root, s, "lesions"), allow_zero=True)
        pairs.append((extract_features(img, labels), lesion_truth(lesions, labels)))
    return pairs


def test_stir_features_match_lesion_masks_on_the_phantom(dataset):
    """Real phantom (tiny: 2.75 mm in-plane, 4 mm slices, partial volume, Modic / hemangioma confounders)."""
    v = validate_features(_pairs(dataset, "stir"))
    assert v.n == 16
    assert v.length_mae_mm <= 6.0  # about two superior-inferior voxels
    assert v.cord_volume_mae_ml <= 0.25
    assert v.marrow_presence_accuracy >= 0.8
    assert v.marrow_presence_accuracy >= validate_features(_pairs(dataset, "t2w")).marrow_presence_accuracy


def test_stir_features_match_lesion_masks(synthetic):
    v = validate_features(_pairs(synthetic, "stir"))
    # bounds: one slice of the coarsest superior-inferior spacing (1.25 mm) and 0.05 mL
    assert v.n == 12
    assert v.length_mae_mm <= 1.25 and v.length_max_err_mm <= 2.5
    assert v.cord_volume_mae_ml <= 0.05 and v.marrow_volume_mae_ml <= 0.05
    assert v.marrow_presence_accuracy == 1.0


def test_marrow_edema_is_a_stir_finding(synthetic):
    """Fat-suppressed STIR shows marrow edema; on T2w the fatty marrow hides most of it."""
    stir = validate_features(_pairs(synthetic, "stir"))
    t2w = validate_features(_pairs(synthetic, "t2w"))
    assert t2w.marrow_presence_accuracy < stir.marrow_presence_accuracy
    assert t2w.marrow_volume_mae_ml > 5 * max(stir.marrow_volume_mae_ml, 1e-3)


def test_plc_signal_separates_injured(synthetic):
    cohort = read_cohort(synthetic)
    x = features_for_subjects(synthetic, cohort.subjects, "stir")
    plc = cohort.flag("plc_injury").astype(bool)
    col = FEATURE_NAMES.index("plc_signal")
    assert x[plc, col].min() > x[~plc, col].max()


def test_features_do_not_depend_on_storage_order(dataset):
    s = "sub-0002"
    img = load_volume(subject_file(dataset, s, "stir"))
    labels = load_volume(subject_file(dataset, s, "labels"), allow_zero=True)
    # same anatomy, stored with axes 0 and 2 swapped and axis 1 reversed
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, img.shape[1] - 1
    swap = np.eye(4)[[2, 1, 0, 3]]
    aff = img.affine @ flip @ swap

    def re(v):
        return Volume(np.ascontiguousarray(np.flip(v.data, 1).transpose(2, 1, 0)), aff)

    a, b = extract_features(img, labels), extract_features(re(img), re(labels))
    assert a == pytest.approx(b)


def test_labels_without_cord_rejected(dataset):
    img = load_volume(subject_file(dataset, "sub-0001", "stir"))
    labels = img.with_data(np.zeros(img.shape, np.uint8))
    with pytest.raises(InputError, match="no spinal cord voxels"):
        extract_features(img, labels)
