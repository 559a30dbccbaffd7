"""CatBoost as an optional outcome estimator: fit + comparison table, exact SHAP, safe save/load, the page;
and a clear message where the extra is not installed."""

import csv
import json

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream import outcome
from synthseq.downstream.dataset import read_cohort
from synthseq.downstream.outcome import OutcomeConfig, OutcomeModel, additivity_error, fit_outcome
from synthseq.errors import ConfigError


def test_catboost_fit_compare_explain_serve(dataset, tmp_path, capsys):
    pytest.importorskip("catboost", reason="the catboost extra is not installed (pip install 'synthseq[catboost]')")
    out = tmp_path / "cb"
    assert main(["outcome", "fit", "configs/outcome_ambulation.yaml", f"data={dataset}", f"out_dir={out}",
                 "model=catboost", "catboost_iterations=40", "cv_folds=3", "n_boot=20", "n_ensemble=3",
                 "hgb_max_iter=20", "hgb_min_samples_leaf=2", "explain_subjects=1"]) == 0
    printed = capsys.readouterr().out
    assert "cross-validated comparison (16 subjects, same folds)" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert [r["model"] for r in m["comparison"]] == ["catboost", "hgb", "logreg"]
    assert m["comparison"][0]["auc"] == m["cv"]["auc"] and all(0 <= r["auc"] <= 1 for r in m["comparison"])
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["model"] for r in rows] == ["catboost", "hgb", "logreg"]
    assert float(rows[1]["auc"]) == pytest.approx(m["comparison"][1]["auc"], abs=1e-6)
    assert m["shap"]["additivity_max_error"] < 1e-6

    model = OutcomeModel.load(out / "model.ssmodel")
    assert model.cfg.model == "catboost" and len(model.ensemble) == 3
    assert additivity_error(model, model.background) < 1e-6
    lo, hi = model.interval(model.background)
    assert np.all(lo <= hi)

    from synthseq.downstream.web.app import create_app

    columns = read_cohort(dataset).columns
    patient = {k: columns[k][0] for k in outcome.CLINICAL_FEATURES}
    r = create_app([str(out / "model.ssmodel")]).test_client().post("/api/predict", json={"patient": patient})
    res = r.json["results"][0]
    assert res["probability"] == pytest.approx(model.predict_proba(model.background[:1])[0], abs=1e-9)
    total = res["shap"]["base_value"] + sum(c["shap"] for c in res["shap"]["contributions"])
    assert total == pytest.approx(res["log_odds"], abs=1e-6)


def test_without_the_extra(monkeypatch, dataset, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_catboost(name, *a, **kw):
        if name == "catboost" or name.startswith("catboost."):
            raise ImportError("no catboost")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_catboost)
    with pytest.raises(ConfigError, match=r"model: catboost is not installed \(pip install 'synthseq\[catboost\]'\)"):
        OutcomeConfig(model="catboost").validate()
    cfg = OutcomeConfig(data=str(dataset), out_dir=str(tmp_path / "o"), model="logreg", cv_folds=3, n_boot=10,
                        n_ensemble=0, explain_subjects=0)
    m = fit_outcome(cfg)
    assert m["comparison"][-1] == {"model": "catboost", "skipped": "not installed (pip install 'synthseq[catboost]')"}
    assert [r["model"] for r in m["comparison"]] == ["logreg", "hgb", "catboost"]
    with pytest.raises(ConfigError, match="compare: unknown model"):
        OutcomeConfig(compare=["xgboost"]).validate()
    with pytest.raises(ConfigError, match="n_ensemble"):
        OutcomeConfig(n_ensemble=1).validate()
