"""DICOM studies (several series in one folder, sorted and recognised) and the reader's refusals of bad series:
duplicate positions, a gap, slices of different sizes, missing PixelSpacing -- one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.data.layout import load_subjects
from synthseq.errors import InputError
from synthseq.io import load_volume

ROWS, COLS = 6, 5


def _series(folder: Path, number: int, description: str, *, n=4, gap=3.0, scan="SE", ti=None, size=None,
            positions=None, drop_spacing=None, seed=0, patient="P001", protocol=None) -> list[Path]:
    """Write one axial series (files named by a running counter, so several series mix in one folder)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid, rng, files = generate_uid(), np.random.default_rng(seed), []
    positions = positions if positions is not None else [k * gap for k in range(n)]
    for k, z in enumerate(positions):
        rows, cols = size[k] if size is not None else (ROWS, COLS)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality, ds.PatientID = uid, number, "MR", patient
        ds.SeriesDescription, ds.ProtocolName = description, protocol or description
        ds.ScanningSequence = scan
        if ti is not None:
            ds.InversionTime = ti
        ds.Rows, ds.Columns = rows, cols
        if drop_spacing != k:
            ds.PixelSpacing = ["0.9", "0.8"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["-10", "-12", f"{z:.3f}"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = (rng.integers(1, 1000, (rows, cols)) + 1000 * number).astype(np.int16).tobytes()
        path = folder / f"{len(list(folder.iterdir())):05d}"
        ds.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return files


def _study(root: Path) -> Path:
    _series(root / "DICOM", 3, "t2_tse_ax", seed=1)
    _series(root / "DICOM", 5, "ax_ir_fs", scan="IR", ti=160, seed=2)  # STIR by its inversion time
    _series(root / "DICOM" / "sub", 1, "localizer", n=3, scan="GR", seed=3)  # nested folder; not recognised
    (root / "DICOM" / "DICOMDIR.txt").write_text("not DICOM")
    return root / "DICOM"


def test_study_with_three_series_is_sorted_and_recognised(tmp_path, capsys):
    study = _study(tmp_path)
    with pytest.raises(InputError) as exc:  # a plain series reader refuses the mixed folder, naming the series
        load_volume(study)
    msg = str(exc.value)
    assert "holds 3 DICOM series" in msg and "series 3 't2_tse_ax'" in msg and "import-dicom" in msg
    out = tmp_path / "data"
    assert main(["dataset", "import-dicom", str(study), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "series 5 'ax_ir_fs' (4 images): STIR (inversion recovery with TI 160 ms)" in printed
    assert "series 1 'localizer' (3 images): skipped" in printed
    subjects = load_subjects(out)
    assert [s.id for s in subjects] == ["sub-P001"] and sorted(subjects[0].paths) == ["STIR", "T2w"]
    t2 = load_volume(subjects[0].path("T2w"))
    stir = load_volume(subjects[0].path("STIR"))
    assert t2.shape == (COLS, ROWS, 4) and t2.spacing == pytest.approx((0.8, 0.9, 3.0))
    assert t2.data.min() >= 3000 and t2.data.max() < 4000  # the T2w's own pixels (series 3)
    assert stir.data.min() >= 5000
    tsv = (out / "sub-P001" / "series.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["series", "description", "images", "key", "why", "file"] and len(tsv) == 4
    # user override: the localizer as T1w, by series number; overriding an unknown series is refused
    assert main(["dataset", "import-dicom", str(study), "--out", str(out), "--subject", "sub-02",
                 "--series", "1=T1w"]) == 0
    assert sorted({s.id: s for s in load_subjects(out)}["sub-02"].paths) == ["STIR", "T1w", "T2w"]
    assert main(["dataset", "import-dicom", str(study), "--out", str(out), "--subject", "sub-03",
                 "--series", "9=T1w"]) == 2
    err = capsys.readouterr().err
    assert "--series 9: no series with that number" in err and not (out / "sub-03").exists()


@pytest.mark.parametrize("description, scan, ti, key", [
    ("sag STIR", "SE", None, "STIR"), ("t2_tirm_sag", "IR", None, "STIR"), ("anything", "IR", 200.0, "STIR"),
    ("t2_flair", "IR", 2500.0, None), ("T1 TSE SAG", "SE", None, "T1w"), ("T2_TSE_SAG", "SE", None, "T2w"),
    ("DWI b1000", "EP", None, None),
])
def test_recognition_rules(description, scan, ti, key):
    from synthseq.data.dicom import Series, recognise

    s = Series("1.2", 4, description, "", scan, ti, [])
    assert recognise(s)[0] == key


def test_two_series_for_one_key_are_named(tmp_path, capsys):
    _series(tmp_path / "st", 3, "t2_tse_sag", seed=1)
    _series(tmp_path / "st", 4, "t2_tse_ax", seed=2)
    assert main(["dataset", "import-dicom", str(tmp_path / "st"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "series 3 't2_tse_sag' and series 4 't2_tse_ax' are both recognised as T2w" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
    assert main(["dataset", "import-dicom", str(tmp_path / "st"), "--out", str(tmp_path / "o"),
                 "--series", "4=other"]) == 0


@pytest.mark.parametrize("kw, phrase", [
    (dict(positions=[0.0, 3.0, 3.0, 6.0]), "two slices share one position (3.00 mm along the slice normal"),
    (dict(positions=[0.0, 5.0, 25.0, 30.0]), "a gap of 20.00 mm between the slices at 5.00 and 25.00 mm"),
    (dict(size=[(6, 5), (6, 5), (8, 8), (6, 5)]), "slices of different sizes (6x5 in"),
    (dict(drop_spacing=2), "has no PixelSpacing; cannot place its pixels in mm"),
])
def test_bad_series_one_line_exit_2_nothing_written(tmp_path, capsys, kw, phrase):
    _series(tmp_path / "series", 3, "t2_tse_ax", **kw)
    with pytest.raises(InputError) as exc:
        load_volume(tmp_path / "series")
    assert phrase in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(tmp_path / "series"))
    out = tmp_path / "out.nii.gz"
    assert main(["resample", str(tmp_path / "series"), "--like", str(tmp_path / "series"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1 and not out.exists()
    # the study importer names the series
    assert main(["dataset", "import-dicom", str(tmp_path / "series"), "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "series 3 't2_tse_ax'" in err and phrase in err and not (tmp_path / "data").exists()
