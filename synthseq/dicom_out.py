"""A synthesized volume as a new DICOM series over its source series' geometry, for PACS.

:func:`write_dicom_series` writes one classic single-frame **MR Image Storage** instance per source slice:

* geometry of the source slice it replaces (ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
  SliceThickness, FrameOfReferenceUID), so viewers link it to the T2w slice by slice;
* the source's **Patient** and **General Study** (and Patient Study) attributes, so it files into the same
  study; a new SeriesInstanceUID and new SOPInstanceUIDs (``2.25.<uuid>``, never reused);
* ``ImageType = DERIVED\\SECONDARY\\OTHER\\SYNTHETIC`` (value 3 is required for MR images; no defined term
  fits a synthesized contrast, so OTHER), a SeriesDescription starting with ``SYNTHETIC``, DerivationDescription
  naming synthseq, its version and the checkpoint (path and SHA-256), ImageComments saying it is not an acquired image,
  a SourceImageSequence pointing at the source instance, Manufacturer ``synthseq``;
* 16-bit unsigned pixels with one RescaleSlope / RescaleIntercept for the whole series, chosen from the volume's
  minimum and maximum so that no value is clipped; decoded values equal the float volume within half a rescale step
  (plus float32 rounding when decoded in float32, as :func:`synthseq.io.load_volume` does).

The acquisition attributes of the MR Image module (ScanningSequence, RepetitionTime, EchoTime, ...) are the
source's: they describe the acquisition the image was derived from, as for any DERIVED image.

Why pydicom and not highdicom: pydicom is already a dependency, and highdicom has no constructor for a classic
(single-frame) MR image (its legacy converter makes Enhanced MR multi-frame objects, which many PACS still display
poorly); the attributes above are few enough to set by hand, and ``dciodvfy`` (dicom3tools) checks them in the
tests when it is installed.

The series is written into a temporary folder beside the output and renamed into place only when every file was
written; an existing output folder is replaced only with ``overwrite`` and only if it holds nothing but a synthseq
series.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import InputError
from .io import Volume

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SERIES_PREFIX = "SYNTHETIC"
MANUFACTURER = "synthseq"
MAX_STORED = 65535  # 16-bit unsigned

#: Tags each source file must hold for a derived series to be written (keyword: why).
REQUIRED_TAGS = {
    "StudyInstanceUID": "the derived series joins the source's study",
    "SeriesInstanceUID": "the source series is referenced",
    "SOPInstanceUID": "each derived image references its source image",
    "SOPClassUID": "each derived image references its source image",
    "FrameOfReferenceUID": "the derived series shares the source's frame of reference",
    "ImagePositionPatient": "geometry",
    "ImageOrientationPatient": "geometry",
    "PixelSpacing": "geometry",
    "Rows": "geometry",
    "Columns": "geometry",
}
PATIENT_TAGS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "EthnicGroup", "PatientComments",
    "PatientSpeciesDescription", "PatientBreedDescription", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "QualityControlSubject",
)
STUDY_TAGS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "ReferringPhysicianIdentificationSequence",
    "StudyID", "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence", "AdmittingDiagnosesDescription", "PatientAge",
    "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory",
)
PATIENT_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_TYPE2 = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: MR acquisition attributes copied from the source (Type 2 ones set empty when the source lacks them).
MR_TAGS = (
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName", "RepetitionTime",
    "EchoTime", "EchoTrainLength", "InversionTime", "NumberOfAverages", "ImagingFrequency", "ImagedNucleus",
    "MagneticFieldStrength", "FlipAngle", "SliceThickness", "SpacingBetweenSlices", "BodyPartExamined",
    "PatientPosition", "PositionReferenceIndicator",
)
MR_TYPE2 = ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength", "RepetitionTime", "SliceThickness",
            "PatientPosition", "PositionReferenceIndicator")


# ----------------------------------------------------------------------------------------- source series
def _pydicom():
    import pydicom

    return pydicom


def read_source_series(folder: str | Path) -> list[Any]:
    """The image datasets of the DICOM series in ``folder``, in the order :func:`synthseq.io.load_volume` stacks
    them (by position along the slice normal); non-DICOM files are skipped.

    Raises:
        InputError: no DICOM image in the folder.
    """
    pydicom = _pydicom()
    folder = Path(folder)
    datasets = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(str(f))
        except Exception:  # noqa: BLE001 - non-DICOM files in the folder are skipped, as load_volume does
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            ds.filename = str(f)
            datasets.append(ds)
    if not datasets:
        raise InputError(f"{folder}: folder holds no readable DICOM image")
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=np.float64), normal)))
    return datasets


def check_source_series(folder: str | Path) -> list[Any]:
    """Read the source series and check it can carry a derived series (see :data:`REQUIRED_TAGS`).

    Raises:
        InputError: one line naming the first file lacking a required tag, or a folder mixing studies / series.
    """
    datasets = read_source_series(folder)
    for ds in datasets:
        for tag, why in REQUIRED_TAGS.items():
            value = ds.get(tag)
            if value is None or value == "" or (isinstance(value, Sequence) and not isinstance(value, str)
                                                 and len(value) == 0):
                raise InputError(f"{ds.filename}: DICOM tag {tag} is missing or empty; cannot write a derived "
                                 f"series ({why})")
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds.get(tag)) for ds in datasets}
        if len(values) > 1:
            raise InputError(f"{folder}: its DICOM files hold {len(values)} different {tag} values; put one series "
                             f"per folder")
    return datasets


def _series_affine(datasets: Sequence[Any]) -> np.ndarray:
    """RAS+ affine of the sorted series, computed as :func:`synthseq.io.load_volume` does."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for ds in datasets])
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    if len(datasets) > 1:
        slice_spacing = float(np.median(np.diff(positions @ normal)))
    else:
        slice_spacing = float(getattr(datasets[0], "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# ------------------------------------------------------------------------------------------------ output
def _is_ours(folder: Path) -> bool:
    """True when every file in ``folder`` is a DICOM image written by :func:`write_dicom_series`."""
    pydicom = _pydicom()
    for f in folder.iterdir():
        if not f.is_file():
            return False
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - anything unreadable is not ours
            return False
        if ds.get("Manufacturer") != MANUFACTURER or not str(ds.get("SeriesDescription", "")).startswith(SERIES_PREFIX):
            return False
    return True


def check_output_folder(out: str | Path, source: str | Path, overwrite: bool = False) -> None:
    """Refuse (InputError) an output folder that is the source, a file, or a non-empty folder (with
    ``overwrite``: a non-empty folder that holds anything but a synthseq series)."""
    out, source = Path(out), Path(source)
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise InputError(f"{out}: the DICOM output must be outside the input series folder {source}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: DICOM output must be a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out}: already exists and is not empty (use --overwrite to replace a synthseq series)")
        if not _is_ours(out):
            raise InputError(f"{out}: holds files that are not a synthseq DICOM series; refusing to replace it")


def _ds(value: float) -> str:
    """A DICOM Decimal String (at most 16 characters) for ``value``."""
    for digits in range(10, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot write {value!r} as a DICOM DS")  # pragma: no cover


def rescale_for(vmin: float, vmax: float) -> tuple[str, str]:
    """``(RescaleSlope, RescaleIntercept)`` as DS strings such that every value in ``[vmin, vmax]`` is stored in
    ``[0, 65535]`` by ``round((v - intercept) / slope)`` with the *written* (decimal) slope and intercept."""
    vmin, vmax = float(vmin), float(vmax)
    span = vmax - vmin
    slope = span / (MAX_STORED - 2) if span > 0 else 1.0  # 2 codes of margin for the decimal rounding
    for _ in range(100):
        s, i = _ds(slope), _ds(vmin)
        sv, iv = float(s), float(i)
        if (vmin - iv) / sv >= -0.5 and (vmax - iv) / sv <= MAX_STORED + 0.49:
            return s, i
        slope *= 1.0 + 1e-6
        vmin -= abs(sv) * 0.5
    raise ValueError(f"no 16-bit rescale found for [{vmin}, {vmax}]")  # pragma: no cover


def _copy(dst: Any, src: Any, tags: Sequence[str], type2: Sequence[str] = ()) -> None:
    for tag in tags:
        if tag in src:
            dst[tag] = src[tag]
    for tag in type2:
        if tag not in dst:
            setattr(dst, tag, "")


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def write_dicom_series(volume: Volume, source: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
                       checkpoint_sha256: str | None = None, input_key: str = "T2w", overwrite: bool = False,
                       now: _dt.datetime | None = None) -> Path:
    """Write ``volume`` (on the grid of the DICOM series in ``source``) as a new derived MR series in ``out``.

    Args:
        volume: ``(cols, rows, slices)`` float volume with the affine :func:`synthseq.io.load_volume` gives the
            source series (e.g. the pseudo-STIR synthesized from it).
        source: the input DICOM series folder.
        out: folder to create (``IM_0001.dcm`` ... in slice order).
        checkpoint, checkpoint_sha256: named in DerivationDescription.
        input_key: the source's sequence name for the descriptions.
        overwrite: replace an existing synthseq series in ``out``.
        now: creation time (default now).

    Returns:
        ``out``.

    Raises:
        InputError: a source file lacks a required tag, the volume is not on the source grid, or ``out`` is refused
            (see :func:`check_output_folder`).
    """
    pydicom = _pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    source, out = Path(source), Path(out)
    check_output_folder(out, source, overwrite)
    sources = check_source_series(source)
    data = np.asarray(volume.data, dtype=np.float64)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if data.shape != (cols, rows, len(sources)) or not np.allclose(volume.affine, _series_affine(sources), atol=1e-3):
        raise InputError(f"{source}: the volume to write (shape {data.shape}) is not on this DICOM series' grid "
                         f"({cols}, {rows}, {len(sources)})")
    if not np.isfinite(data).all():
        raise InputError(f"{source}: the volume to write holds NaN or infinite values")
    slope_s, icpt_s = rescale_for(float(data.min()), float(data.max()))
    slope, icpt = float(slope_s), float(icpt_s)
    lo, hi = np.percentile(data, [0.5, 99.5])
    now = now or _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    series_uid = generate_uid(prefix=None)
    first = sources[0]
    src_desc = str(first.get("SeriesDescription", "") or input_key)
    ckpt_text = f"checkpoint {checkpoint}" if checkpoint is not None else "an in-memory model"
    if checkpoint_sha256:
        ckpt_text += f" (sha256 {checkpoint_sha256})"
    derivation = _truncate(
        f"SYNTHETIC pseudo-STIR computed by synthseq {__version__} from the {input_key} series "
        f"{first.SeriesInstanceUID} with {ckpt_text}; not an acquired image; research only, not for diagnosis",
        1024)
    try:
        number = int(first.get("SeriesNumber")) + 1000
    except (TypeError, ValueError):
        number = 1000

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for k, src in enumerate(sources):
            ds = Dataset()
            if "SpecificCharacterSet" in src:
                ds.SpecificCharacterSet = src.SpecificCharacterSet
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = generate_uid(prefix=None)
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
            _copy(ds, src, PATIENT_TAGS, PATIENT_TYPE2)
            _copy(ds, src, STUDY_TAGS, STUDY_TYPE2)
            # General Series
            ds.Modality = "MR"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SeriesDate, ds.SeriesTime = date, time
            ds.SeriesDescription = _truncate(f"{SERIES_PREFIX} pseudo-STIR from {src_desc}", 64)
            if "Laterality" in src:
                ds.Laterality = src.Laterality
            elif "BodyPartExamined" not in src:  # Type 2C: with no body part named, "unknown" (empty) it is
                ds.Laterality = ""
            # Frame of Reference, General Equipment
            ds.FrameOfReferenceUID = src.FrameOfReferenceUID
            ds.Manufacturer = MANUFACTURER
            ds.ManufacturerModelName = "synthseq pseudo-STIR"
            ds.SoftwareVersions = __version__
            # General Image + reference to the source image
            ds.InstanceNumber = k + 1
            ds.ContentDate, ds.ContentTime = date, time
            # value 3 is required for MR images; OTHER: no defined term fits a synthesized contrast
            ds.ImageType = ["DERIVED", "SECONDARY", "OTHER", "SYNTHETIC"]
            ds.DerivationDescription = derivation
            ds.ImageComments = _truncate("SYNTHETIC IMAGE (pseudo-STIR generated by synthseq), not acquired; "
                                         "research only, not for diagnosis", 10240)
            ref = Dataset()
            ref.ReferencedSOPClassUID = src.SOPClassUID
            ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
            ds.SourceImageSequence = [ref]
            ds.LossyImageCompression = "00"
            ds.BurnedInAnnotation = "NO"
            # Image Plane (the source slice's own geometry)
            ds.ImagePositionPatient = src.ImagePositionPatient
            ds.ImageOrientationPatient = src.ImageOrientationPatient
            ds.PixelSpacing = src.PixelSpacing
            if "SliceLocation" in src:
                ds.SliceLocation = src.SliceLocation
            # MR Image (the source acquisition's parameters; see the module docstring)
            _copy(ds, src, MR_TAGS, MR_TYPE2)
            if "ScanningSequence" not in ds:
                ds.ScanningSequence = "RM"
            if "SequenceVariant" not in ds:
                ds.SequenceVariant = "NONE"
            seq = ds.ScanningSequence
            if "IR" in ([seq] if isinstance(seq, str) else list(seq)) and "InversionTime" not in ds:
                ds.InversionTime = ""
            # Image Pixel + rescale + window
            frame = data[:, :, k].T  # (rows, cols): see synthseq.io._load_dicom_series
            stored = np.rint((frame - icpt) / slope)
            if stored.min() < 0 or stored.max() > MAX_STORED:  # rescale_for guarantees this; never clip silently
                raise AssertionError("rescale would clip")  # pragma: no cover
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, cols
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleIntercept, ds.RescaleSlope = icpt_s, slope_s
            ds.WindowCenter = _ds(float((lo + hi) / 2))
            ds.WindowWidth = _ds(float(max(hi - lo, slope)))
            ds.PixelData = stored.astype("<u2").tobytes()
            ds["PixelData"].VR = "OW"
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            pydicom.dcmwrite(tmp / f"IM_{k + 1:04d}.dcm", ds, enforce_file_format=True)
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out`` (an empty or checked ``out`` is moved aside first, then removed)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["check_output_folder", "check_source_series", "read_source_series", "rescale_for", "write_dicom_series"]
