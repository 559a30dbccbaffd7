"""synthseq.erasure: a lesion deleted on purpose is flagged, the real STIR is not; files, sidecar, log, phantom score."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from synthseq import erasure
from synthseq.cli import main
from synthseq.config import load_config, to_dict
from synthseq.io import save_volume
from synthseq.metrics import LESION_CODES, reference_masks
from synthseq.models import build_gan
from synthseq.phantom import generate_subject
from synthseq.training.checkpoint import FORMAT, save_checkpoint


@pytest.fixture(scope="module")
def case():
    """A known default-preset subject (seed 2: fracture, PLC injury, cord oedema, prevertebral oedema, disc injury)."""
    return generate_subject("sub-0001", rng_seed=2, preset="default")


def _deleted(rec, name: str):
    """The real STIR with lesion class ``name`` painted over by its normal reference tissue's mean."""
    les = rec.lesions.data
    ref = reference_masks(rec.labels.data, les, slice_axis=2)[name]
    st = rec.stir.data.copy()
    st[les == LESION_CODES[name]] = st[ref].mean()
    return rec.stir.with_data(st), les == LESION_CODES[name]


def test_quiet_on_the_real_stir_itself(case):
    flags, rep = erasure.check(case.t2w, case.stir, case.t1w)
    assert rep["missing"] == 0 and rep["unsupported"] == 0 and not flags.data.any()
    assert flags.shape == case.t2w.shape and flags.data.dtype == np.uint8
    np.testing.assert_array_equal(flags.affine, case.t2w.affine)


@pytest.mark.parametrize("name", ["plc_injury", "prevertebral_edema"])
def test_flags_a_lesion_deleted_on_purpose(case, name):
    pseudo, lesion = _deleted(case, name)
    flags, rep = erasure.check(case.t2w, pseudo, case.t1w)
    assert rep["missing"] >= 1
    assert (flags.data[lesion] == erasure.MISSING).mean() > 0.8  # the flag lies on the deleted lesion
    assert rep["unsupported"] == 0


def test_t2w_only_also_flags_the_deleted_prevertebral_edema(case):
    pseudo, lesion = _deleted(case, "prevertebral_edema")
    flags, rep = erasure.check(case.t2w, pseudo, None)
    assert not rep["used_t1w"] and (flags.data[lesion] == erasure.MISSING).mean() > 0.5
    real_flags, real = erasure.check(case.t2w, case.stir, None)
    # T2w alone cannot tell fat from fluid (some missing flags remain, see docs), nor support what only STIR shows:
    # the one unsupported focus on the real STIR is its PLC injury (fluid where the ligament's fat was, about as
    # bright on T2w), which the T1w run above supports through the water image
    unsupported = real_flags.data == erasure.UNSUPPORTED
    assert real["unsupported"] == 1
    assert (unsupported & ndimage.binary_dilation(case.lesions.data == LESION_CODES["plc_injury"], iterations=2)).sum() \
        == unsupported.sum()


def test_names_lines_and_sidecar_counts():
    assert erasure.flags_path("a/sub-01_pseudoSTIR.nii.gz") == Path("a/sub-01_pseudoSTIR_flags.nii.gz")
    assert erasure.flags_path("sub-01_desc-pseudo_STIR.nii.gz").name == "sub-01_desc-pseudoFlags_dseg.nii.gz"
    rep = {"missing": 1, "unsupported": 0, "used_t1w": True, "settings": {"bright": 0.3}}
    assert erasure.summary_line("sub-01", rep) == ("sub-01: erasure check: 1 T2w focus missing in the pseudo-STIR, "
                                                   "0 unsupported pseudo-STIR foci")
    side = erasure.sidecar_counts(rep)
    assert side["Missing"] == 1 and side["Unsupported"] == 0 and side["FlagCodes"]["1"] == "missing_t2w_focus"


def test_score_against_phantom_lesions():
    flags = np.zeros((10, 10, 3), np.uint8)
    a = np.zeros(flags.shape, bool)
    a[1:3, 1:3, 1] = True
    b = np.zeros(flags.shape, bool)
    b[6:8, 6:8, 1] = True
    flags[1, 1, 1] = erasure.MISSING  # on the erased lesion a
    flags[5, 0, 0] = erasure.MISSING  # far from any erased lesion: a false alarm
    lesions = [{"erased": True, "mask": a}, {"erased": True, "mask": b}, {"erased": False, "mask": ~(a | b)}]
    sc = erasure.score_against_lesions(flags, lesions)
    assert sc["erased_lesions"] == 2 and sc["erased_flagged"] == 1 and sc["false_alarms"] == 1
    assert sc["missing_flags"] == 2 and sc["visible_lesions"] == 3


def _isl_block(rng):
    """A 24 x 24 x 4 patch: interspinous ligament (labels 15) around a PLC injury (lesion 2), and a marrow strip
    (labels 6) with a haemangioma (lesion 9); model-space images with real STIR's dark ligament (-0.86)."""
    labels = np.full((24, 24, 4), 15, np.uint8)
    labels[:, 18:] = 6
    lesions = np.zeros_like(labels)
    lesions[8:14, 6:12, 1:3] = 2
    lesions[8:12, 19:23, 1:3] = 9
    noise = lambda: rng.normal(0, 0.03, labels.shape)  # noqa: E731
    t2 = np.where(labels == 15, -0.6, -0.1) + noise()
    t2[lesions > 0] = 0.3
    stir = np.where(labels == 15, -0.86, -0.6) + noise()
    stir[lesions == 2], stir[lesions == 9] = 0.26, -0.8  # PLC bright, haemangioma dark on STIR
    return labels, lesions, t2, stir


def test_erased_lesions_go_by_the_step_not_the_ratio():
    labels, lesions, t2, stir = _isl_block(np.random.default_rng(0))
    brighter = stir + np.where(labels == 15, 0.19, 0.0)  # ligament and lesion both 0.19 brighter: step kept
    found = erasure.erased_lesions(brighter, stir, t2, lesions, labels)
    assert [f["class"] for f in found] == ["plc_injury"]  # the haemangioma is dark on STIR: not an erasable focus
    assert found[0]["recovery"] < 0.5 and abs(found[0]["step_recovery"] - 1) < 0.05 and not found[0]["erased"]
    flat = stir.copy()
    flat[lesions == 2] = stir[(labels == 15) & (lesions == 0)].mean()
    (gone,) = erasure.erased_lesions(flat, stir, t2, lesions, labels)
    assert gone["erased"] and abs(gone["step_recovery"]) < 0.1


def test_deletion_trials_measure_the_check_lesion_by_lesion(case):
    res = erasure.deletion_trials(case.t2w, case.stir, case.lesions.data, case.labels.data, case.t1w)
    classes = {t["class"] for t in res["trials"]}
    # trials delete what the T2w shows (CNR >= 3): not marrow oedema nor, since the interspinous spaces hold 65 %
    # fat, the PLC injury (test_flags_a_lesion_deleted_on_purpose covers its deletion through the T1w)
    assert {"prevertebral_edema", "disc_injury"} <= classes and not {"marrow_edema", "plc_injury"} & classes
    assert all(t["flagged"] for t in res["trials"]) and res["baseline"]["missing"] == 0
    frac = {t["class"]: t["flag_fraction"] for t in res["trials"]}
    assert frac["disc_injury"] > 0.8 and frac["prevertebral_edema"] > 0.8  # the flag lies on the deleted lesion
    t2_only = erasure.deletion_trials(case.t2w, case.stir, case.lesions.data, case.labels.data, None)
    by = {t["class"]: t["flagged"] for t in t2_only["trials"]}
    assert by["prevertebral_edema"] and not t2_only["baseline"]["used_t1w"]


# -------------------------------------------------------------------------------------- synthesize
def _checkpoint(path: Path) -> Path:
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                             "model.discriminator_kwargs={base_channels: 4}", "infer.batch_size=4"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    ckpt = {"format": FORMAT, "synthseq_version": "test", "kind": "pix2pix", "config": to_dict(cfg),
            "model": model.state_dict(), "optimizers": {}, "schedulers": {}, "scaler": {}, "step": 0, "rng": {},
            "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]}, "pixel_spacing_mm": None,
            "image_size": 32, "context_slices": 1, "input_keys": ["T2w"],
            "best": {"metric": "ssim", "value": None, "step": None}}
    return save_checkpoint(ckpt, path)


def test_synthesize_writes_the_flag_map_counts_and_a_log_line(tmp_path, capsys):
    rec = generate_subject("sub-0003", rng_seed=3, preset="tiny")
    src = save_volume(rec.t2w, tmp_path / "sub-0003_T2w.nii.gz", dtype=np.float32)
    ck = _checkpoint(tmp_path / "ck.pt")
    out = tmp_path / "sub-0003_pseudoSTIR.nii.gz"
    assert main(["synthesize", "--checkpoint", str(ck), "--input", str(src), "--output", str(out),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "erasure check:" in err and "sub-0003_T2w.nii.gz" in err
    fl = nib.load(tmp_path / "sub-0003_pseudoSTIR_flags.nii.gz")
    assert fl.get_data_dtype() == np.uint8 and fl.shape == rec.t2w.shape
    np.testing.assert_array_equal(fl.affine, nib.load(src).affine)
    side = json.loads((tmp_path / "sub-0003_pseudoSTIR_flags.json").read_text())
    counts = side["ErasureCheck"]
    assert set(np.unique(np.asarray(fl.dataobj))) <= {0, 1, 2}
    assert counts["Missing"] == int(erasure.check(rec.t2w, nib_volume(out), None)[1]["missing"])
    main_side = json.loads((tmp_path / "sub-0003_pseudoSTIR.json").read_text())
    assert main_side["ErasureCheck"] == counts
    # --no-erasure-check writes no flag map
    out2 = tmp_path / "b" / "x_pseudoSTIR.nii.gz"
    out2.parent.mkdir()
    assert main(["synthesize", "--checkpoint", str(ck), "--input", str(src), "--output", str(out2), "--device",
                 "cpu", "--no-erasure-check"]) == 0
    assert not (tmp_path / "b" / "x_pseudoSTIR_flags.nii.gz").exists()


def nib_volume(path):
    from synthseq.io import load_volume

    return load_volume(path)
