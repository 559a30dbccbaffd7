"""synthseq.evaluation: tables, bootstrap CIs, baselines in the same table, report with montages, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthseq import metrics as M
from synthseq.cli import main
from synthseq.errors import InputError
from synthseq.evaluation import bootstrap_ci, evaluate_paths
from synthseq.io import Volume, save_volume

# PSR storage like the phantom and real sagittal scans: axes (A->P reversed, I->S, L->R)
AFFINE = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
SHAPE = (24, 28, 6)  # (AP, SI, LR)


def _subject(seed: int) -> dict[str, np.ndarray]:
    """A small labelled scene: fat (bright T2w, dark STIR), muscle, marrow with an edema lesion, cord."""
    T, L = M.TISSUE_CODES, M.LESION_CODES
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:22, 2:26, :] = T["subcutaneous_fat"]
    labels[4:20, 4:24, :] = T["muscle"]
    labels[6:12, 6:22, :] = T["vertebral_marrow"]
    labels[13:16, 5:23, :] = T["cord"]
    lesions = np.zeros(SHAPE, np.uint8)
    z0 = 8 + seed % 4
    lesions[7:11, z0:z0 + 4, 2:4] = L["marrow_edema"]
    t2 = {T["subcutaneous_fat"]: 900, T["muscle"]: 300, T["vertebral_marrow"]: 500, T["cord"]: 600}
    stir = {T["subcutaneous_fat"]: 80, T["muscle"]: 250, T["vertebral_marrow"]: 150, T["cord"]: 450}
    t2w = np.zeros(SHAPE, np.float32)
    st = np.zeros(SHAPE, np.float32)
    for code in t2:
        t2w[labels == code], st[labels == code] = t2[code], stir[code]
    t2w[lesions > 0], st[lesions > 0] = 950, 900
    t2w += rng.normal(0, 20, SHAPE).astype(np.float32) * (labels > 0)
    st += rng.normal(0, 20, SHAPE).astype(np.float32) * (labels > 0)
    return {"T2w": np.abs(t2w), "STIR": np.abs(st), "labels": labels, "lesions": lesions}


def _phantom(root: Path, n: int) -> Path:
    for i in range(1, n + 1):
        sid = f"sub-{i:04d}"
        for key, arr in _subject(i).items():
            dtype = np.uint8 if key in ("labels", "lesions") else np.float32
            save_volume(Volume(arr, AFFINE), root / sid / f"{sid}_{key}.nii.gz", dtype=dtype)
    return root


def _predictions(phantom: Path, out: Path, noise: float, uncertainty_for: str | None = None) -> Path:
    rng = np.random.default_rng(123)
    for stir in sorted(phantom.rglob("*_STIR.nii.gz")):
        sid = stir.name.split("_")[0]
        data = _subject(int(sid[4:]))["STIR"]
        save_volume(Volume(data + rng.normal(0, noise, SHAPE).astype(np.float32), AFFINE),
                    out / f"{sid}_pseudoSTIR.nii.gz")
        if sid == uncertainty_for:
            save_volume(Volume(np.full(SHAPE, 10.0, np.float32), AFFINE), out / f"{sid}_pseudoSTIR_uncertainty.nii.gz")
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    phantom = _phantom(root / "phantom", 3)
    preds = _predictions(phantom, root / "pred", noise=15.0, uncertainty_for="sub-0002")
    # these predictions are written in the STIR's own scale (not the T2w's, as synthseq writes them): "own"
    report = evaluate_paths(preds, phantom, root / "out", inputs=phantom, seed=7, use_lpips=False, pred_norm="own")
    return root, report


def test_auto_scores_predictions_in_their_t2w_scale(tmp_path):
    """A perfect prediction written the way synthseq writes it (model space -> the T2w's scale) scores perfectly
    with the default pred_norm="auto" once the T2w is given."""
    from synthseq.data.datasets import body_mask_from_intensity
    from synthseq.data.normalize import apply_normalization, denormalize, fit_normalization

    phantom = _phantom(tmp_path / "phantom", 2)
    for i in (1, 2):
        sid = f"sub-{i:04d}"
        subj = _subject(i)
        body = subj["labels"] > 0
        target_params = fit_normalization(subj["STIR"], "percentile", M.METRIC_PERCENTILES, body)
        t2w_params = fit_normalization(subj["T2w"], "percentile", M.METRIC_PERCENTILES,
                                       body_mask_from_intensity(subj["T2w"]))
        pred = denormalize(apply_normalization(subj["STIR"], target_params), t2w_params)
        save_volume(Volume(pred, AFFINE), tmp_path / "pred" / f"{sid}_pseudoSTIR.nii.gz")
    evaluate_paths(tmp_path / "pred", phantom, tmp_path / "out", inputs=phantom, use_lpips=False)
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    model = table[table.method == "pseudo_stir"]
    assert model["mae"].lt(1e-3).all() and model["ssim"].gt(0.999).all()


def test_writes_three_outputs_with_baselines_in_the_same_table(evaluated):
    root, report = evaluated
    out = root / "out"
    assert report == out / "report.html"
    table = pd.read_csv(out / "metrics.csv")
    assert sorted(table["subject"].unique()) == ["sub-0001", "sub-0002", "sub-0003"]
    assert set(table["method"]) == {"pseudo_stir", "histmatch", "linear_pooled", "linear_oracle"}
    assert len(table) == 12 and (table["mask"] == "labels").all()
    assert {"mae", "psnr", "ssim", "lpips", "cr_marrow_edema", "cnr_marrow_edema",
            "cnr_target_marrow_edema"} <= set(table.columns)
    assert table["lpips"].isna().all()  # not requested here: NaN, never a made-up number
    model = table[table.method == "pseudo_stir"].set_index("subject")
    for method in ("histmatch", "linear_pooled"):
        base = table[table.method == method].set_index("subject")
        # fat is bright on T2w but dark on STIR: no monotone / linear map gets it, the near-perfect prediction does
        assert (model["ssim"] > base["ssim"]).all()
        assert (model["mae"] < base["mae"]).all()
    assert model["ssim"].between(0.5, 1.0).all() and model["psnr"].gt(15).all()
    assert model["cr_marrow_edema"].between(0.8, 1.2).all()
    # the lesion (950) is bright against marrow (500) on this scene's T2w too: visible on the input
    assert table["cnr_input_marrow_edema"].gt(2).all()


def test_summary_has_seeded_bootstrap_cis(evaluated):
    root, _ = evaluated
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["n_subjects"] == 3 and summary["seed"] == 7
    table = pd.read_csv(root / "out" / "metrics.csv")
    for method in ("pseudo_stir", "histmatch", "linear_pooled", "linear_oracle"):
        for metric in ("ssim", "mae", "cr_marrow_edema"):
            st = summary["methods"][method][metric]
            values = table[table.method == method][metric]
            assert st["n"] == 3 and st["mean"] == pytest.approx(values.mean(), rel=1e-5)
            tol = 1e-5 * max(1.0, abs(values).max())  # metrics.csv keeps 6 significant digits
            assert values.min() - tol <= st["ci_low"] <= st["mean"] <= st["ci_high"] <= values.max() + tol
    assert summary["methods"]["pseudo_stir"]["lpips"]["mean"] is None
    assert "lpips" in summary and "data_range = 2.0" in summary["conventions"]["normalization"]


def test_report_embeds_a_montage_per_subject(evaluated):
    root, report = evaluated
    text = report.read_text()
    for sid in ("sub-0001", "sub-0002", "sub-0003"):
        png = root / "out" / "montages" / f"{sid}.png"
        assert f'src="montages/{sid}.png"' in text
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ORACLE" in text and "histmatch" in text
    # the subject with an uncertainty map gets an extra column: a wider figure
    from PIL import Image

    widths = {sid: Image.open(root / "out" / "montages" / f"{sid}.png").size[0] for sid in ("sub-0001", "sub-0002")}
    assert widths["sub-0002"] > widths["sub-0001"]


def test_perfect_prediction_in_file_mode_via_the_cli(tmp_path, capsys):
    phantom = _phantom(tmp_path / "phantom", 1)
    d = phantom / "sub-0001"
    rc = main(["evaluate", "--pred", str(d / "sub-0001_STIR.nii.gz"), "--target", str(d / "sub-0001_STIR.nii.gz"),
               "--lesions", str(d / "sub-0001_lesions.nii.gz"), "--mask", str(d / "sub-0001_labels.nii.gz"),
               "--out", str(tmp_path / "out")])
    assert rc == 0 and "report.html" in capsys.readouterr().out
    row = pd.read_csv(tmp_path / "out" / "metrics.csv").iloc[0]
    assert row["subject"] == "sub-0001" and row["method"] == "pseudo_stir"
    assert row["ssim"] == pytest.approx(1.0, abs=1e-6) and row["mae"] == pytest.approx(0.0, abs=1e-7)
    assert row["cr_marrow_edema"] == pytest.approx(1.0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["methods"]["pseudo_stir"]["ssim"]["ci_low"] is None  # one subject: no CI


def test_training_subjects_fit_the_fair_baselines(tmp_path):
    phantom = _phantom(tmp_path / "phantom", 4)
    preds = _predictions(phantom, tmp_path / "pred", noise=15.0)
    for sid in ("sub-0001", "sub-0002"):  # only the held-out subjects have predictions
        (preds / f"{sid}_pseudoSTIR.nii.gz").unlink()
    report = evaluate_paths(preds, phantom, tmp_path / "out", inputs=phantom, train_subjects=["sub-0001", "sub-0002"],
                            use_lpips=False)
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert sorted(table["subject"].unique()) == ["sub-0003", "sub-0004"]
    assert "fit on 2 training subject(s)" in report.read_text()


def test_bootstrap_ci_is_seeded_and_handles_small_samples():
    values = [0.5, 0.7, 0.9, 0.6, float("nan")]
    a, b = bootstrap_ci(values, seed=1), bootstrap_ci(values, seed=1)
    assert a == b and a["n"] == 4 and a["mean"] == pytest.approx(0.675)
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert bootstrap_ci([0.3])["ci_low"] is None and bootstrap_ci([])["mean"] is None


def test_errors_are_one_line(tmp_path):
    phantom = _phantom(tmp_path / "phantom", 1)
    other = tmp_path / "pred"
    save_volume(Volume(np.ones(SHAPE, np.float32), AFFINE), other / "sub-0099_pseudoSTIR.nii.gz")
    with pytest.raises(InputError, match="no \\*_STIR.nii.gz matches") as info:
        evaluate_paths(other, phantom, tmp_path / "out")
    assert "\n" not in str(info.value)
    wrong = tmp_path / "wrong"  # a prediction grid the target's field of view does not reach (another grid is
    far = AFFINE.copy()         # resampled onto the prediction's, tests/data_pipeline/test_grids.py)
    far[:3, 3] += 5000.0
    save_volume(Volume(np.ones((5, 5, 5), np.float32), far), wrong / "sub-0001_pseudoSTIR.nii.gz")
    with pytest.raises(InputError, match="field of view does not overlap"):
        evaluate_paths(wrong, phantom, tmp_path / "out")
    with pytest.raises(InputError, match="no such file"):
        evaluate_paths(tmp_path / "missing", phantom, tmp_path / "out")


def test_train_subjects_from_a_splits_file_or_a_list(tmp_path):
    from synthseq.evaluation import parse_train_subjects

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["sub-0001", "sub-0002"], "val": [], "test": ["sub-0003"]}))
    assert parse_train_subjects(str(splits)) == ["sub-0001", "sub-0002"]
    assert parse_train_subjects("sub-0001, sub-0004") == ["sub-0001", "sub-0004"]
    assert parse_train_subjects(None) is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="'train' list"):
        parse_train_subjects(str(tmp_path / "bad.json"))


def test_pred_norm_input_keeps_the_scale_predictions_were_written_in():
    from synthseq.data.normalize import denormalize, normalize
    from synthseq.evaluation import SubjectData, evaluate_volumes, input_params

    arrays = _subject(1)
    body = M.body_mask_from_labels(arrays["labels"])
    target_n = normalize(arrays["STIR"], mask=body)[0]
    s = SubjectData("sub-0001", pred=Volume(arrays["STIR"], AFFINE), target=Volume(arrays["STIR"], AFFINE),
                    t2w=Volume(arrays["T2w"], AFFINE), labels=arrays["labels"], lesions=arrays["lesions"])
    # a prediction with half the target's contrast, written in the T2w's scale (as synthseq writes pseudo-STIR)
    s.pred = Volume(denormalize(0.5 * target_n, input_params(s)), AFFINE)
    own = evaluate_volumes([s], baselines=False, use_lpips=False, pred_norm="own").iloc[0]
    kept = evaluate_volumes([s], baselines=False, use_lpips=False, pred_norm="input").iloc[0]
    # its own percentiles stretch it back onto the target; the T2w's keep the halved contrast
    assert own["mae"] < 1e-4 and own["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert kept["mae"] == pytest.approx(0.5 * np.abs(target_n[body]).mean(), rel=1e-3)
    assert kept["ssim"] < 0.95 and kept["cr_marrow_edema"] < 0.9
    with pytest.raises(InputError, match="needs the subject's T2w"):
        evaluate_volumes([SubjectData("x", s.pred, s.target)], baselines=False, use_lpips=False, pred_norm="input")
