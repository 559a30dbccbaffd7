"""Different grids: `synthseq resample`, and evaluate / reader-study build resampling targets onto the
prediction's grid themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from synthseq.cli import main
from synthseq.io import load_volume


def _coarse(h, path, data, affine, factor=2):
    """``data`` (fine grid ``affine``) averaged into ``factor``-times bigger voxels, with the matching affine."""
    x, y, z = (n // factor for n in data.shape)
    small = data[: x * factor, : y * factor, : z * factor].reshape(x, factor, y, factor, z, factor).mean((1, 3, 5))
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] * factor
    aff[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.full(3, (factor - 1) / 2)  # same field of view
    return h.write_nifti(path, small.astype(np.float32), aff)


def _pair(h, tmp_path):
    t2w, stir, labels = h.synthetic_subject((24, 30, 20), seed=3)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    t2 = h.write_nifti(tmp_path / "sub-01_T2w.nii.gz", t2w, affine)
    pred = h.write_nifti(tmp_path / "pred" / "sub-01_pseudoSTIR.nii.gz", stir, affine)  # a perfect prediction
    coarse = _coarse(h, tmp_path / "coarse" / "sub-01_STIR.nii.gz", stir, affine)
    return t2, pred, coarse, stir, labels, affine


def test_resample_command_linear_and_nearest(h, tmp_path, capsys):
    t2, _, coarse, stir, labels, affine = _pair(h, tmp_path)
    out = tmp_path / "stir_on_t2.nii.gz"
    assert main(["resample", str(coarse), "--like", str(t2), "--out", str(out)]) == 0
    vol = load_volume(out)
    assert vol.shape == (24, 30, 20) and np.allclose(vol.affine, affine)
    # independent reference: fine voxel i sits at coarse coordinate (i - 0.5) / 2 (trilinear in the interior)
    small = load_volume(coarse).data
    grid = np.stack(np.meshgrid(*[(np.arange(n) - 0.5) / 2 for n in (24, 30, 20)], indexing="ij"))
    expected = ndimage.map_coordinates(small, grid, order=1, mode="nearest")
    np.testing.assert_allclose(vol.data[1:-1, 1:-1, 1:-1], expected[1:-1, 1:-1, 1:-1], rtol=1e-4, atol=1e-3)
    body = labels > 0
    assert np.corrcoef(vol.data[body], stir[body])[0, 1] > 0.8  # the same anatomy, blurred by the coarse grid
    assert "linear" in capsys.readouterr().out
    lab = _coarse(h, tmp_path / "lab_coarse.nii.gz", labels.astype(np.float32), affine)
    lab_img = load_volume(lab, allow_zero=True)
    h.write_nifti(tmp_path / "lab_int.nii.gz", np.rint(lab_img.data).astype(np.uint8), lab_img.affine, np.uint8)
    out2 = tmp_path / "lab_on_t2.nii.gz"
    assert main(["resample", str(tmp_path / "lab_int.nii.gz"), "--like", str(t2), "--out", str(out2),
                 "--labels"]) == 0
    codes = load_volume(out2, allow_zero=True).data
    assert set(np.unique(codes)) <= set(np.unique(np.rint(lab_img.data)))  # nearest: no new codes


@pytest.mark.parametrize("args, phrase", [
    (["--out", "{tmp}/x.txt"], "output must end in .nii or .nii.gz"),
    (["--out", "{tmp}/exists.nii.gz"], "already exists"),
    (["--out", "{tmp}/sub-01_T2w.nii.gz", "--overwrite"], "refusing to overwrite an input file"),
])
def test_resample_bad_inputs_one_line_exit_2_nothing_written(h, tmp_path, capsys, args, phrase):
    t2, _, coarse, *_ = _pair(h, tmp_path)
    (tmp_path / "exists.nii.gz").write_bytes(b"x")
    before = sorted(p for p in tmp_path.rglob("*"))
    code = main(["resample", str(coarse), "--like", str(t2), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and phrase in err and err.count("\n") == 1 and err.startswith("synthseq: error: ")
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "exists.nii.gz").read_bytes() == b"x"


def _rows(folder):
    lines = (folder / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    return {r["method"]: r for r in (dict(zip(header, line.split(","))) for line in lines[1:])}


def test_evaluate_with_a_coarser_stir_resamples_it_and_says_so(h, tmp_path, capsys):
    from synthseq.data.registration import resample_to
    from synthseq.evaluation import evaluate_paths
    from synthseq.io import save_volume

    t2, pred, coarse, *_ = _pair(h, tmp_path)
    report = evaluate_paths(pred, coarse, tmp_path / "ev", inputs=t2, use_lpips=False, pred_norm="own")
    err = capsys.readouterr().err
    assert "resampled onto the prediction's grid (linear for images, nearest for labels and masks): " \
           "sub-01 target" in err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["resampled_onto_prediction_grid"] == ["sub-01 target"]
    assert "Resampled onto the prediction&#x27;s grid" in report.read_text()
    # the same numbers as resampling by hand first (linear), and lower than against the fine STIR itself
    by_hand = save_volume(resample_to(load_volume(coarse), load_volume(t2), order=1),
                          tmp_path / "hand" / "sub-01_STIR.nii.gz")
    evaluate_paths(pred, by_hand, tmp_path / "ev_hand", inputs=t2, use_lpips=False, pred_norm="own")
    assert "resampled" not in capsys.readouterr().err
    fine = h.write_nifti(tmp_path / "fine" / "sub-01_STIR.nii.gz", load_volume(pred).data, load_volume(t2).affine)
    evaluate_paths(pred, fine, tmp_path / "ev_fine", inputs=t2, use_lpips=False, pred_norm="own")
    auto, hand, same = (_rows(tmp_path / d)["pseudo_stir"] for d in ("ev", "ev_hand", "ev_fine"))
    for key in ("ssim", "mae", "psnr"):
        assert float(auto[key]) == pytest.approx(float(hand[key]), rel=1e-5)
    assert float(same["ssim"]) > 0.999 and float(same["mae"]) < 1e-3
    assert 0.4 < float(auto["ssim"]) < 0.95 and float(auto["mae"]) > 0.01


def test_reader_study_build_resamples_a_coarser_real_stir_onto_the_synthetic_grid(h, tmp_path, capsys):
    from synthseq.reader_study import build_study
    from synthseq.reader_study.build import read_key

    t2, pred, coarse, *_ = _pair(h, tmp_path)
    summary = build_study(tmp_path / "coarse", tmp_path / "pred", tmp_path / "study", ["A"], seed=0)
    assert summary.resampled == ["sub-01 real STIR"]
    rows = read_key(tmp_path / "study")
    assert {r["source"] for r in rows} == {"real", "synthetic"}
    assert {r["file"] for r in rows} == {str(coarse), str(pred)}  # the key names the source files
    shapes = {load_volume(tmp_path / "study" / "cases" / r["case_id"] / "stack.nii").shape for r in rows}
    assert len(shapes) == 1  # both cases show the same slices of one grid
    assert main(["reader-study", "build", "--real", str(tmp_path / "coarse"), "--synthetic", str(tmp_path / "pred"),
                 "--out", str(tmp_path / "study2"), "--readers", "A"]) == 0
    assert "resampled onto the synthetic volume's grid (linear for images, nearest for lesions): sub-01 real STIR" \
        in capsys.readouterr().out
