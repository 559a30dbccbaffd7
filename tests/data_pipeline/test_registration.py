"""Paired-grid checks: same_grid, resampling from the affines, NCC, rigid registration, align_pair."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synthseq.data.registration import align_pair, ncc, resample_to, rigid_matrix, rigid_register, same_grid
from synthseq.errors import InputError
from synthseq.io import Volume, load_volume


def test_same_grid(h):
    aff = h.psr_oblique_affine()
    a = Volume(np.ones((4, 5, 6), np.float32), aff)
    assert same_grid(a, Volume(np.zeros((4, 5, 6), np.float32), aff + 1e-5))
    shifted = aff.copy()
    shifted[0, 3] += 0.5
    assert not same_grid(a, Volume(np.ones((4, 5, 6), np.float32), shifted))
    assert not same_grid(a, Volume(np.ones((4, 5, 7), np.float32), aff))


def test_resample_between_storage_orders_is_exact(h, tmp_path):
    img = nib.load(str(h.PSR_CROP))
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine),
                                           nib.orientations.axcodes2ornt(("R", "A", "S")))
    nib.save(img.as_reoriented(ornt), str(tmp_path / "ras.nii.gz"))
    psr, ras = load_volume(h.PSR_CROP), load_volume(tmp_path / "ras.nii.gz")
    out = resample_to(psr, ras, order=1)
    assert out.shape == ras.shape
    np.testing.assert_allclose(out.affine, ras.affine)
    np.testing.assert_allclose(out.data, ras.data, atol=1e-2)
    nearest = resample_to(psr, ras, order=0)
    np.testing.assert_array_equal(nearest.data, ras.data)


def test_resample_known_shift_and_zero_outside(h):
    rng = np.random.default_rng(0)
    aff = h.psr_oblique_affine(spacing=(1.0, 1.0, 1.0))
    data = rng.random((10, 8, 6)).astype(np.float32) + 1
    moving_aff = aff.copy()
    moving_aff[:3, 3] += 2 * aff[:3, 0]  # moving voxel i sits where reference voxel i + 2 is
    out = resample_to(Volume(data, moving_aff), Volume(np.ones_like(data), aff), order=1)
    np.testing.assert_allclose(out.data[2:], data[:-2], atol=1e-4)
    assert np.all(out.data[:2] == 0)  # outside the moving field of view


def test_non_overlapping_pair_is_refused_naming_both_files(h, tmp_path):
    aff = h.psr_oblique_affine()
    far = aff.copy()
    far[:3, 3] += 500.0
    t2 = load_volume(h.write_nifti(tmp_path / "sub_T2w.nii.gz", np.ones((6, 6, 6), np.float32), aff))
    st = load_volume(h.write_nifti(tmp_path / "sub_STIR.nii.gz", np.ones((6, 6, 6), np.float32), far))
    for call in (lambda: align_pair(t2, st), lambda: resample_to(st, t2), lambda: align_pair(t2, st, register=True)):
        with pytest.raises(InputError) as exc:
            call()
        msg = str(exc.value)
        assert "sub_STIR.nii.gz" in msg and "sub_T2w.nii.gz" in msg and "do not overlap" in msg.replace("does", "do")
        assert "\n" not in msg


def test_ncc_properties():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 7))
    assert ncc(x, 2 * x + 3) == pytest.approx(1.0)
    assert ncc(x, -x) == pytest.approx(-1.0)
    assert ncc(x, np.ones_like(x)) == 0.0
    y = x.copy()
    y[0] = rng.standard_normal((6, 7))
    mask = np.zeros(x.shape, bool)
    mask[1:] = True
    assert ncc(x, y, mask) == pytest.approx(1.0)
    assert ncc(x, y) < 1.0


def test_rigid_register_recovers_a_known_motion(h):
    t2w, _, _ = h.synthetic_subject((22, 26, 20), seed=4)
    aff = h.psr_oblique_affine(spacing=(1.5, 1.5, 1.5))
    fixed = Volume(ndimage.gaussian_filter(t2w, 1.0), aff)
    center = (aff @ np.append((np.asarray(fixed.shape) - 1) / 2, 1))[:3]
    true = rigid_matrix(np.array([3.0, -2.0, 2.5, 2.0, -1.5, 1.0]), center)
    vox = np.linalg.inv(aff) @ true @ aff  # moving(y) = fixed(T y): the subject moved
    moving = Volume(ndimage.affine_transform(fixed.data, vox[:3, :3], vox[:3, 3], order=1), aff)

    out, report = rigid_register(moving, fixed, mask=fixed.data > 50)
    assert report["improved"]
    assert report["ncc_after"] > 0.98
    assert report["ncc_after"] > report["ncc_before"] + 0.05
    found = rigid_matrix(np.r_[report["params"]["rotation_deg"], report["params"]["translation_mm"]], center)
    residual = found @ true  # found should undo the motion
    assert np.abs(residual[:3, :3] - np.eye(3)).max() < 0.03  # < ~1.5 degrees
    assert np.abs(residual[:3, 3]).max() < 1.0  # mm
    assert out.shape == fixed.shape and np.allclose(out.affine, fixed.affine)


def test_align_pair_reports(h):
    t2w, stir, _ = h.synthetic_subject((12, 14, 10), seed=2)
    aff = h.psr_oblique_affine()
    a, b = Volume(t2w, aff), Volume(stir, aff)
    out, rep = align_pair(a, b)
    assert out is b and rep["same_grid"] and not rep["resampled"] and rep["overlap"] == 1.0
    assert rep["ncc_before"] == rep["ncc_after"] == pytest.approx(ncc(t2w, stir))

    finer = aff.copy()
    finer[:3, :3] *= 0.5  # STIR on a 2x finer grid over the same region
    fine = resample_to(b, Volume(np.zeros((24, 28, 20), np.float32), finer), order=1)
    out, rep = align_pair(a, fine)
    assert rep["resampled"] and not rep["same_grid"] and rep["overlap"] > 0.9
    assert out.shape == a.shape and np.allclose(out.affine, a.affine)
    assert rep["ncc_after"] > 0.5  # back on the T2w grid, the anatomy lines up
