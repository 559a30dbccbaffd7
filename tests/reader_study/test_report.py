"""build -> answer -> export -> analyze through the CLI; the report's numbers follow the answers."""

from __future__ import annotations

import json

import pytest

from synthseq.cli import main
from synthseq.reader_study import read_key
from synthseq.reader_study.access import load_or_create_tokens
from synthseq.reader_study.app import create_app


@pytest.fixture
def answered(inputs, tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["reader-study", "build", "--real", str(inputs["real"]), "--synthetic", str(inputs["synthetic"]),
                 "--lesions", str(inputs["lesions"]), "--out", str(study), "--readers", "R1,R2,R3",
                 "--seed", "5"]) == 0
    assert "wrote 6 cases (3 subjects) for 3 reader(s)" in capsys.readouterr().out
    key = {r["case_id"]: r for r in read_key(study)}
    client = create_app(study).test_client()
    tokens = load_or_create_tokens(study, ["R1", "R2", "R3"])
    for reader, token in tokens.items():
        for cid, row in key.items():
            # R1 always right; R2 and R3 always say "real". Quality: real 5, synthetic 2 (R1) or 4.
            call = row["source"] if reader == "R1" else "real"
            quality = 5 if row["source"] == "real" else (2 if reader == "R1" else 4)
            answer = {"call": call, "confidence": 3, "quality": quality, "marrow_edema": row["marrow_edema"],
                      "plc_injury": 0, "cord_edema": row["cord_edema"] if row["source"] == "real" else 0}
            assert client.post(f"/api/{token}/answer/{cid}", json=answer).status_code == 200
        if reader != "R3":
            assert client.post(f"/api/{token}/submit").status_code == 200
    return study


def test_export_and_analyze_via_cli(answered, tmp_path, capsys):
    study = answered
    assert main(["reader-study", "export", str(study)]) == 0
    csv_path = study / "answers.csv"
    assert capsys.readouterr().out.strip() == str(csv_path)
    assert len(csv_path.read_text().splitlines()) == 1 + 3 * 6

    out = tmp_path / "report"
    assert main(["reader-study", "analyze", str(study), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["study"]["submitted"]["R3"] is None and res["study"]["submitted"]["R1"]
    assert (res["turing"]["R1"]["k"], res["turing"]["R1"]["n"]) == (6, 6)
    assert (res["turing"]["R2"]["k"], res["turing"]["pooled"]["k"], res["turing"]["pooled"]["n"]) == (3, 12, 18)
    assert res["agreement"]["call"]["fleiss_kappa"] is not None
    assert [c["kappa"] for c in res["agreement"]["call"]["cohen"] if c["a"] == "R2" and c["b"] == "R3"] == [None]
    lk = res["likert_quality"]
    assert (lk["R1"]["real"]["median"], lk["R1"]["synthetic"]["median"]) == (5.0, 2.0)
    assert lk["R1"]["wilcoxon_real_vs_synthetic"]["w_plus"] == 6  # 3 subjects, all real > synthetic
    cord = res["findings"]["pooled"]["cord_edema"]
    assert cord["real"]["sensitivity"]["estimate"] == 1.0 and cord["synthetic"]["sensitivity"]["estimate"] == 0.0

    figures = json.loads((out / "figures.json").read_text())
    assert {"turing_accuracy", "likert_quality", "agreement_call", "findings", "accuracy_by_confidence"} <= set(
        figures)
    html = (out / "report.html").read_text()
    for fig in figures.values():
        assert (out / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig["file"] in html
    assert figures["turing_accuracy"]["data"]["R1"]["estimate"] == 1.0

    # The exported CSV gives the same analysis as the database.
    out2 = tmp_path / "report_csv"
    assert main(["reader-study", "analyze", str(study), "--out", str(out2), "--answers", str(csv_path)]) == 0
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["turing"] == res["turing"] and res2["likert_quality"] == res["likert_quality"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["reader-study", "analyze", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synthseq: error: ") and "manifest.json" in err and "\n" not in err


def test_report_refuses_to_write_into_served_folder(answered):
    from synthseq.errors import InputError
    from synthseq.reader_study import analyze_study

    with pytest.raises(InputError, match="unblinded"):
        analyze_study(answered, answered / "cases" / "report")
