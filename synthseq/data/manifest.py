"""Subject records from a phantom-layout folder or a manifest CSV, and subject-level train/val/test splits.

Two sources describe the same thing, a list of :class:`Subject` (an id plus one file per sequence):

* a folder in the phantom's layout: ``ROOT/sub-0001/sub-0001_T2w.nii.gz``, ``..._STIR.nii.gz``,
  ``..._labels.nii.gz``, ``..._lesions.nii.gz`` (any ``<subject>_<key>.nii[.gz]`` file inside a subject folder
  is picked up under ``key``);
* a CSV with a ``subject`` column and one column per key, holding file paths relative to the CSV (absolute paths
  are kept; an empty cell means that subject has no such file).

Splits are made on subjects, never on slices, so no anatomy leaks between train, val and test.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from ..io import NIFTI_SUFFIXES

#: Sequence keys the package knows about (other keys are carried along untouched).
SEQUENCE_KEYS = ("T2w", "STIR", "T1w", "labels", "lesions")
SPLITS = ("train", "val", "test")


@dataclass
class Subject:
    """One subject: ``id`` (e.g. ``"sub-0001"``) and its files keyed by sequence (``"T2w"``, ``"STIR"`` ...)."""

    id: str
    paths: dict[str, Path] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.paths

    def path(self, key: str) -> Path:
        """The file of sequence ``key``; :class:`InputError` naming the subject if it has none."""
        if key not in self.paths:
            have = ", ".join(sorted(self.paths)) or "no files"
            raise InputError(f"{self.id}: no {key} file (has {have})")
        return self.paths[key]


def _strip_nifti(name: str) -> str | None:
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def scan_phantom_layout(root: str | Path) -> list[Subject]:
    """Subjects of a phantom-layout folder (``sub-XXXX/sub-XXXX_<key>.nii.gz``), sorted by id.

    Raises :class:`InputError` naming ``root`` if it does not exist or holds no subject folder with NIfTI files.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        prefix = folder.name + "_"
        paths: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            stem = _strip_nifti(f.name)
            if stem is not None and stem.startswith(prefix) and len(stem) > len(prefix) and f.is_file():
                paths[stem[len(prefix):]] = f
        if paths:
            subjects.append(Subject(folder.name, paths))
    if not subjects:
        raise InputError(f"{root}: dataset folder holds no subjects (expected sub-XXXX/sub-XXXX_T2w.nii.gz ...)")
    return subjects


def read_manifest_csv(path: str | Path) -> list[Subject]:
    """Subjects listed in a CSV (``subject`` column, then one column per key; paths relative to the CSV).

    Every listed file must exist; a missing column, duplicate subject or missing file raises
    :class:`InputError` naming the CSV (and the row).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
            fieldnames = rows and list(rows[0].keys())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read as a CSV manifest ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: manifest lists no subjects")
    if "subject" not in fieldnames:
        raise InputError(f"{path}: manifest has no 'subject' column (columns: {', '.join(map(str, fieldnames))})")
    subjects, seen = [], set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        sid = (row.get("subject") or "").strip()
        if not sid:
            raise InputError(f"{path}: line {line} has an empty subject id")
        if sid in seen:
            raise InputError(f"{path}: subject {sid!r} is listed twice (line {line})")
        seen.add(sid)
        paths: dict[str, Path] = {}
        for key, value in row.items():
            if key == "subject" or key is None or value is None or not value.strip():
                continue
            f = Path(value.strip())
            f = f if f.is_absolute() else path.parent / f
            if not f.exists():
                raise InputError(f"{path}: line {line} ({sid}) {key} file {f} does not exist")
            paths[key.strip()] = f
        subjects.append(Subject(sid, paths))
    return subjects


def load_subjects(source: str | Path) -> list[Subject]:
    """Subjects from a phantom-layout folder or a ``.csv`` manifest."""
    source = Path(source)
    if source.is_dir():
        return scan_phantom_layout(source)
    if source.suffix.lower() == ".csv":
        return read_manifest_csv(source)
    if not source.exists():
        raise InputError(f"{source}: no such dataset folder or manifest CSV")
    raise InputError(f"{source}: expected a dataset folder or a .csv manifest")


def split_subjects(
    subjects: Sequence[Subject],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[Subject]]:
    """Subject-level split into ``{"train", "val", "test"}``, deterministic for a given ``seed``.

    The result does not depend on the order of ``subjects`` (ids are sorted before shuffling). The val and
    test sizes are ``round(fraction * n)``, reduced where needed so that at least one subject trains. Within
    each split subjects are sorted by id.
    """
    for key, frac in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{key}: must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction + test_fraction}")
    ids = [s.id for s in subjects]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{dup}: subject id appears more than once")
    ordered = sorted(subjects, key=lambda s: s.id)
    n = len(ordered)
    if n == 0:
        return {name: [] for name in SPLITS}
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    while n_test + n_val > n - 1:  # keep one training subject: shrink the larger held-out part first
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    picked = [ordered[i] for i in order]
    parts = {"test": picked[:n_test], "val": picked[n_test: n_test + n_val], "train": picked[n_test + n_val:]}
    return {name: sorted(parts[name], key=lambda s: s.id) for name in SPLITS}


__all__ = ["SEQUENCE_KEYS", "Subject", "load_subjects", "read_manifest_csv", "scan_phantom_layout",
           "split_subjects"]
