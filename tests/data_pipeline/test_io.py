"""synthseq.io: NIfTI round trips (real and synthetic oblique), `synthseq info`, DICOM series, bad inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthseq.cli import main
from synthseq.errors import InputError
from synthseq.io import anatomical_axis, load_volume, sagittal_axis, save_volume


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path, phrase: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert phrase in msg


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name, dtype", [("PSR_CROP", np.int16), ("RAS_FLOAT", np.float32)])
def test_real_round_trip_keeps_affine_shape_values_dtype(h, tmp_path, name, dtype):
    src = getattr(h, name)
    vol = load_volume(src, allow_zero=True)
    out = save_volume(vol, tmp_path / "copy.nii.gz")
    back = load_volume(out, allow_zero=True)
    assert back.shape == vol.shape
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.orientation == vol.orientation
    assert nib.load(str(out)).get_data_dtype() == np.dtype(dtype)
    raw_in = np.asanyarray(nib.load(str(src)).dataobj)
    raw_out = np.asanyarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(raw_out, raw_in)  # on-disk values, not only scaled floats


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_synthetic_oblique_round_trip(h, tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 3000, size=(7, 9, 5)).astype(dtype)
    affine = h.psr_oblique_affine(spacing=(0.7, 1.3, 2.1), angles=(12.0, -9.0, 20.0))
    src = h.write_nifti(tmp_path / "in.nii.gz", data, affine, dtype)
    vol = load_volume(src)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    back = load_volume(save_volume(vol, tmp_path / "out.nii"))
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, data.astype(np.float32))
    assert back.spacing == pytest.approx((0.7, 1.3, 2.1), abs=1e-5)


def test_save_is_atomic_and_never_overwrites_input(h, tmp_path):
    src = h.write_nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 4), np.float32), np.eye(4))
    vol = load_volume(src)
    with pytest.raises(InputError) as exc:
        save_volume(vol, src, overwrite=True)
    _one_line_naming(exc, src, "refusing to overwrite")
    save_volume(vol, tmp_path / "out.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.nii.gz"]  # no temp files left


def test_trailing_singleton_dimension_is_dropped(h, tmp_path):
    src = h.write_nifti(tmp_path / "v.nii.gz", np.arange(27, dtype=np.float32).reshape(3, 3, 3, 1) + 1, np.eye(4))
    assert load_volume(src).shape == (3, 3, 3)


# ------------------------------------------------------------------------------------------ orientation
def test_orientation_helpers_on_oblique_and_flipped_affines(h):
    aff = h.psr_oblique_affine(angles=(15.0, -10.0, 12.0))
    assert anatomical_axis(aff, "LR") == (2, 1)
    assert anatomical_axis(aff, "SI") == (1, 1)
    assert anatomical_axis(aff, "AP") == (0, -1)
    assert sagittal_axis(aff) == 2
    las = np.diag([-0.5, 0.5, 3.0, 1.0])
    assert anatomical_axis(las, "LR") == (0, -1)
    assert anatomical_axis(las, "SI") == (2, 1)


def test_info_reports_psr_and_1mm(h, capsys):
    assert main(["info", str(h.PSR_CROP)]) == 0
    out = capsys.readouterr().out
    assert "orientation PSR" in out
    assert "voxel 1 x 1 x 1 mm" in out
    assert "(60, 55, 52)" in out and "int16" in out


# ------------------------------------------------------------------------------------------------ DICOM
def _write_dicom_series(folder: Path, frames: np.ndarray, iop, ipps, pixel_spacing, slope, intercept) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    series = generate_uid()
    folder.mkdir()
    order = [2, 0, 3, 1]  # file names out of position order: the reader must sort by position
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.Modality = series, "MR"
        ds.Rows, ds.Columns = frames.shape[1:]
        ds.PixelSpacing = [str(v) for v in pixel_spacing]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipps[k]]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
        ds.PixelData = frames[k].astype(np.int16).tobytes()
        ds.save_as(str(folder / f"IM{n:04d}.dcm"), enforce_file_format=True)
    (folder / "README.txt").write_text("not a DICOM file; skipped\n")


def test_dicom_series_geometry_and_values_match_nifti(h, tmp_path):
    rng = np.random.default_rng(3)
    rows, cols, nslices = 5, 6, 4
    frames = rng.integers(0, 1000, size=(nslices, rows, cols)).astype(np.int16)
    rot = h.rotation(10.0, -6.0, 25.0)
    row_dir, col_dir = rot[:, 0], rot[:, 1]  # LPS directions of a row (along columns) and a column
    normal = np.cross(row_dir, col_dir)
    row_spacing, col_spacing, gap = 0.9, 0.7, 2.5  # PixelSpacing = [between rows, between columns]
    origin = np.array([-20.0, 35.0, 12.0])
    ipps = [origin + k * gap * normal for k in range(nslices)]
    folder = tmp_path / "series"
    _write_dicom_series(folder, frames, list(row_dir) + list(col_dir), ipps, (row_spacing, col_spacing), 2.0, -10.0)

    vol = load_volume(folder)
    assert vol.shape == (cols, rows, nslices)
    # independent expectation: voxel (i=column, j=row, k=slice) lies at IPP_k + i*Δc*row_dir + j*Δr*col_dir (LPS)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for i, j, k in [(0, 0, 0), (5, 4, 3), (2, 3, 1), (4, 1, 2)]:
        lps = ipps[k] + i * col_spacing * row_dir + j * row_spacing * col_dir
        np.testing.assert_allclose(vol.affine @ [i, j, k, 1], np.append(lps_to_ras @ lps, 1), atol=1e-4)
        assert vol.data[i, j, k] == pytest.approx(2.0 * frames[k, j, i] - 10.0)

    expected = np.transpose(frames, (2, 1, 0)).astype(np.float32) * 2.0 - 10.0  # (cols, rows, slices)
    ref = h.write_nifti(tmp_path / "same.nii.gz", expected, vol.affine)
    nifti = load_volume(ref)
    np.testing.assert_array_equal(vol.data, nifti.data)
    np.testing.assert_allclose(vol.affine, nifti.affine, atol=1e-4)
    again = load_volume(save_volume(vol, tmp_path / "from_dicom.nii.gz"))
    np.testing.assert_array_equal(again.data, vol.data)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-4)


# ------------------------------------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "no such file")


def test_truncated_gzip(h, tmp_path):
    blob = h.PSR_CROP.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "corrupt or truncated")


def test_corrupt_gzip_payload(h, tmp_path):
    blob = bytearray(h.PSR_CROP.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 64] = bytes(64)  # damage the deflate stream mid-file
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "cannot read as NIfTI")


@pytest.mark.parametrize("name, payload", [("notes.nii.gz", None), ("notes.nii", b"just some text\n" * 40),
                                           ("gz_text.nii.gz", gzip.compress(b"hello, not an image\n" * 40))])
def test_not_an_image(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload if payload is not None else b"subject,age\nsub-01,42\n")
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "cannot read as NIfTI")


def test_wrong_extension(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "not a NIfTI file")


@pytest.mark.parametrize("shape, phrase", [((6, 6, 6, 3), "got a 4D image"), ((8, 8), "got a 2D image")])
def test_wrong_dimensionality(h, tmp_path, shape, phrase):
    path = h.write_nifti(tmp_path / "bad.nii.gz", np.ones(shape, np.float32), np.eye(4))
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, phrase)


def test_all_zero(h, tmp_path):
    path = h.write_nifti(tmp_path / "zero.nii.gz", np.zeros((5, 5, 5), np.float32), np.eye(4))
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "every voxel is zero")
    assert load_volume(path, allow_zero=True).shape == (5, 5, 5)  # label maps may be empty


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(h, tmp_path, bad):
    data = np.ones((5, 5, 5), np.float32)
    data[1, 2, 3] = bad
    data[4, 0, 0] = bad
    path = h.write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4))
    with pytest.raises(InputError) as exc:
        load_volume(path)
    _one_line_naming(exc, path, "2 voxel(s) are NaN or infinite")


def test_folder_without_images(tmp_path):
    folder = tmp_path / "empty_series"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    with pytest.raises(InputError) as exc:
        load_volume(folder)
    _one_line_naming(exc, folder, "no readable DICOM image")
