"""Nothing the user did not name as output is ever written: inputs, a study's own files, existing outputs (without
--overwrite) and a run directory another training writes into are all refused, and stay byte-identical."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

STUDY_FILES = ["manifest.json", "key.csv", "tokens.json", "answers.sqlite"]


def _ensure_tokens_and_db(study):
    from synthseq.reader_study.access import load_or_create_tokens
    from synthseq.reader_study.store import AnswerStore

    load_or_create_tokens(study, ["R1", "R2"])
    AnswerStore(study / "answers.sqlite")


@pytest.mark.parametrize("name", [*STUDY_FILES, "cases/FIRST/stack.nii", "cases/FIRST/slice_000.png", "cases"])
def test_export_never_onto_the_studys_own_files(cli, study, name):
    _ensure_tokens_and_db(study)
    first = sorted(json.loads((study / "manifest.json").read_text())["cases"])[0]
    target = study / name.replace("FIRST", first)
    before = target.read_bytes() if target.is_file() else None
    cli("reader-study", "export", study, "--out", target, "--overwrite").refused(str(target))
    if before is not None:
        assert target.read_bytes() == before


def test_export_refuses_an_existing_file_without_overwrite(cli, study, tmp_path):
    out = tmp_path / "answers_export.csv"
    out.write_text("precious\n")
    cli("reader-study", "export", study, "--out", out).refused(str(out), "--overwrite")
    assert out.read_text() == "precious\n"
    assert cli("reader-study", "export", study, "--out", out, "--overwrite").rc == 0
    assert out.read_text().startswith("reader,position,case_id")
    # the default STUDY/answers.csv is the export's own slot: refreshed without --overwrite
    assert cli("reader-study", "export", study).rc == 0 and cli("reader-study", "export", study).rc == 0


@pytest.mark.parametrize("command", ["classify", "outcome"])
def test_predict_never_overwrites_its_input(cli, tiny_root, tmp_path, command):
    model = tmp_path / "model.bin"
    model.write_bytes(b"model bytes")
    cohort = tiny_root / "cohort.csv"
    before = cohort.read_bytes()
    for out, word in ((cohort, "--data"), (model, "--model")):
        cli(command, "predict", "--model", model, "--data", tiny_root, "--out", out, "--overwrite").refused(
            str(out), word)
    if command == "outcome":  # a cohort CSV given as --data directly
        cli(command, "predict", "--model", model, "--data", cohort, "--out", cohort, "--overwrite").refused(
            str(cohort), "--data")
    assert cohort.read_bytes() == before and model.read_bytes() == b"model bytes"


@pytest.mark.parametrize("command", ["classify", "outcome"])
def test_predict_refuses_existing_output_without_overwrite(cli, tiny_root, tmp_path, command):
    model = tmp_path / "model.bin"
    model.write_bytes(b"x")
    out = tmp_path / "pred.csv"
    out.write_text("keep\n")
    cli(command, "predict", "--model", model, "--data", tiny_root, "--out", out).refused(str(out), "--overwrite")
    cli(command, "predict", "--model", model, "--data", tiny_root, "--out", tmp_path).refused(str(tmp_path), "folder")
    assert out.read_text() == "keep\n"


def test_second_training_into_a_locked_run_directory_fails_at_once(cli, tiny, tiny_root, tmp_path):
    """A run holds the folder's lock (here: another process); a second run fails in one line and writes nothing."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from synthseq.utils import directory_lock\n"
         "with directory_lock(sys.argv[1], 'training'):\n    print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = tmp_path / "c.yaml"
        cfg.write_text("name: t\n")
        t0 = time.monotonic()
        line = cli("train", cfg, *tiny, f"data.root={tiny_root}", f"train.out_dir={out}").refused(
            str(out), "another training", f"pid {holder.pid}")
        assert time.monotonic() - t0 < 30, line  # at once, not after training
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # once the holder is gone (killed: the kernel drops its lock), the folder is free again
    from synthseq.utils import directory_lock

    with directory_lock(out, "training"):
        pass


def test_lock_is_released_and_a_refused_run_leaves_no_folder(tmp_path):
    from synthseq.errors import InputError
    from synthseq.utils import directory_lock

    out = tmp_path / "fresh"
    with pytest.raises(RuntimeError), directory_lock(out):
        raise RuntimeError("refused inside")
    assert not out.exists()  # created by the lock, empty again: removed
    with directory_lock(out), pytest.raises(InputError, match="another run"), directory_lock(out):
        pass


def test_train_into_existing_run_refused_without_resume(cli, tiny, tiny_root, checkpoint, tmp_path):
    run_dir = checkpoint.parent
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".lock"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    cli("train", cfg, *tiny, f"data.root={tiny_root}", f"train.out_dir={run_dir}").refused("last.pt", "resume")
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".lock"} == before
