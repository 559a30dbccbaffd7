"""Outcome models: CLI fit / predict / explain, SHAP shape and additivity, truth comparison, bad inputs."""

import csv
import json
import shutil

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream.dataset import read_cohort
from synthseq.downstream.outcome import (
    CLINICAL_FEATURES,
    OutcomeConfig,
    OutcomeModel,
    additivity_error,
    compare_with_truth,
    design_matrix,
    make_estimator,
    shap_values,
)

CFG = "configs/outcome_ambulation.yaml"


def _model(root, kind, image_features="cohort"):
    cfg = OutcomeConfig(data=str(root), model=kind, image_features=image_features, hgb_min_samples_leaf=2,
                        hgb_max_iter=30)
    cohort = read_cohort(root)
    x, names = design_matrix(cohort, image_features, root)
    est = make_estimator(cfg).fit(x, cohort.flag(cfg.target))
    return OutcomeModel(cfg, names, est, x, {}), x


@pytest.mark.parametrize("kind", ["hgb", "logreg"])
def test_shap_shape_and_additivity(dataset, kind):
    model, x = _model(dataset, kind)
    values, base = shap_values(model, x)
    assert values.shape == x.shape == (16, len(CLINICAL_FEATURES) + 8)
    np.testing.assert_allclose(base + values.sum(1), model.decision_function(x), atol=1e-6)
    assert additivity_error(model, x) < 1e-6
    assert np.abs(values).sum() > 0


def test_fit_predict_explain_cli(dataset, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["outcome", "fit", CFG, f"data={dataset}", f"out_dir={out}", "image_features=stir", "cv_folds=3",
                 "n_boot=100", "hgb_min_samples_leaf=2", "hgb_max_iter=30"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 16 and 0 <= m["cv"]["auc"] <= 1 and 0 <= m["cv"]["brier"] <= 1
    assert m["van_middendorp"]["auc"] is not None
    assert m["shap"]["additivity_max_error"] < 1e-6
    assert set(m["shap"]["mean_abs"]) >= {"lems", "img_cord_lesion_length_mm"}
    for name in ("calibration.png", "shap_summary.png", "shap_sub-0001.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    model = OutcomeModel.load(out / "model.ssmodel")  # loads alone: config inside
    assert model.cfg.image_features == "stir" and model.feature_names[-1] == "img_plc_hyper_fraction"
    assert main(["outcome", "predict", "--model", str(out / "model.ssmodel"), "--data", str(dataset),
                 "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["subject"] for r in rows] == read_cohort(dataset).subjects
    np.testing.assert_allclose([float(r["prob_ambulation_discharge"]) for r in rows],
                               model.predict_proba(model.background), atol=1e-6)

    assert main(["outcome", "explain", "--model", str(out / "model.ssmodel"), "--data", str(dataset),
                 "--out", str(tmp_path / "ex"), "--subject", "sub-0005"]) == 0
    one = json.loads((tmp_path / "ex" / "shap_sub-0005.json").read_text())
    assert one["base_value"] + sum(one["contributions"].values()) == pytest.approx(one["log_odds"], abs=1e-4)
    assert (tmp_path / "ex" / "shap_sub-0005.png").is_file()
    assert "additivity" in capsys.readouterr().out


def test_important_features_match_generator(tmp_path):
    """On a large cohort drawn from the phantom's own generative model, fitted importances (mean |SHAP|) rank
    like the true coefficients' contributions (dataset.json "cohort_model")."""
    from synthseq.phantom.cohort import COLUMNS, model_description, simulate_cohort

    root = tmp_path / "cohort"
    root.mkdir()
    with open(root / "cohort.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(simulate_cohort(1500, seed=0))
    (root / "dataset.json").write_text(json.dumps({"cohort_model": model_description()}))
    out = tmp_path / "fit"
    assert main(["outcome", "fit", CFG, f"data={root}", f"out_dir={out}", "model=logreg", "image_features=cohort",
                 "n_boot=50", "explain_subjects=0"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    truth = m["truth_comparison"]
    assert truth["spearman"] >= 0.7 and truth["top_k_overlap"] >= 0.6
    top_true = [f["name"] for f in truth["features"][:3]]
    fitted_rank = sorted(truth["features"], key=lambda f: -f["fitted"])
    assert fitted_rank[0]["name"] in top_true
    assert m["cv"]["auc"] > 0.8 and m["van_middendorp"]["auc"] > 0.7
    assert compare_with_truth(["a", "b"], np.ones(2), None, {}, "ambulation_discharge") is None


def test_bad_inputs_give_one_line_errors(dataset, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    text = (bad / "cohort.csv").read_text().replace(",lems,", ",lower_motor,", 1)
    (bad / "cohort.csv").write_text(text)
    assert main(["outcome", "fit", CFG, f"data={bad}", f"out_dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("cohort.csv: missing cohort column(s) lems") and "\n" not in err

    assert main(["outcome", "fit", CFG, f"data={dataset}", "target=walking"]) == 2
    assert "unknown target name(s) 'walking'" in capsys.readouterr().err
    assert main(["outcome", "fit", CFG, f"data={dataset}", "learning_rate=0.1"]) == 2
    assert "unknown config key 'learning_rate'" in capsys.readouterr().err
    assert main(["outcome", "predict", "--model", str(tmp_path / "none.joblib"), "--data", str(dataset),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "none.joblib: no such model file" in capsys.readouterr().err
