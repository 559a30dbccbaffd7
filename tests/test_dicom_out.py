"""synthseq.dicom_out: a DICOM series input gives a new derived DICOM series on the same geometry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from synthseq import __version__
from synthseq.cli import main
from synthseq.dicom_out import rescale_for, write_dicom_series
from synthseq.errors import InputError
from synthseq.io import load_volume

ROWS, COLS, SLICES = 20, 24, 5
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, checkpoint_writer) -> Path:
    torch.set_num_threads(1)
    return checkpoint_writer(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def write_series(folder: Path, drop: dict[int, str] | None = None, body_part: str | None = None) -> Path:
    """A sagittal T2w MR series of SLICES files (names not in spatial order); ``drop``: {slice: tag} to leave out."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rr, cc = np.mgrid[0:ROWS, 0:COLS]
    for k in range(SLICES):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = MR, generate_uid()
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "P123", "19700101", "F"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study, "20240102", "101500"
        ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "Ref^Doc", "S1", "ACC42"
        ds.StudyDescription = "C-SPINE TRAUMA"
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = "MR", series, 3, "T2 SAG"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.Manufacturer = "ACME"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "SK", "", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 3820, 105, 16
        ds.SliceThickness, ds.SpacingBetweenSlices, ds.PatientPosition = 3, 3, "HFS"
        if body_part:
            ds.BodyPartExamined = body_part
        # sagittal: rows run superior -> inferior, columns anterior -> posterior; slices right -> left
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [10.0 - 3.0 * k, -12.0, 30.0]
        ds.PixelSpacing = [1.0, 1.1]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        body = ((rr - ROWS / 2) / 8.0) ** 2 + ((cc - COLS / 2) / 10.0) ** 2 < 1
        img = (body * (600 + 300 * np.sin(rr / 3.0 + k) * np.cos(cc / 4.0)) + 20 + 3 * k).astype(np.uint16)
        ds.PixelData = img.tobytes()
        for tag in (drop or {}).get(k, "").split():
            del ds[tag]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        pydicom.dcmwrite(folder / f"slice_{(k * 3) % SLICES}.dcm", ds, enforce_file_format=True)
    (folder / "README.txt").write_text("not DICOM")  # skipped, as load_volume skips it
    return folder


def _read(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda d: int(d.InstanceNumber))


def _source_sorted(folder: Path) -> list[pydicom.Dataset]:
    ds = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    return sorted(ds, key=lambda d: -float(d.ImagePositionPatient[0]))  # along the normal (-x)


def test_dicom_round_trip_geometry_values_and_fresh_uids(tmp_path, ckpt):
    src = write_series(tmp_path / "t2w")
    nii, out = tmp_path / "out" / "pseudo.nii.gz", tmp_path / "out" / "pseudo_dicom"
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(nii),
                 "--dicom-out", str(out), "--device", "cpu"]) == 0
    got, source = _read(out), _source_sorted(src)
    assert len(got) == SLICES and sorted(p.name for p in out.iterdir())[0] == "IM_0001.dcm"
    # fresh UIDs: one new series, every instance new and distinct; study and patient kept
    assert len({d.SeriesInstanceUID for d in got}) == 1
    assert got[0].SeriesInstanceUID != source[0].SeriesInstanceUID
    sops = {d.SOPInstanceUID for d in got}
    assert len(sops) == SLICES and not sops & {d.SOPInstanceUID for d in source}
    for d, s in zip(got, source):
        assert d.SOPClassUID == MR and d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.StudyInstanceUID == s.StudyInstanceUID and d.AccessionNumber == "ACC42"
        assert (d.PatientName, d.PatientID, d.PatientBirthDate, d.PatientSex) == ("Doe^Jane", "P123", "19700101", "F")
        assert d.FrameOfReferenceUID == s.FrameOfReferenceUID
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"] and d.ImageType[-1] == "SYNTHETIC"
        assert d.SeriesDescription.startswith("SYNTHETIC") and "T2 SAG" in d.SeriesDescription
        assert "synthseq" in d.DerivationDescription and str(ckpt.resolve()) in d.DerivationDescription
        assert __version__ in d.DerivationDescription and "not for diagnosis" in d.DerivationDescription
        assert d.Manufacturer == "synthseq" and d.SeriesNumber == 1003
        assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID
        # same geometry slice by slice
        np.testing.assert_allclose([float(v) for v in d.ImagePositionPatient], [float(v) for v in s.ImagePositionPatient])
        np.testing.assert_allclose([float(v) for v in d.ImageOrientationPatient],
                                   [float(v) for v in s.ImageOrientationPatient])
        assert [float(v) for v in d.PixelSpacing] == [1.0, 1.1] and float(d.SliceThickness) == 3.0
        assert (d.Rows, d.Columns) == (ROWS, COLS)
    # the NIfTI's sidecar names the DICOM folder with one digest over its files
    side = json.loads(nii.with_name("pseudo.json").read_text())
    assert side["InputFiles"][0]["Path"] == str(src.resolve()) and side["InputFiles"][0]["Files"] == SLICES + 1
    assert len(side["InputFiles"][0]["SHA256"]) == 64
    # read back as a volume: the input's affine; values equal the NIfTI output within half a rescale step
    back, ref, t2w = load_volume(out), nib.load(str(nii)), load_volume(src)
    np.testing.assert_allclose(back.affine, t2w.affine, atol=1e-6)
    np.testing.assert_allclose(ref.affine, t2w.affine, atol=1e-6)
    slope = float(got[0].RescaleSlope)
    pred = ref.get_fdata(dtype=np.float32)
    assert back.shape == pred.shape
    # half a step, plus float32 rounding (load_volume decodes slope * stored + intercept in float32)
    assert np.max(np.abs(back.data - pred)) <= slope / 2 + 4 * np.finfo(np.float32).eps * np.abs(pred).max()
    # no value clipped: the extremes are representable, and the stored range stays inside 16 bits
    stored = np.stack([d.pixel_array for d in got])
    assert stored.min() >= 0 and stored.max() <= 65535 and stored.max() > 60000
    assert abs(back.data.max() - pred.max()) <= slope and abs(back.data.min() - pred.min()) <= slope


def test_rerun_refuses_then_overwrite_replaces_only_a_synthseq_series(tmp_path, ckpt):
    src = write_series(tmp_path / "t2w")
    out = tmp_path / "dcm"
    args = ["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--device", "cpu", "--dicom-out", str(out)]
    assert main([*args, "--output", str(tmp_path / "a.nii.gz")]) == 0
    first = {d.SOPInstanceUID for d in _read(out)}
    assert main([*args, "--output", str(tmp_path / "b.nii.gz")]) == 2  # non-empty folder refused
    assert not (tmp_path / "b.nii.gz").exists()
    assert main([*args, "--output", str(tmp_path / "a.nii.gz"), "--overwrite"]) == 0
    again = {d.SOPInstanceUID for d in _read(out)}
    assert len(again) == SLICES and not again & first  # a rerun makes new instances, never reuses UIDs
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a synthseq DICOM series"):
        write_dicom_series(load_volume(src), src, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="outside the input series folder"):
        write_dicom_series(load_volume(src), src, src / "sub")


@pytest.mark.parametrize("drop", [{2: "SeriesInstanceUID"}, {k: "StudyInstanceUID" for k in range(SLICES)}])
def test_missing_series_tag_is_one_line_exit_2_and_nothing_written(tmp_path, ckpt, capsys, drop):
    src = write_series(tmp_path / "t2w", drop=drop)
    tag = next(iter(drop.values()))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output",
                 str(tmp_path / "o.nii.gz"), "--dicom-out", str(tmp_path / "dcm"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("synthseq: error: ")
    assert f"DICOM tag {tag} is missing" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_dicom_out_needs_a_dicom_input(tmp_path, ckpt, capsys):
    img = nib.Nifti1Image(np.ones((4, 8, 8), np.float32), np.eye(4))
    nib.save(img, str(tmp_path / "x_T2w.nii.gz"))
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x_T2w.nii.gz"), "--output",
                 str(tmp_path / "o.nii.gz"), "--dicom-out", str(tmp_path / "dcm"), "--device", "cpu"]) == 2
    assert "--dicom-out needs a DICOM series folder" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "dcm").exists()


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1234.5, 98765.4321), (3.0, 3.0), (1e-7, 2e-7), (-5e6, 7e6)])
def test_rescale_never_clips(lo, hi):
    s, i = rescale_for(lo, hi)
    assert len(s) <= 16 and len(i) <= 16
    slope, icpt = float(s), float(i)
    stored = np.rint((np.array([lo, hi]) - icpt) / slope)
    assert stored.min() >= 0 and stored.max() <= 65535
    assert np.all(np.abs(stored * slope + icpt - np.array([lo, hi])) <= slope / 2 * (1 + 1e-6) + 1e-12)


@pytest.mark.parametrize("body_part", [None, "CSPINE"])
def test_series_passes_dciodvfy(tmp_path, ckpt, body_part):
    """dicom3tools' validator finds no error in the written series (CI requires it: SYNTHSEQ_REQUIRE_DCIODVFY=1)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        if os.environ.get("SYNTHSEQ_REQUIRE_DCIODVFY") == "1":
            pytest.fail("dciodvfy (Debian package dicom3tools) is required here but not installed")
        pytest.skip("dciodvfy (dicom3tools) not installed")
    src = write_series(tmp_path / "t2w", body_part=body_part)
    out = tmp_path / "dcm"
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output",
                 str(tmp_path / "o.nii.gz"), "--dicom-out", str(out), "--device", "cpu"]) == 0
    for f in sorted(out.iterdir()):
        res = subprocess.run([exe, str(f)], capture_output=True, text=True, timeout=60)
        report = res.stdout + res.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"
        assert "MRImage" in report  # it validated the MR Image IOD
