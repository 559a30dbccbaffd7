"""Subjects and cohort table for the downstream models (subject-level splits: :func:`synthseq.data.layout.split_subjects`
with ``stratify=``, the package's one split rule).

A downstream data folder has the phantom's layout (``docs/overview.md``)::

    DIR/cohort.csv                      one row per subject (clinical variables, imaging flags, outcomes)
    DIR/dataset.json                    optional (the phantom's generator record, incl. "cohort_model")
    DIR/sub-0001/sub-0001_T2w.nii.gz    and _STIR / _labels / _lesions .nii.gz (same grid)

The cohort is read with the standard library (no pandas): :class:`Cohort` keeps the raw strings and converts
columns on demand, so a missing or malformed column raises a one-line :class:`InputError` naming the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .tasks import task_names

#: The built-in imaging flags the classifiers predict and outcomes the outcome models predict (0/1 per subject);
#: :mod:`synthseq.downstream.tasks` is the registry (registered tasks are accepted too).
LABEL_COLUMNS = task_names("finding")
OUTCOME_COLUMNS = task_names("outcome")

#: File suffix of each sequence / map in a subject folder.
SUFFIXES = {"t2w": "_T2w.nii.gz", "stir": "_STIR.nii.gz", "labels": "_labels.nii.gz", "lesions": "_lesions.nii.gz",
            "pseudostir": "_pseudoSTIR.nii.gz"}


@dataclass
class Cohort:
    """The cohort table: ``subjects`` in file order and every column as raw strings."""

    path: Path
    subjects: list[str]
    columns: dict[str, list[str]]

    def require(self, names) -> None:
        """Raise InputError naming every column of ``names`` the table lacks."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise InputError(f"{self.path}: missing cohort column(s) {', '.join(missing)}")

    def numeric(self, name: str) -> np.ndarray:
        """Column ``name`` as float64 ``(N,)``; empty cells become NaN."""
        self.require([name])
        out = np.empty(len(self.subjects))
        for i, raw in enumerate(self.columns[name]):
            raw = raw.strip()
            try:
                out[i] = float(raw) if raw else np.nan
            except ValueError:
                raise InputError(f"{self.path}: column {name!r} row {i + 2} is not a number: {raw!r}") from None
        return out

    def flag(self, name: str) -> np.ndarray:
        """0/1 column ``name`` as int64 ``(N,)``; anything else raises InputError."""
        x = self.numeric(name)
        if np.isnan(x).any() or not np.isin(x, (0, 1)).all():
            raise InputError(f"{self.path}: column {name!r} must hold only 0 or 1")
        return x.astype(np.int64)

    def text(self, name: str) -> list[str]:
        self.require([name])
        return [v.strip() for v in self.columns[name]]

    def subset(self, subjects) -> Cohort:
        """Rows of ``subjects`` (in that order); unknown subjects raise InputError."""
        index = {s: i for i, s in enumerate(self.subjects)}
        missing = [s for s in subjects if s not in index]
        if missing:
            raise InputError(f"{self.path}: subject(s) not in the cohort: {', '.join(missing[:5])}")
        rows = [index[s] for s in subjects]
        return Cohort(self.path, list(subjects), {k: [v[r] for r in rows] for k, v in self.columns.items()})


def cohort_path(data: str | Path) -> Path:
    """``DIR/cohort.csv`` for a folder, or the CSV itself."""
    data = Path(data)
    path = data / "cohort.csv" if data.is_dir() else data
    if not path.is_file():
        raise InputError(f"{path}: cohort table not found (expected a phantom-layout folder or a CSV)")
    return path


def read_cohort(data: str | Path) -> Cohort:
    """Read ``cohort.csv`` (folder or file). Needs a ``subject`` column with unique, non-empty ids."""
    path = cohort_path(data)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "subject" not in reader.fieldnames:
            raise InputError(f"{path}: missing cohort column(s) subject")
        rows = list(reader)
    if not rows:
        raise InputError(f"{path}: the cohort table has no rows")
    names = [f.strip() for f in reader.fieldnames]
    columns = {n: [(r.get(f) or "") for r in rows] for n, f in zip(names, reader.fieldnames)}
    subjects = [s.strip() for s in columns["subject"]]
    if any(not s for s in subjects) or len(set(subjects)) != len(subjects):
        raise InputError(f"{path}: column 'subject' must hold unique, non-empty ids")
    return Cohort(path, subjects, columns)


def read_dataset_json(data: str | Path) -> dict:
    """``DIR/dataset.json`` as a dict ({} when absent)."""
    path = Path(data) / "dataset.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def subject_file(root: str | Path, subject: str, kind: str, *, required: bool = True) -> Path | None:
    """Path of ``kind`` (a key of :data:`SUFFIXES`) for ``subject``: ``root/subject/subject<suffix>`` or flat."""
    root = Path(root)
    name = subject + SUFFIXES[kind]
    for cand in (root / subject / name, root / name):
        if cand.is_file():
            return cand
    if required:
        raise InputError(f"{root / subject / name}: no such file")
    return None


def check_labels(names, allowed=None, what: str = "label") -> list[str]:
    """Return ``names`` as a list, raising ConfigError for a name outside ``allowed`` (default: the registered
    findings; ``what="target"``: the registered outcomes)."""
    from ..errors import ConfigError

    if allowed is None:
        allowed = task_names("outcome" if what == "target" else "finding")
    names = list(names)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ConfigError(f"unknown {what} name(s) {', '.join(map(repr, bad))} (known: {', '.join(allowed)})")
    if not names:
        raise ConfigError(f"at least one {what} is needed (known: {', '.join(allowed)})")
    return names
