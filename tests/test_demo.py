"""`synthseq demo` end to end on the tiny phantom (few steps: this checks the wiring, not the quality)."""

import json

import pandas as pd
import pytest

from synthseq.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu", "--steps", "10", "--seed", "3"]) == 0
    assert "demo finished" in capsys.readouterr().out
    report = out / "evaluation" / "report.html"
    assert report.is_file()
    splits = json.loads((out / "run" / "splits.json").read_text())
    preds = sorted(p.name for p in (out / "pseudo_stir").glob("*_pseudoSTIR.nii.gz"))
    assert preds == sorted(f"{s}_pseudoSTIR.nii.gz" for s in splits["test"])
    table = pd.read_csv(out / "evaluation" / "metrics.csv")
    assert {"pseudo_stir", "histmatch", "linear_pooled"} <= set(table["method"])
    assert set(table["subject"]) == set(splits["test"])  # only held-out subjects are scored
    card = (out / "run" / "MODEL_CARD.md").read_text()  # the card carries the held-out results
    assert "## Test (held-out subjects)" in card and "Not evaluated on held-out test subjects yet" not in card


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("user data")
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "user data"
