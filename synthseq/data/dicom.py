"""DICOM studies: a folder holding many series (any depth, any file names) sorted by series, like dcm2niix, with
each series's sequence recognised from its tags.

Recognition (:func:`recognise`), first match wins:

1. a user override (``--series 7=STIR``: by SeriesNumber, SeriesInstanceUID or exact SeriesDescription);
2. ``STIR``: ``stir`` / ``tirm`` / ``tir`` in SeriesDescription or ProtocolName, or an inversion-recovery
   ScanningSequence (``IR``) with InversionTime 130-250 ms (short-tau inversion recovery at 1.5-3 T);
3. ``T1w`` / ``T2w``: ``t1`` / ``t2`` in the description or protocol (an IR series with a long TI is a FLAIR and
   stays unrecognised);
4. anything else (localizers, DWI, ...) is left out and listed.

:func:`import_study` writes the recognised series as NIfTI into a BIDS-style subject folder
(``OUT/sub-<id>/anat/sub-<id>_<key>.nii.gz``, readable by :func:`synthseq.data.layout.load_subjects`), plus
``OUT/sub-<id>/series.tsv`` naming every series and what it became. A series that is mixed or incomplete
(different sizes or orientations, duplicated or missing slices, no PixelSpacing) or two series claiming one key
stop the import with one line naming the series; nothing is written then.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import dicom_series_name, dicom_series_volume, read_dicom_folder, save_volume

#: Inversion times (ms) read as STIR when the scanning sequence is inversion recovery.
STIR_TI_MS = (130.0, 250.0)
_STIR_WORDS = re.compile(r"(?<![a-z])(stir|tirm|tir)(?![a-z])")


@dataclass
class Series:
    """One DICOM series of a study: its tags of interest and its images (pydicom datasets)."""

    uid: str
    number: int | None
    description: str
    protocol: str
    scanning_sequence: str
    inversion_time_ms: float | None
    datasets: list = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return dicom_series_name(self.datasets[0])


def sort_series(datasets: list) -> list[Series]:
    """Group images by SeriesInstanceUID, ordered by SeriesNumber (then UID)."""
    groups: dict[str, list] = {}
    for ds in datasets:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "") or ""), []).append(ds)
    out = []
    for uid, items in groups.items():
        ds = items[0]
        number = getattr(ds, "SeriesNumber", None)
        ti = getattr(ds, "InversionTime", None)
        scan = getattr(ds, "ScanningSequence", "")
        scan = "\\".join(scan) if isinstance(scan, (list, tuple)) or type(scan).__name__ == "MultiValue" else str(scan)
        out.append(Series(uid, int(number) if number not in (None, "") else None,
                          str(getattr(ds, "SeriesDescription", "") or ""), str(getattr(ds, "ProtocolName", "") or ""),
                          scan, float(ti) if ti not in (None, "") else None, items))
    return sorted(out, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def recognise(series: Series, overrides: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """``(key or None, why)`` for one series (see the module docstring)."""
    for ident in (str(series.number), series.uid, series.description):
        if overrides and ident in overrides:
            return overrides[ident], "user override"
    text = f"{series.description} {series.protocol}".lower()
    inversion = "IR" in series.scanning_sequence.upper().split("\\")
    ti = series.inversion_time_ms
    if _STIR_WORDS.search(text):
        return "STIR", "description names STIR/TIRM"
    if inversion and ti is not None and STIR_TI_MS[0] <= ti <= STIR_TI_MS[1]:
        return "STIR", f"inversion recovery with TI {ti:g} ms"
    if inversion and ti is not None and ti > STIR_TI_MS[1]:
        return None, f"inversion recovery with TI {ti:g} ms (FLAIR-like, not STIR)"
    for key, pat in (("T1w", r"t1"), ("T2w", r"t2")):
        if re.search(rf"(?<![a-z0-9]){pat}(?![0-9])", text):
            return key, f"description names {key[:2]}"
    return None, "not recognised (use --series NUMBER=KEY)"


def import_study(study: str | Path, out: str | Path, subject: str | None = None,
                 overrides: Mapping[str, str] | None = None, overwrite: bool = False) -> tuple[Path, list[dict]]:
    """Sort ``study`` by series, recognise each, write the recognised ones as NIfTI (module docstring).

    Returns ``(subject folder, rows)`` with one row per series: number, description, key (or ""), why, file.
    """
    study, out = Path(study), Path(out)
    if not study.is_dir():
        raise InputError(f"{study}: no such DICOM study folder")
    series = sort_series(read_dicom_folder(study))
    sid = subject or _subject_id(series[0].datasets[0], study)
    if not re.fullmatch(r"sub-[A-Za-z0-9]+", sid):
        raise InputError(f"--subject {sid}: expected sub-<letters and digits>, e.g. sub-01")
    dest = out / sid
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise InputError(f"{dest}: already exists (use --overwrite to replace it)")
    known = {str(s.number) for s in series} | {s.uid for s in series} | {s.description for s in series}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise InputError(f"--series {unknown[0]}: no series with that number, UID or description in {study}")
    rows, claimed, volumes = [], {}, {}
    for s in series:
        key, why = recognise(s, overrides)
        if key is not None and key in claimed:
            raise InputError(f"{study}: {claimed[key].name} and {s.name} are both recognised as {key}; choose one "
                             f"with --series {s.number}=other or --series {claimed[key].number}=other")
        if key is not None and key != "other":
            claimed[key] = s
            volumes[key] = dicom_series_volume(s.datasets, f"{study} {s.name}")
        rows.append({"series": s.number, "description": s.description, "images": len(s.datasets),
                     "key": key if key not in (None, "other") else "", "why": why,
                     "file": f"anat/{sid}_{key}.nii.gz" if key in volumes else ""})
    if not volumes:
        raise InputError(f"{study}: no series recognised as T2w, STIR or T1w ({', '.join(s.name for s in series)}); "
                         "use --series NUMBER=KEY")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sid}.", dir=out))
    try:
        for key, vol in volumes.items():
            save_volume(vol, tmp / "anat" / f"{sid}_{key}.nii.gz")
        lines = ["series\tdescription\timages\tkey\twhy\tfile"]
        lines += ["\t".join(str(r[c]) for c in ("series", "description", "images", "key", "why", "file"))
                  for r in rows]
        (tmp / "series.tsv").write_text("\n".join(lines) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest, rows


def _subject_id(ds, study: Path) -> str:
    raw = str(getattr(ds, "PatientID", "") or study.name)
    return "sub-" + (re.sub(r"[^A-Za-z0-9]", "", raw) or "01")


__all__ = ["Series", "import_study", "recognise", "sort_series"]
