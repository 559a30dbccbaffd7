"""Failures while writing: one line naming the path, nothing partial left behind, stale temporaries of killed
writers removed by the next writer; plus the messages that named the wrong thing (newlines, --answers, tokens)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import nibabel as nib
import pytest


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _targets(a_file: Path, a_dir: Path, name: str) -> list[tuple[str, Path]]:
    """(kind, path): under a regular file, under /proc (not writable), and an existing folder."""
    return [("under-file", a_file / name), ("proc", Path("/proc") / f"synthseq_rel_{os.getpid()}" / name),
            ("folder", a_dir)]


# ------------------------------------------------------------------------------ unwritable output paths
@pytest.mark.parametrize("kind", ["under-file", "proc"])
def test_phantom_unwritable_out(cli, a_file, tmp_path, kind):
    out = dict(_targets(a_file, tmp_path, "ph"))[kind]
    cli("phantom", "--out", out, "--preset", "tiny", "--subjects", "1").refused(out.parent if kind == "proc" else a_file)


@pytest.mark.parametrize("kind", ["under-file", "proc"])
def test_train_unwritable_out_dir(cli, tiny, tiny_root, a_file, tmp_path, kind):
    out = dict(_targets(a_file, tmp_path, "run"))[kind]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    cli("train", cfg, *tiny, f"data.root={tiny_root}", f"train.out_dir={out}").refused()
    if kind == "under-file":
        assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("kind", ["under-file", "proc"])  # an existing folder is a valid output (file inside)
def test_synthesize_unwritable_output(cli, checkpoint, tiny_root, a_file, tmp_path, kind):
    out = dict(_targets(a_file, tmp_path / "outdir", "x_pseudoSTIR.nii.gz"))[kind]
    src = tiny_root / "sub-0001" / "sub-0001_T2w.nii.gz"
    line = cli("synthesize", "--checkpoint", checkpoint, "--input", src, "--output", out, "--device", "cpu").refused()
    assert str(a_file) in line or str(out) in line or str(out.parent) in line, line


@pytest.mark.parametrize("kind", ["under-file", "proc"])
def test_evaluate_unwritable_out(cli, tiny_root, a_file, tmp_path, kind):
    out = dict(_targets(a_file, tmp_path, "ev"))[kind]
    pred = tiny_root / "sub-0001" / "sub-0001_STIR.nii.gz"
    cli("evaluate", "--pred", pred, "--target", pred, "--out", out, "--no-lpips").refused()


@pytest.mark.parametrize("step", ["build", "export", "analyze"])
@pytest.mark.parametrize("kind", ["under-file", "proc", "folder"])
def test_reader_study_unwritable_out(cli, study, a_file, tmp_path, step, kind):
    name = {"build": "newstudy", "export": "a.csv", "analyze": "rep"}[step]
    target = dict(_targets(a_file, tmp_path / "existing", name))[kind]
    if kind == "folder":
        target.mkdir(parents=True)
        if step != "export":
            (target / "something").write_text("x")  # a non-empty folder: build refuses it, analyze writes into it
    if step == "build":
        from synthseq.reader_study import read_key

        files = {r["source"]: Path(r["file"]).parent for r in read_key(study)}
        args = ["reader-study", "build", "--real", files["real"], "--synthetic", files["synthetic"], "--readers", "A",
                "--out", target]
    elif step == "export":
        args = ["reader-study", "export", study, "--out", target]
    else:
        from synthseq.reader_study.store import AnswerStore

        store = AnswerStore(study / "answers.sqlite")
        full = {"call": "real", "confidence": 3, "quality": 4, "marrow_edema": 0, "plc_injury": 0, "cord_edema": 0}
        for case in json.loads((study / "manifest.json").read_text())["readers"]["R1"]:
            store.save_answer("R1", case, full)
        args = ["reader-study", "analyze", study, "--out", target]
    result = cli(*args)
    if step == "analyze" and kind == "folder":
        assert result.rc == 0, result.err  # a report folder that exists is written into: that is its job
        return
    line = result.refused()
    assert str(a_file) in line or str(target) in line or str(target.parent) in line, line


def test_atomic_path_onto_a_folder_and_under_a_file(tmp_path, a_file):
    from synthseq.errors import InputError
    from synthseq.utils import atomic_write_text

    with pytest.raises(InputError, match="is a folder"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(OSError) as exc:
        atomic_write_text(a_file / "x.txt", "x")
    assert exc.value.filename == str(a_file)  # the file that blocks the folder, not a temporary name


# ------------------------------------------------------------------------------------------- full disk
def test_full_disk_in_phantom_is_one_line_and_nothing_partial(rel, tmp_path):
    out = tmp_path / "ph"
    result = rel.run_subprocess(["phantom", "--out", out, "--preset", "tiny", "--subjects", "1"], ulimit_kib=16)
    line = result.refused("File too large")
    assert str(out) in line
    assert rel.no_temporaries(out) == []
    for path in out.rglob("*.nii.gz"):  # whatever was written before the failure is whole
        nib.load(str(path)).get_fdata()


def test_full_disk_in_export_is_one_line_and_nothing_partial(rel, study, tmp_path):
    from synthseq.reader_study.store import AnswerStore

    AnswerStore(study / "answers.sqlite")  # a study with its database (creating one needs the disk too)
    out = tmp_path / "answers.csv"
    result = rel.run_subprocess(["reader-study", "export", study, "--out", out], ulimit_kib=0)
    line = result.refused()
    # SQLite needs the disk even to read (its WAL index), so either the database or the CSV is named
    assert (f"{study / 'answers.sqlite'}: cannot open or write" in line
            or (str(out) in line and "File too large" in line)), line
    assert not out.exists() and rel.no_temporaries(tmp_path) == []


def test_full_disk_in_synthesize_is_one_line_and_nothing_partial(rel, checkpoint, tiny_root, tmp_path):
    out = tmp_path / "o" / "x_pseudoSTIR.nii.gz"
    src = tiny_root / "sub-0001" / "sub-0001_T2w.nii.gz"
    result = rel.run_subprocess(["synthesize", "--checkpoint", checkpoint, "--input", src, "--output", out,
                                 "--device", "cpu"], ulimit_kib=1)
    result.refused("File too large")
    assert not out.exists() and rel.no_temporaries(tmp_path) == []


# ------------------------------------------------------------------------------------ stale temporaries
def test_stale_temporaries_removed_live_ones_kept(tmp_path):
    from synthseq.utils import atomic_write_text

    dead, live = _dead_pid(), os.getpid()
    stale = [tmp_path / f".last.{dead}.abcd_123.tmp.pt", tmp_path / f".sub-0001_pseudoSTIR.{dead}.zz9y8x7w.tmp.nii.gz"]
    legacy = tmp_path / ".best.k2j4h5g6.tmp.pt"  # the name before the pid was part of it: removed when old
    keep = [tmp_path / f".last.{live}.abcdefgh.tmp.pt", tmp_path / "notes.tmp.txt", tmp_path / ".hidden"]
    for p in (*stale, legacy, *keep):
        p.write_bytes(b"half")
    old = 1_000_000_000
    os.utime(legacy, (old, old))
    atomic_write_text(tmp_path / "result.json", "{}")
    assert [p.exists() for p in stale] == [False, False] and not legacy.exists()
    assert all(p.exists() for p in keep)
    assert (tmp_path / "result.json").read_text() == "{}"


def test_a_training_run_removes_what_a_killed_one_left(cli, tiny, tiny_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".last.{_dead_pid()}.q1w2e3r4.tmp.pt"
    stale.write_bytes(b"\0" * 100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    assert cli("train", cfg, *tiny, f"data.root={tiny_root}", f"train.out_dir={out}").rc == 0
    assert not stale.exists() and (out / "last.pt").is_file()


def test_killed_writer_then_next_writer_cleans(tmp_path):
    """A real kill -9 in the middle of an atomic write leaves a temporary; the next write into the folder removes it."""
    code = ("import sys, time; from synthseq.utils import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "big.nii.gz")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    left = [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert len(left) == 1 and not (tmp_path / "big.nii.gz").exists()
    from synthseq.utils import atomic_write_text

    atomic_write_text(tmp_path / "next.txt", "ok")
    assert not left[0].exists()


# ------------------------------------------------------------------------------------- messages
def test_newline_in_a_path_does_not_cut_the_message(cli, tmp_path):
    path = tmp_path / "two\nlines.nii.gz"
    line = cli("info", path).refused("two\\nlines.nii.gz", "no such file")
    assert line.endswith("no such file or folder")


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00\x01binary",
    b"just,some,columns\n1,2,3\n",
    b"",
    b"reader,position,case_id,call,confidence,quality,marrow_edema,plc_injury,cord_edema\n"
    b"R1,1,cffffffffff,real,3,3,0,0,0\n",
    b"reader,position,case_id,call,confidence,quality,marrow_edema,plc_injury,cord_edema\n"
    b"R1,1,CASE,maybe,3,3,0,0,0\n",
    b"reader,position,case_id,call,confidence,quality,marrow_edema,plc_injury,cord_edema\n"
    b"R1,1,CASE,real,high,3,0,0,0\n",
], ids=["binary", "wrong-columns", "empty", "unknown-case", "bad-call", "bad-int"])
def test_analyze_bad_answers_csv_names_the_file(cli, study, tmp_path, content):
    case = sorted(json.loads((study / "manifest.json").read_text())["cases"])[0]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content.replace(b"CASE", case.encode()))
    line = cli("reader-study", "analyze", study, "--out", tmp_path / "rep", "--answers", bad).refused(str(bad))
    assert line.startswith(f"synthseq: error: {bad}")


def test_reader_tokens_never_in_the_access_log(study):
    code = ("import json, sys; from synthseq.reader_study.app import serve_study\n"
            "serve_study(sys.argv[1], port=0, ready=lambda url, links: print(json.dumps([url, links]), flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(study)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url, links = json.loads(proc.stdout.readline())
        token = links["R1"].rsplit("/", 1)[1]
        case = json.loads((study / "manifest.json").read_text())["readers"]["R1"][0]
        for path in (f"/r/{token}", f"/api/{token}/state", f"/api/{token}/cases/{case}/stack.nii", "/r/wrong"):
            try:
                urllib.request.urlopen(url + path, timeout=10).read()
            except urllib.error.HTTPError:
                pass
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert err.count("<token>") >= 4, err
    assert token not in err


def test_folder_synthesis_reads_every_input_before_writing(cli, checkpoint, tiny_root, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(tiny_root / "sub-0001" / "sub-0001_T2w.nii.gz", src / "sub-0001_T2w.nii.gz")
    data = (tiny_root / "sub-0002" / "sub-0002_T2w.nii.gz").read_bytes()
    (src / "sub-0002_T2w.nii.gz").write_bytes(data[: len(data) // 2])  # truncated: found only when read
    out = tmp_path / "out"
    cli("synthesize", "--checkpoint", checkpoint, "--input", src, "--output", out, "--device", "cpu").refused(
        "sub-0002_T2w.nii.gz")
    assert not out.exists() or not any(out.rglob("*.nii.gz")), list(out.rglob("*"))


def test_train_out_dir_empty_is_refused_not_the_current_folder(cli, tiny, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    cli("train", cfg, *tiny, f"data.root={tiny_root}", "train.out_dir=").refused("train.out_dir")
    cli("train", cfg, *tiny, f"data.root={tiny_root}", "train.out_dir=  ").refused("train.out_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_refused_runs_leave_no_splits_json(cli, tiny, tiny_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    for bad in ("train.steps=0", "train.grad_accum=0", "train.decay_start=2"):
        out = tmp_path / bad.split("=")[0]
        cli("train", cfg, *tiny, f"data.root={tiny_root}", f"train.out_dir={out}", bad).refused(bad.split("=")[0])
        assert not out.exists()
    # the same through the Python API (validation also runs inside training.run)
    from synthseq.config import Config, from_dict, to_dict
    from synthseq.errors import ConfigError
    from synthseq.training import run

    raw = to_dict(Config())
    raw["train"].update(steps=0, out_dir=str(tmp_path / "api"))
    with pytest.raises(ConfigError, match="train.steps"):
        run(from_dict(Config, raw))
    assert not (tmp_path / "api").exists()


@pytest.mark.parametrize(("handler", "argv"), [
    ("_run_info", ["info", "x.nii.gz"]),
    ("_run_utility", ["utility", "--data", "d", "--checkpoint", "c.pt", "--out", "o"]),
    ("_run_classify_train", ["classify", "train", "c.yaml"]),
    ("_run_classify_predict", ["classify", "predict", "--model", "m", "--data", "d", "--out", "o.csv"]),
    ("_run_outcome_fit", ["outcome", "fit", "c.yaml"]),
    ("_run_evaluate", ["evaluate", "--pred", "p", "--target", "t", "--out", "o"]),
    ("_run_reader_study_analyze", ["reader-study", "analyze", "s", "--out", "o"]),
])
@pytest.mark.parametrize("error", [
    PermissionError(13, "Permission denied", "/ro/out\nfile.csv"),
    OSError(27, "File too large", "/data/big.nii.gz"),
    IsADirectoryError(21, "Is a directory", "/data/out", None, "/data/out2"),
    OSError(28, "No space left on device"),
], ids=["permission", "too-large", "two-paths", "no-path"])
def test_any_oserror_anywhere_is_one_line_naming_the_path(cli, monkeypatch, handler, argv, error):
    """cli.main catches OSError centrally: whichever command raised it, one line naming exc.filename."""
    import synthseq.cli as cli_module

    def boom(args):
        raise error

    monkeypatch.setattr(cli_module, handler, boom)
    line = cli(*argv).refused(error.strerror)
    if error.filename is not None:
        assert str(error.filename).replace("\n", "\\n") in line
    if error.filename2 is not None:
        assert str(error.filename2) in line


def test_killed_study_build_leftovers_removed_by_the_next_build(study, tmp_path):
    from synthseq.reader_study import build_study, read_key

    files = {r["source"]: Path(r["file"]).parent for r in read_key(study)}
    dead = _dead_pid()
    stale = tmp_path / f".new.{dead}.abc12345"
    (stale / "cases").mkdir(parents=True)
    live = tmp_path / f".new.{os.getpid()}.zzz99999"  # a build in progress (this process): left alone
    live.mkdir()
    build_study(files["real"], files["synthetic"], tmp_path / "new", ["A"])
    assert not stale.exists() and live.exists() and (tmp_path / "new" / "manifest.json").is_file()
