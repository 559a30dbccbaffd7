"""Injury classifier: CLI train/predict end to end, inputs, Grad-CAM, saved model, bad inputs."""

import csv
import json
import shutil

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream.classifier import (
    ClassifierConfig,
    InjuryClassifier,
    fit_network,
    gradcam_maps,
    load_inputs,
    slab_indices,
    subject_stack,
)
from synthseq.downstream.dataset import read_cohort, subject_file
from synthseq.errors import ConfigError, InputError
from synthseq.io import Volume, load_volume

CFG = "configs/classifier_cpu_tiny.yaml"


def test_slab_indices():
    assert slab_indices(12, 2.0, 3, 8.0).tolist() == [4, 6, 8]  # centre 5.5, offsets -2/0/+2 slices
    assert slab_indices(5, 1.0, 3, 40.0).tolist() == [0, 2, 4]  # clipped to the volume


def test_stack_is_orientation_invariant(dataset):
    cfg = ClassifierConfig(image_size=32, n_slices=3, slab_mm=8.0)
    t2w = load_volume(subject_file(dataset, "sub-0003", "t2w"))
    x = subject_stack([t2w], cfg)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    # the same image stored with axis 0 reversed gives the same canonical stack
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, t2w.shape[0] - 1
    again = Volume(np.ascontiguousarray(t2w.data[::-1]), t2w.affine @ flip)
    np.testing.assert_allclose(subject_stack([again], cfg), x, atol=1e-6)


def test_train_predict_cli_and_saved_model(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "train", CFG, f"data={dataset}", f"out_dir={out}", "input=t2w+stir", "epochs=3",
                 "image_size=32"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["labels"]) == {"fracture", "plc_injury", "cord_edema"}
    assert metrics["n_train"] + metrics["n_test"] == 16
    for m in metrics["labels"].values():
        assert 0 <= m["auc"] <= 1 and m["auc_ci_low"] <= m["auc"] <= m["auc_ci_high"]
        assert m["n_positive"] >= 1  # the split keeps both classes in the test set
    assert len(list(out.glob("gradcam_*.png"))) == 2
    assert "fracture: AUC" in capsys.readouterr().out

    model = InjuryClassifier.load(out / "model.ssmodel")  # alone: config inside
    assert model.cfg.input == "t2w+stir" and model.in_channels == 6
    pred = tmp_path / "pred.csv"
    assert main(["classify", "predict", "--model", str(out / "model.ssmodel"), "--data", str(dataset), "--out",
                 str(pred), "--device", "cpu"]) == 0
    rows = {r["subject"]: r for r in csv.DictReader(open(pred))}
    assert sorted(rows) == read_cohort(dataset).subjects
    for r in csv.DictReader(open(out / "predictions.csv")):  # held-out predictions agree with predict
        assert float(rows[r["subject"]]["prob_fracture"]) == pytest.approx(float(r["prob_fracture"]), abs=1e-5)


def test_learns_marrow_edema_from_stir(synthetic):
    """With STIR in the input, a few epochs separate fractured from intact training subjects."""
    cfg = ClassifierConfig(data=str(synthetic), input="t2w+stir", labels=["fracture"], image_size=32, n_slices=3,
                           slab_mm=8.0, epochs=15, batch_size=12, augment=False, lr=5e-3, device="cpu")
    cohort = read_cohort(synthetic)
    x = load_inputs(synthetic, cohort.subjects, cfg, None)
    y = cohort.flag("fracture")[:, None]
    model = fit_network(cfg, x, y)
    p = model.predict(x)[:, 0]
    assert p[y[:, 0] == 1].min() > p[y[:, 0] == 0].max()
    cams = gradcam_maps(model, x[:2])
    assert cams.shape == (2, 1, 32, 32) and cams.min() >= 0 and cams.max() <= 1 + 1e-6


def test_bad_inputs(dataset, tmp_path, capsys):
    assert main(["classify", "train", CFG, f"data={dataset}", "labels=[fracture,marrow]"]) == 2
    err = capsys.readouterr().err
    assert "unknown label name(s) 'marrow'" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match="input: unknown input"):
        ClassifierConfig(input="stir").validate()
    cfg = ClassifierConfig(input="t2w+pseudostir")
    with pytest.raises(ConfigError, match="needs synthesis_checkpoint or pseudo_stir_dir"):
        load_inputs(dataset, ["sub-0001"], cfg, None)
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "sub-0002" / "sub-0002_T2w.nii.gz").unlink()
    assert main(["classify", "train", CFG, f"data={broken}", f"out_dir={tmp_path / 'o'}", "epochs=1"]) == 2
    assert "sub-0002_T2w.nii.gz: no such file" in capsys.readouterr().err
    with pytest.raises(InputError, match="not a synthseq classifier model"):
        bogus = tmp_path / "bogus.pt"
        import torch

        torch.save({"format": "other"}, bogus)
        InjuryClassifier.load(bogus)
