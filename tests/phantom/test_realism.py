"""Realistic phantom modes: patient-like anatomy, texture, acquisition physics; each artefact measured."""

import numpy as np
import pytest

from synthseq.errors import ConfigError
from synthseq.phantom import acquisition as acq
from synthseq.phantom import generate_subject, get_preset, texture
from synthseq.phantom.anatomy import (
    VARIATION,
    Canvas,
    SpineFrame,
    degeneration_probability,
    paint_anatomy,
    sample_anatomy,
    sample_anatomy_varied,
)
from synthseq.phantom.classes import CORTEX, CSF, class_composition
from synthseq.phantom.generate import _grid
from synthseq.phantom.injuries import InjuryPlan
from synthseq.phantom.sequences import fat_null_ti

FAT, CSF_L, MARROW_L, CORD_L = 2, 10, 7, 11
N = 12


@pytest.fixture(scope="module")
def faithful():
    return [generate_subject(f"sub-{i:04d}", rng_seed=i, preset="tiny", realism="faithful") for i in range(N)]


@pytest.fixture(scope="module")
def classic(tiny_subjects):
    return tiny_subjects[:N]  # conftest: the same ids and seeds in the classic mode


def _mean(a, m):
    return float(a[m].mean())


# ------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("mode", ["faithful", "randomized"])
def test_same_seed_same_arrays(mode):
    a = generate_subject("s", 3, preset="tiny", realism=mode)
    b = generate_subject("s", 3, preset="tiny", realism=mode)
    for k in ("t2w", "stir", "t1w", "labels", "lesions"):
        np.testing.assert_array_equal(getattr(a, k).data, getattr(b, k).data)
    assert a.acquisition == b.acquisition and a.acquisition["realism"] == mode
    c = generate_subject("s", 4, preset="tiny", realism=mode)
    assert not np.array_equal(a.t2w.data, c.t2w.data)


def test_classic_is_the_default_and_case_is_shared(classic, faithful):
    again = generate_subject("sub-0000", rng_seed=0, preset="tiny", realism="classic")
    np.testing.assert_array_equal(again.t2w.data, classic[0].t2w.data)
    assert "realism" not in classic[0].acquisition
    # the trauma case comes from the same stream in every mode (the degeneration-driven Modic confounders differ)
    trauma = ("level", "fracture", "plc", "cord", "prevertebral", "disc", "canal")
    for f, c in zip(faithful, classic):
        assert {k: f.injuries[k] for k in trauma} == {k: c.injuries[k] for k in trauma}
        assert f.cohort["age"] == c.cohort["age"] and f.cohort["sex"] == c.cohort["sex"]
    with pytest.raises(ConfigError, match="realism"):
        generate_subject("s", 0, preset="tiny", realism="cartoon")


# ---------------------------------------------------------------------------------------------- anatomy
def test_varied_anatomy_ranges_follow_the_documented_sources():
    rng = np.random.default_rng(0)
    young = [sample_anatomy_varied(rng, 25.0, "F") for _ in range(150)]
    old = [sample_anatomy_varied(rng, 70.0, "M") for _ in range(150)]
    cobb = np.array([2 * a.lordosis_deg for a in young + old])
    assert abs(cobb.mean() - VARIATION["cobb_mean_deg"]) < 3.0
    assert 0.05 < (cobb < 0).mean() < 0.3  # some straight / kyphotic necks, as on supine MRI
    lo, hi = VARIATION["cobb_range_deg"]
    assert cobb.min() >= lo and cobb.max() <= hi
    deg_y = np.mean([a.disc_degen.max() > 0.2 for a in young])
    deg_o = np.mean([a.disc_degen.max() > 0.2 for a in old])
    assert deg_o > deg_y + 0.3 and degeneration_probability(70) > degeneration_probability(25)
    for a in young + old:
        assert np.all(a.osteophyte_ant[a.disc_degen <= 0.25] == 0)  # spurs only at degenerated discs
        assert np.all(a.s_bot > a.s_top) and np.all(a.s_top[1:] > a.s_bot[:-1])  # heights re-derived
    ost = np.concatenate([a.osteophyte_ant for a in old])
    assert ost.max() <= VARIATION["osteophyte_max_mm"] and (ost > 0).mean() > 0.1
    fat = np.array([a.fat_post for a in young])
    assert fat.min() >= 3.0 and fat.max() <= 25.0 and fat.std() > 2.0
    # wider than the classic sampler
    classic = [sample_anatomy(rng, 50.0, "F") for _ in range(150)]
    assert np.std([a.body_h[3] for a in young]) > np.std([a.body_h[3] for a in classic])


def test_randomized_tilt_is_the_faithful_draw_widened_and_nothing_else():
    faithful = [sample_anatomy_varied(np.random.default_rng(s), 50.0, "F") for s in range(200)]
    wide = [sample_anatomy_varied(np.random.default_rng(s), 50.0, "F", randomized=True) for s in range(200)]
    ratio = VARIATION["tilt_sd_deg_randomized"] / VARIATION["tilt_sd_deg"]
    for f, w in zip(faithful, wide):
        assert w.tilt_deg == pytest.approx(f.tilt_deg * ratio)  # the same random number, scaled
        assert (w.lordosis_deg, w.fat_post, w.roll_deg) == (f.lordosis_deg, f.fat_post, f.roll_deg)
        np.testing.assert_array_equal(w.disc_h, f.disc_h)
    tilts = np.abs([a.tilt_deg for a in wide])
    assert 0.05 < (tilts > 20.0).mean() < 0.2  # a real crop's 22 deg lies inside the randomized range
    assert (np.abs([a.tilt_deg for a in faithful]) > 20.0).mean() == 0.0


def _paint(anat):
    pr = get_preset("tiny")
    xf, y, z, _ = _grid(pr)
    frame = SpineFrame(anat, InjuryPlan(level=3), (0.0, 0.0))
    frame.y -= frame.point(80.0)[0] - 12.0
    frame.z += (z[0] - pr.dens_from_top_mm) - frame.point(0.0)[1]
    cv = Canvas(xf, y, z, frame, anat)
    return cv, paint_anatomy(cv, anat, InjuryPlan(level=3))


def test_osteophytes_and_bulges_are_painted():
    anat = sample_anatomy_varied(np.random.default_rng(1), 70.0, "M")
    anat.osteophyte_ant[:] = 0.0
    anat.osteophyte_post[:] = 0.0
    anat.disc_bulge[:] = 0.0
    cv0, _ = _paint(anat)
    anat.osteophyte_ant[3:5] = 4.0
    anat.osteophyte_post[3:5] = 2.0
    anat.disc_bulge[3:5] = 3.0
    cv1, _ = _paint(anat)
    more_bone = int((cv1.cls == CORTEX).sum()) - int((cv0.cls == CORTEX).sum())
    less_csf = int((cv0.cls == CSF).sum()) - int((cv1.cls == CSF).sum())
    assert more_bone > 20 and less_csf > 5


# --------------------------------------------------------------------------------------------- texture
def test_smooth_field_is_unit_and_correlated():
    f = texture.smooth_field((40, 40, 40), (1.0, 1.0, 6.0), np.random.default_rng(0))
    assert abs(float(f.mean())) < 0.05 and float(f.std()) == pytest.approx(1.0, rel=0.05)
    along = np.corrcoef(f[:, :, :-2].ravel(), f[:, :, 2:].ravel())[0, 1]
    across = np.corrcoef(f[:-2].ravel(), f[2:].ravel())[0, 1]
    assert along > 0.7 and along > across + 0.2  # stretched along the third axis (muscle fibres)


def test_marrow_and_fat_are_textured(faithful, classic):
    def cv(rec, code):
        m = (rec.labels.data == code) & (rec.lesions.data == 0)
        return float(rec.t2w.data[m].std() / rec.t2w.data[m].mean())

    for code in (MARROW_L, FAT):
        tex = np.median([cv(r, code) for r in faithful])
        flat = np.median([cv(r, code) for r in classic])
        assert tex > 0 and tex > flat, (code, tex, flat)


def test_vessels_and_csf_flow_voids():
    rec = generate_subject("s", 5, preset="tiny", realism="faithful")
    anat = sample_anatomy_varied(np.random.default_rng(2), 50.0, "F")
    cvs, painted = _paint(anat)
    ones = np.ones(cvs.cls.shape, np.float32)
    ch = texture.Channels([(ones, {})])
    tp = texture.TextureParams()
    texture._vessels(cvs, painted, anat, ch, tp, np.random.default_rng(0))
    void = ones < 0.3
    assert void.sum() > 20
    x_void = np.abs(cvs.x[np.nonzero(void)[0]])
    assert x_void.min() > 10.0  # vertebral / carotid arteries are lateral, not in the midline
    csf = np.ones(cvs.cls.shape, np.float32)
    rng = np.random.default_rng(0)
    texture._csf_flow(cvs, texture.Channels([(csf, {})]), tp, rng, lambda shape, *sig: texture.smooth_field(shape, sig, rng))
    in_csf = csf[(cvs.cls == CSF) & (cvs.S[None] > 0)]
    assert in_csf.min() < 0.9 and in_csf.max() == 1.0 and np.all(csf[cvs.cls != CSF] == 1.0)
    assert rec.acquisition["texture"]["vessel_void"] > 0.8


# ---------------------------------------------------------------------------------------- acquisition
def _ks(**kw):
    base = dict(vendor="vendor_a", pe_axis="SI", acq_pe=1.0, acq_ro=1.0, partial_fourier=1.0, apodization=0.0,
                slice_fwhm=1.0, ghost_amp=0.0, ghost_shift=0.2, coil_elements=4, coil_radius_mm=80.0,
                coil_anterior=0.3, coil_exponent=0.3, phase_coef=(0.0, 0.0, 0.0))
    base.update(kw)
    return acq.KSpace(**base)


def _edge(n=64, o=2):
    img = np.zeros((1, o * n, o * n), np.float32)
    img[:, :, o * n // 2:] = 1.0  # a sharp edge across S-I (axis 2)
    return img


def test_gibbs_ringing_at_a_sharp_edge():
    out = np.abs(acq.kspace_sample(_edge(), (64, 64), _ks(acq_ro=0.8, acq_pe=0.8)))[0, 32]
    assert out.max() > 1.05  # overshoot next to the edge (Gibbs: ~9 % for a truncated step)
    assert out[:28].max() > 0.02  # ripples on the dark side
    tapered = np.abs(acq.kspace_sample(_edge(), (64, 64), _ks(acq_ro=0.8, acq_pe=0.8, apodization=1.0)))[0, 32]
    assert tapered.max() < out.max() - 0.03  # the vendors' filter trades ringing for blur


def test_partial_fourier_and_acquired_matrix_blur():
    def edge_width(ks):
        prof = np.abs(acq.kspace_sample(_edge(), (64, 64), ks))[0, 32]
        return int(((prof > 0.1) & (prof < 0.9)).sum())

    assert edge_width(_ks(acq_pe=0.5)) > edge_width(_ks())
    full = np.abs(acq.kspace_sample(_edge(), (64, 64), _ks()))
    pf = np.abs(acq.kspace_sample(_edge(), (64, 64), _ks(partial_fourier=0.6, phase_coef=(0.0, 0.0, 1.0))))
    assert float(np.abs(pf - full).max()) > 0.05
    w = acq.kspace_window((64, 64), _ks(partial_fourier=0.6))
    assert w[:, :10].sum() == 0 and w[:, -10:].sum() > 0  # one side of phase-encode k-space missing


def test_slice_profile_conserves_signal_and_crosstalks():
    fine = np.zeros((3 * 5, 4, 4), np.float32)
    fine[6:9] = 1.0  # the middle slice only
    out = acq.slice_profile(fine, 5, 3, fwhm=1.2)
    assert out.shape == (5, 4, 4)
    assert out.sum() == pytest.approx(fine.sum() / 3, rel=0.01)
    flat = acq.slice_profile(np.ones((15, 2, 2), np.float32), 5, 3, fwhm=1.2)
    np.testing.assert_allclose(flat, 1.0, rtol=1e-5)  # each slice's weights sum to 1
    assert 0.02 < out[1, 0, 0] < out[2, 0, 0] and out[0, 0, 0] < 0.01


def test_coil_field_smooth_and_positive():
    body = np.zeros((6, 40, 50), bool)
    body[:, 5:35, :] = True
    sens = acq.coil_sensitivity(body, (3.0, 2.0, 2.0), _ks())
    assert np.all(sens > 0)
    assert float(sens[body].mean()) == pytest.approx(1.0, rel=1e-5)
    assert sens[:, 34].mean() > sens[:, 5].mean()  # brighter next to the posterior coil
    second = np.abs(np.diff(sens, 2, axis=1)).max() / sens.max()
    assert second < 0.02  # smooth: no voxel-scale structure


def test_csf_ghosts_run_along_phase_encode():
    csf = np.zeros((1, 40, 60), np.float32)
    csf[0, 20, 10] = 1.0
    g = acq.csf_ghosts(csf, _ks(ghost_amp=0.05, ghost_shift=0.1), np.random.default_rng(0))
    rows, cols = np.nonzero(g[0])
    assert set(rows) == {20} and len(cols) == 4 and np.abs(g).max() <= 0.05
    assert not acq.csf_ghosts(csf, _ks(ghost_amp=0.0), np.random.default_rng(0)).any()


def test_rician_magnitude_of_complex_noise():
    img = np.zeros((100, 100), np.complex64)
    out = acq.noisy_magnitude(img, 2.0, np.random.default_rng(0))
    assert out.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.03)


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_stir_fat_null_moves_with_field(field):
    pr = get_preset("tiny")
    rng = np.random.default_rng(0)
    tis = [acq.sample_acquisition(rng, field, pr, "faithful", 0.0, rng)[0].stir_ti_ms for _ in range(30)]
    null = fat_null_ti(field, 4000.0)
    assert all(abs(t - null) < 25 for t in tis)
    if field == 3.0:
        assert min(tis) > fat_null_ti(1.5, 5500.0) + 30
    rnd = [acq.sample_acquisition(rng, field, pr, "randomized", 0.0, rng)[0].field_strength_T for _ in range(30)]
    assert set(rnd) == {1.5, 3.0}  # randomized: field strength drawn per subject


# ------------------------------------------------------------------------------------- physics (faithful)
def test_faithful_physics_fat_nulled_csf_brightest(faithful):
    for rec in faithful:
        lab, st, t2 = rec.labels.data, rec.stir.data, rec.t2w.data
        fat, csf, cord = lab == FAT, lab == CSF_L, (lab == CORD_L) & (rec.lesions.data == 0)
        assert _mean(st, fat) < 0.25 * _mean(st, csf), rec.subject_id
        assert _mean(t2, fat) > 0.3 * _mean(t2, csf), rec.subject_id
        assert _mean(t2, cord) < _mean(t2, csf) and _mean(st, cord) < _mean(st, csf), rec.subject_id
    ratios = [_mean(r.stir.data, r.labels.data == FAT) / _mean(r.stir.data, r.labels.data == CSF_L) for r in faithful]
    assert np.median(ratios) < 0.15


def test_faithful_lesion_physics(faithful):
    n_edema = n_marrow = 0
    for rec in faithful:
        lab, les = rec.labels.data, rec.lesions.data
        edema, cord = les == 3, (lab == CORD_L) & (les == 0)
        if edema.sum() >= 4:
            for img in (rec.t2w.data, rec.stir.data):
                assert _mean(img, edema) > 1.15 * _mean(img, cord), rec.subject_id
            n_edema += 1
        me, normal = (les == 1) & (lab == MARROW_L), (les == 0) & (lab == MARROW_L)
        if me.sum() >= 5:
            d_st = _mean(rec.stir.data, me) / _mean(rec.stir.data, normal)
            d_t2 = _mean(rec.t2w.data, me) / _mean(rec.t2w.data, normal)
            assert d_st > 1.3 and d_st - 1 > 2 * abs(d_t2 - 1), rec.subject_id  # conspicuous on STIR only
            n_marrow += 1
    assert n_edema >= 3 and n_marrow >= 2


def test_randomized_keeps_the_target_physics():
    from synthseq.phantom.classes import EPIFAT, IM_FAT, SUBCUT_FAT

    fat_gains = []
    for i in range(3):
        rec = generate_subject("s", 100 + i, preset="tiny", realism="randomized")
        lab, st = rec.labels.data, rec.stir.data
        assert _mean(st, lab == FAT) < 0.3 * _mean(st, lab == CSF_L)
        assert rec.acquisition["relaxation_jitter"]["fat"][0] == 1.0  # fat T1 (the STIR null) is kept
        gains = np.array(rec.acquisition["t2w_class_gain"])  # input contrast randomization, T2w only
        assert gains.shape == (len(class_composition(0.3)),) and gains.std() > 0.05 and np.all(gains > 0)
        others = np.delete(gains, [SUBCUT_FAT, EPIFAT, IM_FAT])
        assert np.all((others >= np.exp(-0.3) - 1e-4) & (others <= np.exp(0.3) + 1e-4))
        fat_gains += list(gains[[SUBCUT_FAT, EPIFAT, IM_FAT]])
    # fat gets the widest range, mostly darker (real T2w fat is darker against CSF than the phantom's)
    fat_gains = np.array(fat_gains)
    assert np.all((fat_gains >= np.exp(-0.5) - 1e-4) & (fat_gains <= np.exp(0.2) + 1e-4))
    assert np.median(fat_gains) < 1.0 and fat_gains.min() < np.exp(-0.3)


def test_kspace_noise_has_the_requested_sd_and_is_band_limited():
    zeros = np.zeros((4, 128, 128), np.float32)
    white = acq.kspace_sample(zeros, (64, 64), _ks(), sigma=2.0, rng=np.random.default_rng(0))
    assert float(white.real.std()) == pytest.approx(2.0, rel=0.03)
    lim = acq.kspace_sample(zeros, (64, 64), _ks(acq_pe=0.6, apodization=0.5), sigma=2.0, rng=np.random.default_rng(0))
    assert float(lim.real.std()) == pytest.approx(2.0, rel=0.03)

    def hi_lo(img):
        p = np.abs(np.fft.fftshift(np.fft.fft2(img.real), axes=(1, 2))) ** 2
        return float(p[:, :, :8].mean() / p[:, :, 24:40].mean())  # outer / central phase-encode columns

    assert hi_lo(white) == pytest.approx(1.0, abs=0.25)
    assert hi_lo(lim) < 0.05  # no noise where k-space was not acquired (zero-filled)


def test_faithful_subjects_pass_the_dataset_contrast_check_and_a_swap_is_caught(faithful):
    """Training refuses a pair whose contrast indices suggest a swap (data/qc.py): no faithful subject is refused,
    and most swapped pairs are (tiny preset, both body masks; the median index cannot tell the swap of a subject whose
    T2w / STIR median ratio is below 1 / SWAP_RATIO, as in 7 of these 24 cases)."""
    from synthseq.codes import body_mask_from_labels
    from synthseq.data.preprocess import body_mask_from_intensity
    from synthseq.data.qc import contrast_indices, suspected_swap

    caught = 0
    for rec in faithful:
        for body in (body_mask_from_intensity(rec.t2w.data), body_mask_from_labels(rec.labels.data)):
            t2, st = contrast_indices(rec.t2w, body), contrast_indices(rec.stir, body)
            assert not suspected_swap(t2, st), (rec.subject_id, t2, st)
            caught += suspected_swap(st, t2)
    assert caught >= 0.6 * 2 * len(faithful), caught


def test_cli_phantom_realism(tmp_path):
    import json

    from synthseq.cli import main

    out = tmp_path / "f"
    assert main(["phantom", "--out", str(out), "--subjects", "1", "--preset", "tiny", "--realism", "faithful"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["realism"] == "faithful"
    assert meta["subjects"]["sub-0001"]["acquisition"]["kspace"]["vendor"] in acq.VENDOR_PROTOCOLS
    with pytest.raises(SystemExit) as exc:  # argparse refuses an unknown mode before any work
        main(["phantom", "--out", str(tmp_path / "g"), "--subjects", "1", "--realism", "cartoon"])
    assert exc.value.code == 2 and not (tmp_path / "g").exists()


def test_randomized_interspinous_fat_varies_and_stir_nulls_it():
    isl_l, muscle_l = 15, 3
    fats, t1_ratio, stir_ratio = [], [], []
    for i in range(4):
        rec = generate_subject("s", 200 + i, preset="tiny", realism="randomized")
        lab, les = rec.labels.data, rec.lesions.data
        isl, muscle = (lab == isl_l) & (les == 0), (lab == muscle_l) & (les == 0)
        fats.append(rec.acquisition["interspinous_fat_fraction"])
        t1_ratio.append(_mean(rec.t1w.data, isl) / _mean(rec.t1w.data, muscle))  # T1w: no input gain, fat bright
        stir_ratio.append(_mean(rec.stir.data, isl) / _mean(rec.stir.data, muscle))
    assert all(0.2 <= f <= 0.8 for f in fats) and np.ptp(fats) > 0.2
    # more fat: brighter on T1w (and T2w); the tiny preset's few ligament voxels make the relation noisy
    assert np.argmax(t1_ratio) == np.argmax(fats) and np.argmin(t1_ratio) == np.argmin(fats), (fats, t1_ratio)
    assert np.corrcoef(fats, t1_ratio)[0, 1] > 0.5
    assert max(stir_ratio) < 1.0, stir_ratio  # STIR nulls the fat: the ligaments stay darker than muscle
    faithful = generate_subject("s", 200, preset="tiny", realism="faithful")
    assert "interspinous_fat_fraction" not in faithful.acquisition
