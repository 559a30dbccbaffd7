"""CLI: every subcommand's --help exits 0; errors print one line on stderr and exit 2."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthseq import __version__
from synthseq.cli import build_parser, main


def _subcommand_paths(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(child, (*prefix, name))


SUBCOMMANDS = list(_subcommand_paths(build_parser()))


def test_core_subcommands_registered():
    names = {path[0] for path in SUBCOMMANDS}
    assert {"info", "phantom", "train", "synthesize", "evaluate", "demo"} <= names


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=" ".join)
def test_help_of_every_subcommand(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert "usage: synthseq" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_bad_usage_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["info"])  # missing FILE
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.nii.gz"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"synthseq: error: {missing}: no such file or folder"]


def test_error_through_console_script_has_no_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  stepz: 1\n")
    proc = subprocess.run([sys.executable, "-m", "synthseq.cli", "train", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "train.stepz" in proc.stderr


def test_info_reports_geometry(tmp_path, capsys):
    affine = np.diag([0.5, 0.8, 3.0, 1.0])
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    assert main(["info", "--json", str(path)]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [4, 5, 6]
    assert info["voxel_size_mm"] == [0.5, 0.8, 3.0]
    assert info["orientation"] == "RAS"
    assert info["dtype"] == "int16"
    assert info["percentiles"]["p50"] == pytest.approx(np.percentile(data, 50))


def test_seed_after_subcommand_is_accepted(tmp_path, capsys):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), path)
    assert main(["info", str(path), "--seed", "5"]) == 0
