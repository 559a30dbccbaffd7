"""Volumes in and out: NIfTI (and DICOM series) -> :class:`Volume` -> NIfTI, geometry kept exactly.

A :class:`Volume` is a 3D array plus its voxel-to-world affine (RAS+, millimetres), the NIfTI header it
came with and the path it came from. Everything downstream carries a Volume, never a bare array, so
outputs can always be written back on the input's grid.

Orientation helpers answer "which array axis runs left-right / anterior-posterior / superior-inferior"
for any affine (including oblique ones and PSR/LAS/RAS storage), so sagittal slices are always taken
along the volume's own left-right axis.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError
from .utils import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")

# World axes of nibabel's RAS+ convention, and the letter of each axis' positive / negative end.
_WORLD_AXIS = {"LR": 0, "AP": 1, "SI": 2}
_POSITIVE_END = "RAS"
_NEGATIVE_END = "LPI"


@dataclass
class Volume:
    """A 3D image with its geometry.

    Attributes:
        data: ``(X, Y, Z)`` array in storage order, float32 intensities in scanner units.
        affine: ``(4, 4)`` voxel index -> RAS+ world millimetres.
        header: the NIfTI header it was read with (keeps on-disk dtype, scaling, descriptions), or None.
        path: where it was read from, or None.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Three-letter orientation code, e.g. ``"PSR"``: the end each array axis points towards."""
        return orientation_code(self.affine)

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<volume>"

    def with_data(self, data: np.ndarray) -> Volume:
        """A new Volume on the same grid (affine, header) holding ``data`` (same spatial shape)."""
        data = np.asarray(data)
        if data.shape[:3] != self.data.shape[:3]:
            raise ValueError(f"shape {data.shape} does not match the grid {self.data.shape}")
        header = self.header.copy() if self.header is not None else None
        return Volume(data=data, affine=self.affine.copy(), header=header, path=None)


# --------------------------------------------------------------------------------------------- orientation
def orientation_code(affine: np.ndarray) -> str:
    """Orientation code of an affine, e.g. ``"RAS"``, ``"PSR"``, ``"LAS"`` (closest axes if oblique)."""
    return "".join(nib.aff2axcodes(np.asarray(affine)))


def anatomical_axis(affine: np.ndarray, axis: str) -> tuple[int, int]:
    """Array axis that runs along an anatomical direction, and its sign.

    Args:
        affine: ``(4, 4)`` voxel -> RAS+ world affine (oblique allowed: the closest axis is chosen).
        axis: ``"LR"``, ``"AP"`` or ``"SI"``.

    Returns:
        ``(array_axis, sign)`` where sign is +1 if increasing the index moves towards R / A / S and -1
        if it moves towards L / P / I.
    """
    if axis not in _WORLD_AXIS:
        raise ValueError(f"axis must be one of {sorted(_WORLD_AXIS)}, got {axis!r}")
    ornt = nib.orientations.io_orientation(np.asarray(affine))
    world = _WORLD_AXIS[axis]
    for array_axis, (w, flip) in enumerate(ornt):
        if int(w) == world:
            return array_axis, int(flip)
    raise ValueError(f"affine has no axis along {axis}: {affine}")  # pragma: no cover - singular affine


def sagittal_axis(affine: np.ndarray) -> int:
    """The array axis along left-right: sagittal slices are taken across it."""
    return anatomical_axis(affine, "LR")[0]


# ---------------------------------------------------------------------------------------------------- load
def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def check_volume_data(data: np.ndarray, name: str, *, allow_zero: bool = False) -> None:
    """Raise :class:`InputError` naming ``name`` if ``data`` is not a finite, non-empty 3D array."""
    if data.ndim != 3:
        kind = f"{data.ndim}D"
        raise InputError(f"{name}: expected a 3D volume, got a {kind} image of shape {tuple(data.shape)}")
    if min(data.shape) < 1:
        raise InputError(f"{name}: empty volume of shape {tuple(data.shape)}")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        raise InputError(f"{name}: {bad} voxel(s) are NaN or infinite")
    if not allow_zero and not np.any(data):
        raise InputError(f"{name}: every voxel is zero (empty image)")


def load_volume(path: str | Path, *, allow_zero: bool = False) -> Volume:
    """Read a NIfTI file (``.nii``/``.nii.gz``) or a folder holding one DICOM series.

    Trailing singleton dimensions (e.g. ``(X, Y, Z, 1)``) are dropped; anything else that is not 3D,
    or that has NaN/inf voxels, or is all zero (unless ``allow_zero``) raises :class:`InputError`
    with a one-line message naming the file.

    Returns:
        A :class:`Volume` whose ``data`` is float32 in scanner units (NIfTI scaling applied).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_dicom_series(path, allow_zero=allow_zero)
    if not _is_nifti(path):
        raise InputError(f"{path}: not a NIfTI file (expected .nii or .nii.gz) or a DICOM folder")
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            img = nib.Nifti1Image.from_image(img)
        check_nifti_header(img, path)  # before any voxel is read: size, voxel type, geometry
        data = _scaled(img)
        if path.name.endswith(".gz"):
            _check_gzip(path)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read as NIfTI ({reason}); the file may be corrupt or truncated") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    check_volume_data(data, str(path), allow_zero=allow_zero)
    header = img.header.copy()
    return Volume(data=data, affine=img.affine, header=header, path=path)


#: Largest volume read (voxels): 2**30 is 4 GiB as float32, far above any MRI series (512 x 512 x 400 is 1e8),
#: and refuses a header that claims e.g. 2000^3 voxels before numpy tries to allocate them.
MAX_VOXELS = 2**30


def check_nifti_header(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse, from the header alone, what cannot be a grey-level 3D volume: more than :data:`MAX_VOXELS`
    voxels, RGB/complex voxel types, and a voxel-to-world affine that is singular or not finite."""
    shape = tuple(int(n) for n in img.header.get_data_shape())
    voxels = 1
    for n in shape:
        voxels *= max(n, 0)
    if voxels > MAX_VOXELS:
        raise InputError(f"{path}: the header claims {' x '.join(map(str, shape))} = {voxels:.3g} voxels, more than "
                         f"the {MAX_VOXELS:.3g} synthseq reads (a corrupt header, or not one MR volume)")
    dtype = img.header.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        kind = "RGB/colour" if dtype.fields is not None else "complex"
        raise InputError(f"{path}: {kind} voxels ({dtype}); expected grey-level intensities (one value per voxel)")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: the voxel-to-world affine has NaN or infinite entries")
    linear = affine[:3, :3]
    if np.linalg.matrix_rank(linear) < 3 or np.linalg.cond(linear) > 1e8:
        zooms = ", ".join(f"{z:g}" for z in np.linalg.norm(linear, axis=0))
        raise InputError(f"{path}: singular voxel-to-world affine (voxel sizes {zooms} mm); the header's "
                         "sform/qform or pixdim is broken")


def _check_gzip(path: Path) -> None:
    """Read a gzip stream to its end so its CRC and length are verified (nibabel stops at the last voxel, so a
    damaged deflate stream could otherwise go unnoticed); raises OSError / EOFError / zlib.error."""
    with gzip.open(path, "rb") as fh:
        while fh.read(1 << 22):
            pass


def _scaled(img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Voxel values with NIfTI slope/intercept applied, as float32, reading every byte (catches truncation)."""
    return np.asarray(img.get_fdata(dtype=np.float32))


def read_dicom_folder(folder: Path) -> list:
    """Every DICOM image (pydicom datasets with pixels and geometry tags) under ``folder``, any depth; other files
    are skipped. InputError naming the folder when there is none."""
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - pydicom is a dependency
        raise InputError(f"{folder}: reading DICOM needs pydicom (pip install pydicom)") from exc

    datasets = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=False)
        except Exception:  # noqa: BLE001 - non-DICOM files in the folder are skipped
            continue
        if "PixelData" in ds:
            ds.filename = str(f)
            datasets.append(ds)
    if not datasets:
        raise InputError(f"{folder}: folder holds no NIfTI file and no readable DICOM image")
    return datasets


def _load_dicom_series(folder: Path, *, allow_zero: bool) -> Volume:
    """Read the one DICOM series of ``folder`` (:func:`dicom_series_volume`); a folder holding several series is
    refused with their names (``synthseq dataset import-dicom`` sorts a study folder by series)."""
    datasets = read_dicom_folder(folder)
    series: dict[str, list] = {}
    for ds in datasets:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append(ds)
    if len(series) > 1:
        names = ", ".join(dicom_series_name(v[0]) for v in series.values())
        raise InputError(f"{folder}: holds {len(series)} DICOM series ({names}); put one series per folder or "
                         "sort the study with synthseq dataset import-dicom")
    return dicom_series_volume(datasets, str(folder), allow_zero=allow_zero, path=folder)


def dicom_series_name(ds) -> str:
    """``series 5 'T2_TSE_SAG'``: how messages name a DICOM series."""
    number = getattr(ds, "SeriesNumber", None)
    desc = str(getattr(ds, "SeriesDescription", "") or getattr(ds, "ProtocolName", "") or "")
    return f"series {number if number is not None else '?'}" + (f" {desc!r}" if desc else "")


#: Slice steps may differ from the median step by this fraction before a gap (a missing slice) is reported.
DICOM_GAP_TOLERANCE = 0.1


def dicom_series_volume(datasets: list, name: str, *, allow_zero: bool = False, path: Path | None = None) -> Volume:
    """One DICOM series (a list of single-frame pydicom datasets) -> :class:`Volume`, slices sorted by position
    along the slice normal.

    Refused with one line naming ``name`` (and the files concerned): an image without PixelSpacing,
    ImagePositionPatient or ImageOrientationPatient; slices of different sizes or orientations; two slices at one
    position (a duplicated or mixed series); a gap in the positions (a missing slice: a step more than
    :data:`DICOM_GAP_TOLERANCE` off the median step).
    """
    for ds in datasets:
        fname = Path(str(getattr(ds, "filename", "") or "?")).name
        for tag in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"):
            if tag not in ds or ds.get(tag) in (None, ""):
                raise InputError(f"{name}: {fname} has no {tag}; cannot place its pixels in mm")
    first = datasets[0]
    first_name = Path(str(getattr(first, "filename", "") or "?")).name
    size0 = (int(first.Rows), int(first.Columns))
    iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    spacing0 = tuple(float(v) for v in first.PixelSpacing)
    for ds in datasets[1:]:
        fname = Path(str(getattr(ds, "filename", "") or "?")).name
        size = (int(ds.Rows), int(ds.Columns))
        if size != size0:
            raise InputError(f"{name}: slices of different sizes ({size0[0]}x{size0[1]} in {first_name}, "
                             f"{size[0]}x{size[1]} in {fname}): a mixed series")
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=np.float64), iop, atol=1e-4):
            raise InputError(f"{name}: slices of different orientations ({first_name}, {fname}): a mixed series")
        if not np.allclose([float(v) for v in ds.PixelSpacing], spacing0, rtol=1e-4):
            raise InputError(f"{name}: slices of different pixel spacings ({first_name}, {fname}): a mixed series")
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    datasets = sorted(datasets, key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=np.float64),
                                                            normal)))
    positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for ds in datasets])
    row_spacing, col_spacing = spacing0
    if len(datasets) > 1:
        along = positions @ normal
        steps = np.diff(along)
        dup = np.flatnonzero(steps < 1e-3)
        if dup.size:
            a, b = (Path(str(getattr(datasets[i], "filename", "?"))).name for i in (dup[0], dup[0] + 1))
            raise InputError(f"{name}: two slices share one position ({along[dup[0]]:.2f} mm along the slice "
                             f"normal: {a}, {b}); a duplicated or mixed series")
        slice_spacing = float(np.median(steps))
        off = np.flatnonzero(np.abs(steps - slice_spacing) > DICOM_GAP_TOLERANCE * slice_spacing)
        if off.size:
            k = int(off[0])
            raise InputError(f"{name}: a gap of {steps[k]:.2f} mm between the slices at {along[k]:.2f} and "
                             f"{along[k + 1]:.2f} mm along the normal (slice spacing {slice_spacing:.2f} mm); a "
                             "slice is missing or the series is incomplete")
    else:
        slice_spacing = float(getattr(datasets[0], "SliceThickness", 1.0) or 1.0)

    frames = []
    for ds in datasets:
        arr = ds.pixel_array.astype(np.float32)
        if arr.ndim != 2:
            raise InputError(f"{name}: {Path(str(getattr(ds, 'filename', '?'))).name} holds {arr.ndim}D pixel "
                             "data; expected single-frame grey-level slices")
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        frames.append(arr * slope + intercept)
    # pixel_array is (rows, cols): index i runs along the column direction (down rows), j along rows.
    # Store as (cols=j, rows=i, slice) so array axis 0 follows row_dir, axis 1 follows col_dir.
    data = np.stack([f.T for f in frames], axis=-1)

    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM is LPS+, NIfTI world is RAS+
    check_volume_data(data, name, allow_zero=allow_zero)
    return Volume(data=data, affine=affine, header=None, path=path)


# ---------------------------------------------------------------------------------------------------- save
def save_volume(
    volume: Volume,
    path: str | Path,
    *,
    dtype: np.dtype | type | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` as NIfTI with its exact affine, atomically (temporary name, then rename).

    Args:
        volume: what to write; its affine is stored as both qform and sform.
        path: ``.nii`` or ``.nii.gz`` destination.
        dtype: on-disk data type. Default: the source header's dtype when the volume came from a file
            (so an int16 input round-trips as int16), else float32. Never uint8 unless asked for.
        overwrite: refuse to replace an existing file unless True. Writing onto the volume's own
            source path is always refused: inputs are never overwritten.
    """
    path = Path(path)
    if not _is_nifti(path):
        raise InputError(f"{path}: output must end in .nii or .nii.gz")
    if volume.path is not None and path.exists() and path.resolve() == Path(volume.path).resolve():
        raise InputError(f"{path}: refusing to overwrite the input file")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (pass overwrite to replace it)")
    data = np.asarray(volume.data)
    header = volume.header.copy() if volume.header is not None else nib.Nifti1Header()
    if dtype is None:
        dtype = header.get_data_dtype() if volume.header is not None else np.float32
    dtype = np.dtype(dtype)
    exact_int = False
    if np.issubdtype(dtype, np.integer) and data.size:
        # integral values that fit the on-disk type are stored as they are (slope 1): an int16 input
        # round-trips exactly; otherwise nibabel would rescale float data to the type's full range
        info = np.iinfo(dtype)
        exact_int = bool(np.all(data == np.round(data)) and data.min() >= info.min and data.max() <= info.max)
        if exact_int:
            data = data.astype(dtype)
    img = nib.Nifti1Image(data, volume.affine, header=header)
    img.set_data_dtype(dtype)
    if np.issubdtype(dtype, np.floating) or exact_int:
        img.header.set_slope_inter(1.0, 0.0)  # stored unscaled
    else:
        img.header.set_slope_inter(np.nan, np.nan)  # let nibabel pick a scale if values need one
    img.set_qform(volume.affine, code=int(header["qform_code"]) or 1)
    img.set_sform(volume.affine, code=int(header["sform_code"]) or 1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def describe_volume(volume: Volume, percentiles: tuple[float, ...] = (1, 50, 99)) -> dict:
    """Summary for ``synthseq info``: shape, voxel size (mm), orientation code, dtype, percentiles."""
    on_disk = str(volume.header.get_data_dtype()) if volume.header is not None else str(volume.data.dtype)
    pct = np.percentile(volume.data, percentiles)
    return {
        "path": volume.name,
        "shape": list(volume.shape),
        "voxel_size_mm": [round(s, 4) for s in volume.spacing],
        "orientation": volume.orientation,
        "dtype": on_disk,
        "percentiles": {f"p{p:g}": float(v) for p, v in zip(percentiles, pct)},
    }
