"""Utility benchmark: CLI end to end with a pseudo-STIR folder, injected synthesizer, gap arithmetic."""

import csv
import json
import math

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream.dataset import read_cohort
from synthseq.downstream.features import FEATURE_NAMES, features_for_subjects
from synthseq.downstream.stats import auc
from synthseq.downstream.utility import gap_closed, paired_delta_ci, run_utility
from synthseq.errors import ConfigError
from synthseq.io import load_volume, save_volume

FAST = ["classifier.epochs=3", "classifier.image_size=32", "classifier.n_slices=3", "classifier.slab_mm=8.0",
        "classifier.device=cpu", "n_boot=100", "outcome.model=logreg", "classifier_seeds=1"]


def test_gap_and_paired_delta_by_hand():
    assert gap_closed(0.6, 0.75, 0.9) == pytest.approx(0.5)
    assert gap_closed(0.6, 0.9, 0.9) == pytest.approx(1.0)
    assert math.isnan(gap_closed(0.8, 0.9, 0.7))  # real STIR no better: undefined
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert paired_delta_ci(y, p, p, 50, 0) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_delta_ci(y, 1 - p, p, 200, 0)
    assert d == pytest.approx(2 * (8 / 9) - 1) and lo <= d <= hi


def test_utility_cli_with_pseudo_stir_folder(dataset, tmp_path, capsys):
    pseudo = tmp_path / "pseudo"
    rng = np.random.default_rng(0)
    for s in read_cohort(dataset).subjects:  # a stand-in for a GAN: real STIR plus noise
        stir = load_volume(dataset / s / f"{s}_STIR.nii.gz")
        save_volume(stir.with_data(stir.data + rng.normal(0, 10, stir.shape).astype(np.float32)),
                    pseudo / f"{s}_pseudoSTIR.nii.gz")
    out = tmp_path / "util"
    assert main(["utility", "--data", str(dataset), "--pseudo-stir", str(pseudo), "--out", str(out),
                 "--device", "cpu", *FAST]) == 0
    res = json.loads((out / "utility.json").read_text())
    features = ["fracture (marrow_edema_ml)", "plc_injury (plc_signal)", "cord_edema (cord_edema_ml)"]
    tasks = ["fracture", "plc_injury", "cord_edema", *features, "ambulation_discharge"]
    assert list(res["summary"]) == tasks
    assert [res["summary"][t]["kind"] for t in tasks] == ["classifier"] * 3 + ["feature"] * 3 + ["outcome"]
    # feature rows: the AUC of the feature itself, measured on real STIR for the held-out subjects
    cohort = read_cohort(dataset)
    rows_test = [cohort.subjects.index(s) for s in res["test_subjects"]]
    stir_feats = features_for_subjects(dataset, res["test_subjects"], "stir")
    for name, feature in zip(features, ("marrow_edema_ml", "plc_signal", "cord_edema_ml")):
        y = cohort.flag(name.split(" ")[0])[rows_test]
        row = next(r for r in res["rows"] if r["task"] == name and r["input"] == "t2w+stir")
        expected = auc(y, stir_feats[:, FEATURE_NAMES.index(feature)])
        assert (row["auc"] is None and math.isnan(expected)) or row["auc"] == pytest.approx(expected)
    assert not set(res["train_subjects"]) & set(res["test_subjects"])
    for task in tasks:
        rows = {r["input"]: r for r in res["rows"] if r["task"] == task}
        assert {"t2w", "t2w+pseudostir", "t2w+stir"} <= set(rows)
        a = {k: rows[k]["auc"] for k in ("t2w", "t2w+pseudostir", "t2w+stir")}
        assert all(v is not None and 0 <= v <= 1 for v in a.values())  # both classes held out
        assert rows["t2w+stir"]["delta_vs_t2w"] == pytest.approx(a["t2w+stir"] - a["t2w"])
        s = res["summary"][task]
        assert s["real_beats_t2w"] == (rows["t2w+stir"]["delta_ci_low"] > 0)
        expected = gap_closed(a["t2w"], a["t2w+pseudostir"], a["t2w+stir"]) if s["real_beats_t2w"] else math.nan
        assert (s["gap_closed"] is None and math.isnan(expected)) or s["gap_closed"] == pytest.approx(expected)
    refs = {r["input"] for r in res["rows"] if r["kind"] == "reference"}
    assert refs == {"clinical only", "van Middendorp rule"}
    assert (out / "utility.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(csv.DictReader(open(out / "utility.csv")))) == len(res["rows"])
    assert "gap closed" in capsys.readouterr().out


def test_injected_synthesizer_called_once_per_subject(dataset, tmp_path, stir_plus_noise):
    from synthseq.downstream.sources import PseudoStirSource

    calls = []
    base = stir_plus_noise(dataset)

    def synth(t2w):
        calls.append(t2w.path.name)
        return base(t2w)

    source = PseudoStirSource(synth, cache_dir=tmp_path / "cache")
    t2w = load_volume(dataset / "sub-0001" / "sub-0001_T2w.nii.gz")
    first = source.get("sub-0001", t2w)
    assert source.get("sub-0001", t2w) is first and calls == ["sub-0001_T2w.nii.gz"]
    again = PseudoStirSource(synth, cache_dir=tmp_path / "cache").get("sub-0001", t2w)  # read from the cache
    assert calls == ["sub-0001_T2w.nii.gz"] and np.allclose(again.data, first.data)


def test_utility_needs_a_pseudo_stir_source(dataset, tmp_path, capsys):
    with pytest.raises(ConfigError, match="needs --checkpoint"):
        run_utility(dataset, tmp_path / "u")
    assert main(["utility", "--data", str(dataset), "--checkpoint", str(tmp_path / "no.pt"), "--out",
                 str(tmp_path / "u")]) == 2
    assert "no.pt: no such checkpoint file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, checkpoint_writer):
    """A real synthseq checkpoint around a tiny, randomly initialised pix2pix at the tiny preset's 2.75 mm."""
    return checkpoint_writer(tmp_path_factory.mktemp("ckpt") / "tiny.pt", spacing=(2.75, 2.75))


def test_end_to_end_with_a_synthesis_checkpoint(dataset, tmp_path, tiny_checkpoint):
    out = tmp_path / "util"
    assert main(["utility", "--data", str(dataset), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                 "--device", "cpu", *FAST, "classifier.epochs=1", "classifier.labels=[plc_injury]"]) == 0
    res = json.loads((out / "utility.json").read_text())
    assert set(res["summary"]) == {"plc_injury", "plc_injury (plc_signal)", "ambulation_discharge"}
    for s in read_cohort(dataset).subjects:  # pseudo-STIR on each T2w grid, written once
        pseudo = load_volume(out / "pseudo_stir" / f"{s}_pseudoSTIR.nii.gz")
        t2w = load_volume(dataset / s / f"{s}_T2w.nii.gz")
        assert pseudo.shape == t2w.shape and np.allclose(pseudo.affine, t2w.affine)

    run = tmp_path / "cls"
    assert main(["classify", "train", "configs/classifier_cpu_tiny.yaml", f"data={dataset}", f"out_dir={run}",
                 "input=t2w+pseudostir", f"synthesis_checkpoint={tiny_checkpoint}", "epochs=1", "image_size=32",
                 "device=cpu", "gradcam_subjects=0"]) == 0
    assert main(["classify", "predict", "--model", str(run / "model.ssmodel"), "--data", str(dataset), "--out",
                 str(tmp_path / "p.csv"), "--device", "cpu"]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 16


def test_classifier_seeds_average_the_ensemble_probabilities(dataset, tmp_path, stir_plus_noise, monkeypatch):
    from synthseq.config import load_typed
    from synthseq.downstream import utility
    from synthseq.downstream.utility import UtilityConfig

    class Stub:  # "predicts" probabilities drawn from its seed: the ensemble must be their mean
        def __init__(self, cfg, n):
            self.seed, self.n = cfg.seed, n

        def predict(self, x):
            return np.random.default_rng([self.seed, len(x)]).random((len(x), 1))

    seeds = []
    monkeypatch.setattr(utility, "fit_network", lambda cfg, x, y: seeds.append(cfg.seed) or Stub(cfg, len(x)))
    cfg = load_typed(UtilityConfig, None, [*FAST, "classifier.labels=[plc_injury]", "classifier_seeds=3", "seed=5"])
    res = run_utility(dataset, tmp_path / "u", synthesizer=stir_plus_noise(dataset), cfg=cfg, device="cpu")
    assert seeds == [5, 6, 7] * 3  # three seeds for each input mode
    cohort = read_cohort(dataset)
    y = cohort.flag("plc_injury")[[cohort.subjects.index(s) for s in res["test_subjects"]]]
    n = len(y)
    mean = np.mean([np.random.default_rng([s, n]).random((n, 1))[:, 0] for s in (5, 6, 7)], axis=0)
    row = next(r for r in res["rows"] if r["task"] == "plc_injury" and r["input"] == "t2w")
    assert row["auc"] == pytest.approx(auc(y, mean))
    with pytest.raises(ConfigError, match="classifier_seeds"):
        run_utility(dataset, tmp_path / "v", synthesizer=stir_plus_noise(dataset),
                    cfg=load_typed(UtilityConfig, None, ["classifier_seeds=0"]), device="cpu")
