"""Seeding and atomic writes."""

import numpy as np
import pytest
import torch

from synthseq.utils import atomic_path, atomic_write_text, seed_everything


def test_seed_everything_repeats_all_generators():
    import random

    seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    dest = tmp_path / "out.nii.gz"
    atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp != dest
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]  # no temporary left behind


def test_atomic_path_gives_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        dest = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o644


def test_read_saved_model_names_the_file_and_the_problem(tmp_path):
    import pickle

    from synthseq.errors import InputError
    from synthseq.utils import read_saved_model

    def reader(p):
        return pickle.loads(p.read_bytes())

    good = tmp_path / "m.pkl"
    good.write_bytes(pickle.dumps({"format": "fmt-1", "x": 3}))
    assert read_saved_model(good, reader, "fmt-1", "outcome model")["x"] == 3
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"format": "fmt-2"}))
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    for path, what, message in [(tmp_path / "none.pkl", "outcome model", "none.pkl: no such model file"),
                                (junk, "outcome model", "junk.pkl: cannot read as an outcome model ("),
                                (junk, "classifier model", "junk.pkl: cannot read as a classifier model ("),
                                (other, "outcome model", "other.pkl: not a synthseq outcome model")]:
        with pytest.raises(InputError) as info:
            read_saved_model(path, reader, "fmt-1", what)
        assert message in str(info.value) and "\n" not in str(info.value)
