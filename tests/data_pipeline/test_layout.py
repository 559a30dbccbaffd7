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


# ------------------------------------------------------------------------------------------------ BIDS
def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_bids_without_sessions_maps_stir_names(tmp_path):
    root = tmp_path / "bids"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    t2_1 = _touch(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    stir_1 = _touch(root / "sub-01" / "anat" / "sub-01_STIR.nii.gz")
    t2_2 = _touch(root / "sub-02" / "anat" / "sub-02_T2w.nii.gz")
    stir_2 = _touch(root / "sub-02" / "anat" / "sub-02_acq-stir_T2w.nii.gz")  # the other common STIR name
    _touch(root / "sub-02" / "anat" / "sub-02_T2w.json")  # sidecars are not images
    t1_3 = _touch(root / "sub-03" / "anat" / "sub-03_T1w.nii")
    subjects = load_subjects(root)
    assert [s.id for s in subjects] == ["sub-01", "sub-02", "sub-03"]
    assert subjects[0].paths == {"T2w": t2_1, "STIR": stir_1}
    assert subjects[1].paths == {"T2w": t2_2, "STIR": stir_2}  # acq-stir_T2w is the STIR, not a second T2w
    assert subjects[2].paths == {"T1w": t1_3} and subjects[2].group == "sub-03"


def test_bids_sessions_separate_or_grouped_and_user_patterns(tmp_path):
    root = tmp_path / "bids"
    for sub in ("sub-01", "sub-02"):
        for ses in ("ses-1", "ses-2"):
            _touch(root / sub / ses / "anat" / f"{sub}_{ses}_T2w.nii.gz")
            _touch(root / sub / ses / "anat" / f"{sub}_{ses}_acq-tirm_T2w.nii.gz")
    sep = load_subjects(root, bids={"STIR": "acq-tirm_T2w"})
    assert [s.id for s in sep] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1", "sub-02_ses-2"]
    assert sep[0].paths["STIR"].name == "sub-01_ses-1_acq-tirm_T2w.nii.gz"
    assert sep[0].paths["T2w"].name == "sub-01_ses-1_T2w.nii.gz"
    assert [s.group for s in sep] == [s.id for s in sep]
    grouped = load_subjects(root, bids={"STIR": ["acq-tirm_T2w"]}, sessions="grouped")
    assert [s.group for s in grouped] == ["sub-01", "sub-01", "sub-02", "sub-02"]
    for seed in range(6):  # grouped: a participant's sessions are always in one split
        parts = split_subjects(grouped, 0.0, 0.5, seed=seed)
        assert {s.group for s in parts["train"]}.isdisjoint({s.group for s in parts["test"]})
        assert len(parts["test"]) == 2
    # without the pattern the tirm file keeps its own key
    assert set(load_subjects(root)[0].paths) == {"T2w", "acq-tirm_T2w"}


def test_bids_flat_folder_of_bids_named_files(tmp_path):
    for sid in ("sub-01", "sub-03"):
        for acq in ("MToff", "MTon"):
            _touch(tmp_path / "mt" / f"{sid}_acq-{acq}_MTS.nii.gz")
    subjects = load_subjects(tmp_path / "mt", bids={"MToff": "acq-MToff_MTS", "MTon": "acq-MTon_MTS"})
    assert [(s.id, sorted(s.paths)) for s in subjects] == [("sub-01", ["MToff", "MTon"]), ("sub-03", ["MToff", "MTon"])]


@pytest.mark.parametrize("bids, sessions, phrase", [
    ({"STIR": 3}, "separate", "data.bids.STIR: expected an entity pattern"),
    ({}, "merged", "data.sessions: expected one of separate, grouped"),
])
def test_bad_bids_settings(tmp_path, bids, sessions, phrase):
    _touch(tmp_path / "b" / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    with pytest.raises(ConfigError) as exc:
        load_subjects(tmp_path / "b", bids=bids, sessions=sessions)
    assert phrase in str(exc.value) and "\n" not in str(exc.value)


def test_bids_two_files_for_one_key_are_named(tmp_path):
    a = _touch(tmp_path / "b" / "sub-01" / "anat" / "sub-01_STIR.nii.gz")
    b = _touch(tmp_path / "b" / "sub-01" / "anat" / "sub-01_STIR.nii")
    with pytest.raises(InputError) as exc:
        load_subjects(tmp_path / "b")
    msg = str(exc.value)
    assert str(a) in msg and str(b) in msg and "second STIR file for sub-01" in msg


# ---------------------------------------------------------------------------------------------- splits
def test_csv_split_column_is_a_split_not_a_file(layout):
    csv = layout / "manifest.csv"
    csv.write_text("subject,split,T2w,STIR\n"
                   "a,train,sub-0001/sub-0001_T2w.nii.gz,sub-0001/sub-0001_STIR.nii.gz\n"
                   "b,test,sub-0002/sub-0002_T2w.nii.gz,\n"
                   "c,val,sub-0003/sub-0003_T2w.nii.gz,sub-0003/sub-0003_STIR.nii.gz\n")
    subjects = load_subjects(csv)
    assert [(s.id, s.split, sorted(s.paths)) for s in subjects] == [
        ("a", "train", ["STIR", "T2w"]), ("b", "test", ["T2w"]), ("c", "val", ["STIR", "T2w"])]
    parts = split_subjects(subjects, 0.2, 0.2, seed=5)  # the column wins over the fractions
    assert {k: [s.id for s in v] for k, v in parts.items()} == {"train": ["a"], "val": ["c"], "test": ["b"]}


@pytest.mark.parametrize("text, phrase", [
    ("subject,split,T2w\na,holdout,\n", "line 2 (a) split 'holdout' is not one of train, val, test"),
    ("subject,split,T2w\na,train,\nb,,\n", "the split column is empty for b"),
])
def test_bad_split_columns(tmp_path, text, phrase):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(InputError) as exc:
        load_subjects(csv)
    assert str(exc.value).startswith(str(csv)) and phrase in str(exc.value)


def test_splits_file_json_and_csv(tmp_path):
    subjects = _subjects(4)
    js = tmp_path / "splits.json"
    js.write_text('{"train": ["sub-0000", "sub-0002"], "val": ["sub-0003"], "test": ["sub-0001"]}')
    cs = tmp_path / "splits.csv"
    cs.write_text("subject,split\nsub-0000,train\nsub-0002,train\nsub-0003,val\nsub-0001,test\n")
    for f in (js, cs):
        parts = split_subjects(subjects, 0.2, 0.2, splits_file=f)
        assert {k: [s.id for s in v] for k, v in parts.items()} == {
            "train": ["sub-0000", "sub-0002"], "val": ["sub-0003"], "test": ["sub-0001"]}
    js.write_text('{"train": ["sub-0000", "sub-0002"], "test": ["sub-0001"]}')
    with pytest.raises(InputError, match="subject 'sub-0003' of the dataset is in no split"):
        split_subjects(subjects, splits_file=js)
    js.write_text('{"train": ["sub-0000", "sub-0009"]}')
    with pytest.raises(InputError, match="subject 'sub-0009' is not in the dataset"):
        split_subjects(subjects, splits_file=js)
    js.write_text('{"train": ["sub-0000"], "test": ["sub-0000"]}')
    with pytest.raises(InputError, match="in more than one split"):
        split_subjects(subjects, splits_file=js)
    with pytest.raises(InputError, match="no such splits file"):
        split_subjects(subjects, splits_file=tmp_path / "nope.json")


def test_kfold_is_deterministic_disjoint_and_covers_everyone():
    subjects = _subjects(10)
    tests = []
    for fold in range(3):
        parts = split_subjects(subjects, 0.25, 0.0, seed=4, folds=3, fold=fold)
        again = split_subjects(list(reversed(subjects)), 0.25, 0.0, seed=4, folds=3, fold=fold)
        assert {k: [s.id for s in v] for k, v in parts.items()} == {k: [s.id for s in v] for k, v in again.items()}
        ids = [s.id for p in parts.values() for s in p]
        assert sorted(ids) == sorted(s.id for s in subjects)
        assert len(parts["val"]) == round(0.25 * (10 - len(parts["test"])))
        tests.append({s.id for s in parts["test"]})
    assert [len(t) for t in tests] == [3, 4, 3]  # nearly equal folds
    assert set.union(*tests) == {s.id for s in subjects} and sum(map(len, tests)) == 10  # each id tested once
    order = np.random.default_rng(4).permutation(10)  # the documented rule
    assert tests[0] == {f"sub-{i:04d}" for i in order[:3]}
    with pytest.raises(ConfigError, match=r"data.fold: must be in \[0, 2\]"):
        split_subjects(subjects, folds=3, fold=3)
    with pytest.raises(ConfigError, match="more folds than subject groups"):
        split_subjects(_subjects(2), folds=3)


def test_stratified_split_keeps_both_classes():
    ids = [f"s{i:02d}" for i in range(12)]
    y = np.array([1, 0] * 6)
    parts = split_subjects(ids, 0.0, 0.25, seed=0, stratify=y)
    assert parts["val"] == [] and len(parts["test"]) == 3
    label = dict(zip(ids, y))
    for part in ("train", "test"):
        assert {label[i] for i in parts[part]} == {0, 1}
