"""Dataset layouts (phantom, CSV, BIDS) and subject-level splits."""

from __future__ import annotations

import numpy as np
import pytest

from synthseq.data.layout import (
    Subject,
    load_subjects,
    read_manifest_csv,
    scan_phantom_layout,
    split_subjects,
)
from synthseq.errors import ConfigError, InputError


def test_scan_phantom_layout(layout):
    subjects = scan_phantom_layout(layout)
    assert [s.id for s in subjects] == ["sub-0001", "sub-0002", "sub-0003"]
    assert set(subjects[1].paths) == {"T2w", "STIR", "labels"}
    assert subjects[1].path("STIR") == layout / "sub-0002" / "sub-0002_STIR.nii.gz"
    assert load_subjects(layout)[0].paths == subjects[0].paths
    with pytest.raises(InputError, match="sub-0001: no T1w file"):
        subjects[0].path("T1w")


def test_layout_ignores_foreign_files(layout):
    (layout / "sub-0001" / "notes.txt").write_text("x")
    (layout / "sub-0001" / "other_T2w.nii.gz").write_bytes(b"")  # not <subject>_<key>
    (layout / "dataset.json").write_text("{}")
    assert set(scan_phantom_layout(layout)[0].paths) == {"T2w", "STIR", "labels"}


def test_empty_dataset_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sub-0001").mkdir()  # a subject folder without images does not count
    with pytest.raises(InputError) as exc:
        load_subjects(empty)
    msg = str(exc.value)
    assert str(empty) in msg and "holds no subjects" in msg and "\n" not in msg
    with pytest.raises(InputError, match="no such dataset folder"):
        load_subjects(tmp_path / "missing")


def test_csv_manifest_relative_and_absolute_paths(layout, tmp_path):
    csv = layout / "manifest.csv"
    t2 = layout / "sub-0002" / "sub-0002_T2w.nii.gz"
    csv.write_text("subject,T2w,STIR\n"
                   "a,sub-0001/sub-0001_T2w.nii.gz,sub-0001/sub-0001_STIR.nii.gz\n"
                   f"b,{t2},\n")
    subjects = load_subjects(csv)
    assert [s.id for s in subjects] == ["a", "b"]
    assert subjects[0].paths["T2w"] == layout / "sub-0001" / "sub-0001_T2w.nii.gz"
    assert subjects[1].paths == {"T2w": t2}  # empty cell: no STIR for b
    assert read_manifest_csv(csv)[0].paths == subjects[0].paths


@pytest.mark.parametrize("text, phrase", [
    ("subject,T2w\na,missing.nii.gz\n", "line 2 (a) T2w file"),
    ("id,T2w\na,x.nii.gz\n", "no 'subject' column"),
    ("subject,T2w\n", "lists no subjects"),
    ("subject,T2w\na,\na,\n", "listed twice"),
])
def test_bad_csv_manifests(tmp_path, text, phrase):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(InputError) as exc:
        load_subjects(csv)
    assert str(csv) in str(exc.value) and phrase in str(exc.value)


def _subjects(n: int) -> list[Subject]:
    return [Subject(f"sub-{i:04d}", {}) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_split_is_subject_level_disjoint_and_complete(n):
    subjects = _subjects(n)
    parts = split_subjects(subjects, 0.2, 0.2, seed=3)
    ids = {k: [s.id for s in v] for k, v in parts.items()}
    assert set(ids) == {"train", "val", "test"}
    all_ids = ids["train"] + ids["val"] + ids["test"]
    assert sorted(all_ids) == sorted(s.id for s in subjects)  # each subject exactly once
    assert len(set(all_ids)) == n
    assert len(ids["train"]) >= 1
    if n == 20:
        assert (len(ids["val"]), len(ids["test"])) == (4, 4)


def test_split_is_deterministic_and_order_independent():
    subjects = _subjects(15)
    a = split_subjects(subjects, 0.2, 0.2, seed=7)
    rev = split_subjects(list(reversed(subjects)), 0.2, 0.2, seed=7)
    assert {k: [s.id for s in v] for k, v in a.items()} == {k: [s.id for s in v] for k, v in rev.items()}
    others = [split_subjects(subjects, 0.2, 0.2, seed=s)["test"] for s in range(5)]
    assert len({tuple(x.id for x in t) for t in others}) > 1  # the seed matters


def test_split_slices_never_leak(layout):
    """Slices of a subject only ever come from its own split (split before slicing)."""
    parts = split_subjects(load_subjects(layout), 0.34, 0.34, seed=0)
    files = {k: {p for s in v for p in s.paths.values()} for k, v in parts.items()}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"])


def test_split_rejects_bad_fractions():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        split_subjects(_subjects(4), -0.1, 0.2)
    with pytest.raises(ConfigError, match="must be < 1"):
        split_subjects(_subjects(4), 0.5, 0.5)
    with pytest.raises(InputError, match="sub-0000: subject id appears more than once"):
        split_subjects(_subjects(2) + _subjects(2), 0.2, 0.2)


def test_split_uses_the_seeded_permutation():
    """Independent re-implementation of the documented rule on a small case."""
    subjects = _subjects(10)
    parts = split_subjects(subjects, 0.3, 0.2, seed=11)
    order = np.random.default_rng(11).permutation(10)
    assert [s.id for s in parts["test"]] == sorted(f"sub-{i:04d}" for i in order[:2])
    assert [s.id for s in parts["val"]] == sorted(f"sub-{i:04d}" for i in order[2:5])
