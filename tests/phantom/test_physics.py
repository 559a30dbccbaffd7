"""Physics sanity on generated subjects: fat suppression, oedema conspicuity, confounders, cord lesions."""

import numpy as np
import pytest

from synthseq.phantom.sequences import fat_null_ti, rician, slab_average, stir_signal, t2w_signal
from synthseq.phantom.tissues import FIELDS, relaxation, table

FAT, CSF, MARROW, CORD = 2, 10, 7, 11


def _mean(a, m):
    return float(a[m].mean())


def _check_fat_csf(rec):
    t2, st, lab = rec.t2w.data, rec.stir.data, rec.labels.data
    fat, csf = lab == FAT, lab == CSF
    assert _mean(st, fat) < 0.15 * _mean(st, csf), rec.subject_id
    assert _mean(t2, fat) > 0.3 * _mean(t2, csf), rec.subject_id


def test_fat_is_nulled_on_stir_and_bright_on_t2w(tiny_subjects, default_subject):
    for rec in [*tiny_subjects, default_subject]:
        _check_fat_csf(rec)


ISL, MUSCLE_L = 15, 3


def test_interspinous_space_half_way_between_muscle_and_fat(default_subject):
    """Real sagittal T2w draw the midline interspinous spaces at 0.5-0.7 of the posterior fat's brightness
    (benchmarks/interspinous_space.py); the phantom's are 65 % fat: well above muscle on T2w and T1w, darker on STIR."""
    lab, les = default_subject.labels.data, default_subject.lesions.data
    isl, mus, fat = ((lab == c) & (les == 0) for c in (ISL, MUSCLE_L, FAT))
    for img in (default_subject.t2w.data, default_subject.t1w.data):
        share = (_mean(img, isl) - _mean(img, mus)) / (_mean(img, fat) - _mean(img, mus))
        assert 0.4 < share < 0.8, share
    assert _mean(default_subject.stir.data, isl) < 0.8 * _mean(default_subject.stir.data, mus)


def _cnr(img, lesion, normal):
    return (_mean(img, lesion) - _mean(img, normal)) / float(img[normal].std())


def test_marrow_edema_is_conspicuous_on_stir_subtle_on_t2w(tiny_subjects, default_subject):
    checked = 0
    for rec in [*tiny_subjects, default_subject]:
        lab, les = rec.labels.data, rec.lesions.data
        edema, normal = (les == 1) & (lab == MARROW), (les == 0) & (lab == MARROW)
        if edema.sum() < 5:
            continue
        cnr_stir, cnr_t2 = _cnr(rec.stir.data, edema, normal), _cnr(rec.t2w.data, edema, normal)
        assert cnr_stir > 1.5 and cnr_stir >= 2 * abs(cnr_t2), (rec.subject_id, cnr_stir, cnr_t2)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("code", [8, 9])
def test_fatty_confounders_bright_on_t2w_not_on_stir(tiny_subjects, code):
    checked = 0
    for rec in tiny_subjects:
        lab, les = rec.labels.data, rec.lesions.data
        conf, normal = les == code, (les == 0) & (lab == MARROW)
        if conf.sum() < 4:
            continue
        assert _mean(rec.t2w.data, conf) > 1.1 * _mean(rec.t2w.data, normal), rec.subject_id
        assert _mean(rec.stir.data, conf) < _mean(rec.stir.data, normal), rec.subject_id
        checked += 1
    assert checked >= 2


def test_modic1_is_edema_like(tiny_subjects):
    checked = 0
    for rec in tiny_subjects:
        lab, les = rec.labels.data, rec.lesions.data
        m1, normal = les == 10, (les == 0) & (lab == MARROW)
        if m1.sum() < 4:
            continue
        assert _mean(rec.stir.data, m1) > 1.4 * _mean(rec.stir.data, normal), rec.subject_id
        checked += 1
    assert checked >= 2


def test_cord_edema_bright_on_both_hemorrhage_dark_on_t2w(tiny_subjects, default_subject):
    n_edema = n_hem = 0
    for rec in [*tiny_subjects, default_subject]:
        lab, les = rec.labels.data, rec.lesions.data
        edema, cord = les == 3, (lab == CORD) & (les == 0)
        if edema.sum() < 4:
            continue
        for img in (rec.t2w.data, rec.stir.data):
            assert _mean(img, edema) > 1.3 * _mean(img, cord), rec.subject_id
        n_edema += 1
        hem = les == 4
        if hem.any():
            # tiny voxels mix the small core with the oedema around it: darker, not black
            assert _mean(rec.t2w.data, hem) < 0.8 * _mean(rec.t2w.data, edema), rec.subject_id
            n_hem += 1
    assert n_edema >= 5 and n_hem >= 2
    hem = default_subject.lesions.data == 4
    normal_cord = (default_subject.labels.data == CORD) & (default_subject.lesions.data == 0)
    assert _mean(default_subject.t2w.data, hem) < _mean(default_subject.t2w.data, normal_cord)


def test_t2w_to_stir_is_not_a_monotone_mapping(tiny_subjects):
    """Fat-containing tissue is brighter than oedema-free marrow and cord on T2w but darker on STIR."""
    rec = tiny_subjects[0]
    lab = rec.labels.data
    fat, cord = lab == FAT, lab == CORD
    assert _mean(rec.t2w.data, fat) > _mean(rec.t2w.data, cord)
    assert _mean(rec.stir.data, fat) < _mean(rec.stir.data, cord)


# ---------------------------------------------------------------------------------------------------- T1w
MUSCLE, AIR = 3, 0


def test_t1w_marrow_edema_dark_fat_bright_csf_dark(tiny_subjects, default_subject):
    """T1w: oedema (water replacing fat, longer T1) darker than normal marrow; fat bright; CSF dark."""
    from synthseq.metrics import lesion_cnr, reference_masks

    lab, les, t1 = default_subject.labels.data, default_subject.lesions.data, default_subject.t1w.data
    # the evaluation's own CNR: reference = normal marrow in the slices holding the oedema
    ref = reference_masks(lab, les, slice_axis=2)["marrow_edema"]
    assert lesion_cnr(t1, les == 1, ref) <= -2.0
    checked = 0
    for rec in [*tiny_subjects, default_subject]:
        lab, les, t1 = rec.labels.data, rec.lesions.data, rec.t1w.data
        assert _mean(t1, lab == FAT) > 1.8 * _mean(t1, lab == MUSCLE), rec.subject_id
        assert _mean(t1, lab == CSF) < 0.8 * _mean(t1, lab == MUSCLE), rec.subject_id
        assert _mean(t1, lab == CSF) < 0.4 * _mean(t1, lab == FAT), rec.subject_id
        edema, normal = (les == 1) & (lab == MARROW), (les == 0) & (lab == MARROW)
        if edema.sum() >= 5:
            assert _mean(t1, edema) < 0.85 * _mean(t1, normal), rec.subject_id
            checked += 1
    assert checked >= 5


def test_t1w_same_grid_own_noise(default_subject):
    rec = default_subject
    assert rec.t1w.shape == rec.t2w.shape
    np.testing.assert_array_equal(rec.t1w.affine, rec.t2w.affine)
    from scipy import ndimage

    # background a few voxels away from the body (no blurred edge) is pure Rician noise in both:
    # independent draws are uncorrelated there
    air = ~ndimage.binary_dilation(rec.labels.data != AIR, iterations=4)
    r = np.corrcoef(rec.t1w.data[air].ravel(), rec.t2w.data[air].ravel())[0, 1]
    assert abs(r) < 0.05 and rec.t1w.data[air].std() > 0


def test_t1w_signal_equation_and_protocol():
    from synthseq.phantom.sequences import t1w_signal

    r = relaxation("fat", 1.5)
    assert t1w_signal(r, 550, 10) == pytest.approx(0.9 * (1 - np.exp(-550 / 250)) * np.exp(-10 / 130))
    # short TR: T1 contrast dominates (fat > marrow water > CSF), the reverse of CSF on T2w
    sig = {n: t1w_signal(relaxation(n, 1.5), 550, 10) for n in ("fat", "marrow_water", "edema_water", "csf")}
    assert sig["fat"] > sig["marrow_water"] > sig["edema_water"] > sig["csf"]


# ------------------------------------------------------------------------------ signal equations and noise
def test_signal_equations_by_hand():
    r = relaxation("csf", 1.5)
    assert t2w_signal(r, 3000, 100) == pytest.approx(1.0 * (1 - np.exp(-3000 / 4200)) * np.exp(-100 / 2000))
    assert stir_signal(r, 3500, 170, 50) == pytest.approx((1 - 2 * np.exp(-170 / 4200) + np.exp(-3500 / 4200))
                                                          * np.exp(-50 / 2000))


@pytest.mark.parametrize("field", FIELDS)
def test_ti_nulls_fat_and_inverts_water(field):
    ti = fat_null_ti(field, 3500.0)
    fat = relaxation("fat", field)
    assert abs(stir_signal(fat, 3500.0, ti, 50.0)) < 1e-9
    assert stir_signal(relaxation("csf", field), 3500.0, ti, 50.0) < 0  # water below its null: signed sum matters
    if field == 1.5:
        assert 150 <= ti <= 180
    else:
        assert ti > fat_null_ti(1.5, 3500.0)  # fat T1 lengthens with field


def test_relaxation_tables_cover_both_fields():
    t15, t3 = table(1.5), table(3.0)
    assert set(t15) == set(t3)
    for name in ("muscle", "cord", "fat", "csf"):
        assert t3[name].t1 >= t15[name].t1  # T1 lengthens with field strength
    with pytest.raises(ValueError):
        relaxation("fat", 7.0)


def test_signed_partial_volume_then_magnitude():
    """A sub-slice of fat (~0 on STIR) next to one of water (negative) averages with sign."""
    fine = np.array([[[-0.4]], [[0.0]], [[0.2]]], np.float32)
    assert slab_average(fine, 3)[0, 0, 0] == pytest.approx(-0.2 / 3, abs=1e-6)


def test_rician_noise_floor():
    rng = np.random.default_rng(0)
    out = rician(np.zeros((200, 200), np.float32), 2.0, rng)
    assert out.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.03)
    big = rician(np.full((200, 200), 100.0, np.float32), 2.0, rng)
    assert big.mean() == pytest.approx(100.0, rel=0.01) and big.std() == pytest.approx(2.0, rel=0.05)
