"""Dataset writer: layout, determinism, refusal of non-empty folders, preview, geometry and orientation."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synthseq.cli import main
from synthseq.errors import ConfigError, InputError
from synthseq.io import anatomical_axis, load_volume, orientation_code
from synthseq.phantom import PRESETS, generate_dataset, generate_subject, subject_seed

KINDS = ("T2w", "STIR", "T1w", "labels", "lesions")


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".png"}


def acq_of(meta, sid):
    return meta["subjects"][sid]["acquisition"]


def test_layout_and_dtypes(tiny_dataset):
    meta = json.loads((tiny_dataset / "dataset.json").read_text())
    assert meta["generator"] == "synthseq.phantom" and meta["seed"] == 5 and meta["preset"] == "tiny"
    assert meta["field_strength_T"] == 1.5
    assert set(meta["subjects"]) == {"sub-0001", "sub-0002", "sub-0003"}
    assert meta["labels"]["11"] == "cord" and meta["lesions"]["3"] == "cord_edema"
    assert "coefficients" in meta["cohort_model"]["ambulation_discharge"]
    acq = meta["subjects"]["sub-0002"]["acquisition"]
    assert 2500 <= acq["t2w_tr_ms"] <= 4000 and 85 <= acq["t2w_te_ms"] <= 115 and 150 <= acq["stir_ti_ms"] <= 190
    assert 450 <= acq["t1w_tr_ms"] <= 700 and 8 <= acq["t1w_te_ms"] <= 15 and acq["snr_t1w"] > 0
    assert meta["files"]["T1w"] == "{subject}/{subject}_T1w.nii.gz"
    for sid in meta["subjects"]:
        imgs = {k: nib.load(tiny_dataset / sid / f"{sid}_{k}.nii.gz") for k in KINDS}
        assert imgs["T2w"].get_data_dtype() == np.float32 and imgs["STIR"].get_data_dtype() == np.float32
        assert imgs["T1w"].get_data_dtype() == np.float32
        assert imgs["T1w"].header["descrip"].tobytes().decode().rstrip("\x00").endswith(
            f"T1w TR={acq_of(meta, sid)['t1w_tr_ms']:.0f} TE={acq_of(meta, sid)['t1w_te_ms']:.0f}")
        assert imgs["labels"].get_data_dtype() == np.uint8 and imgs["lesions"].get_data_dtype() == np.uint8
        for img in imgs.values():
            assert img.shape == imgs["T2w"].shape
            np.testing.assert_array_equal(img.affine, imgs["T2w"].affine)


def test_preview_written(tiny_dataset):
    png = (tiny_dataset / "preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_same_seed_same_bytes_and_subject_k_independent_of_n(tmp_path, tiny_dataset):
    again = generate_dataset(tmp_path / "again", subjects=3, seed=5, preset="tiny", progress=False)
    assert _digest(again) == _digest(tiny_dataset)  # every byte of the NIfTI files, cohort.csv and dataset.json
    one = generate_dataset(tmp_path / "one", subjects=1, seed=5, preset="tiny", progress=False)
    for k in KINDS:
        a = load_volume(one / "sub-0001" / f"sub-0001_{k}.nii.gz", allow_zero=True).data
        b = load_volume(tiny_dataset / "sub-0001" / f"sub-0001_{k}.nii.gz", allow_zero=True).data
        np.testing.assert_array_equal(a, b)


def test_different_seeds_different_anatomy():
    a = generate_subject("a", subject_seed(0, 0), preset="tiny")
    b = generate_subject("b", subject_seed(1, 0), preset="tiny")
    assert not np.array_equal(a.labels.data, b.labels.data)
    assert a.anatomy != b.anatomy


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match=str(out)):
        generate_dataset(out, subjects=1, preset="tiny", progress=False)
    generate_dataset(out, subjects=1, preset="tiny", overwrite=True, progress=False)
    assert (out / "sub-0001" / "sub-0001_T2w.nii.gz").exists() and (out / "keep.txt").exists()


def test_bad_arguments_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        generate_subject("s", 0, preset="huge")
    with pytest.raises(ConfigError, match="field_strength"):
        generate_subject("s", 0, preset="tiny", field_strength=7)
    with pytest.raises(ConfigError, match="subjects"):
        generate_dataset(tmp_path / "x", subjects=0)


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_geometry_and_orientation(preset, tiny_subjects, default_subject):
    rec = tiny_subjects[3] if preset == "tiny" else default_subject
    pr = PRESETS[preset]
    vol = rec.t2w
    assert orientation_code(vol.affine) == "PIR"  # like a DICOM sagittal: rows A->P, columns S->I, slices R->L... ->R
    assert anatomical_axis(vol.affine, "LR") == (2, 1)
    assert vol.shape == (*pr.matrix, pr.n_slices)
    np.testing.assert_allclose(vol.spacing, (pr.pixel_mm, pr.pixel_mm, pr.slice_mm))
    # the anatomy agrees with the affine: brain above the vertebrae, airway in front of the cord
    ijk = lambda m: np.c_[np.argwhere(m), np.ones(int(m.sum()))]  # noqa: E731
    world = lambda m: (vol.affine @ ijk(m).T)[:3].mean(axis=1)  # noqa: E731
    lab = rec.labels.data
    assert world(lab == 18)[2] > world(lab == 7)[2] + 30  # superior
    assert world(lab == 5)[1] > world(lab == 11)[1] + 15  # anterior
    assert abs(world(lab == 11)[0]) < 6  # cord near the slab's centre (midline)


def test_misregistration_shifts_only_stir():
    a = generate_subject("s", 11, preset="tiny")
    b = generate_subject("s", 11, preset="tiny", misregistration_mm=2.0)
    np.testing.assert_array_equal(a.t2w.data, b.t2w.data)
    np.testing.assert_array_equal(a.labels.data, b.labels.data)
    assert not np.array_equal(a.stir.data, b.stir.data)
    assert 1.0 - 1e-6 <= np.linalg.norm(b.acquisition["misregistration_mm"]) <= 2.0 + 1e-6


def test_field_strength_changes_the_protocol():
    a = generate_subject("s", 4, preset="tiny", field_strength=1.5)
    b = generate_subject("s", 4, preset="tiny", field_strength=3)
    assert b.acquisition["stir_ti_ms"] > a.acquisition["stir_ti_ms"] + 30
    np.testing.assert_array_equal(a.labels.data, b.labels.data)


@pytest.mark.parametrize("realism", ["classic", "faithful"])
def test_fixed_stir_te_changes_only_the_stir(realism):
    drawn = generate_subject("s", 5, preset="tiny", realism=realism)
    te = drawn.acquisition["stir_te_ms"]
    short = generate_subject("s", 5, preset="tiny", realism=realism, stir_te_ms=30.0)
    long_ = generate_subject("s", 5, preset="tiny", realism=realism, stir_te_ms=90.0)
    same = generate_subject("s", 5, preset="tiny", realism=realism, stir_te_ms=te)
    for rec in (short, long_):
        for kind in ("t2w", "t1w", "labels", "lesions"):  # the inputs carry no trace of the target's TE
            np.testing.assert_array_equal(getattr(rec, kind).data, getattr(drawn, kind).data)
        assert not np.array_equal(rec.stir.data, drawn.stir.data)
        assert {k: v for k, v in rec.acquisition.items() if k != "stir_te_ms"} == \
            {k: v for k, v in drawn.acquisition.items() if k != "stir_te_ms"}
    assert (short.acquisition["stir_te_ms"], long_.acquisition["stir_te_ms"]) == (30.0, 90.0)
    np.testing.assert_allclose(same.stir.data, drawn.stir.data, rtol=1e-5, atol=1e-3)  # noise stream unchanged
    # physics: a longer TE darkens short-T2 muscle against long-T2 CSF on STIR
    lab = drawn.labels.data
    ratio = lambda r: np.median(r.stir.data[lab == 3]) / np.median(r.stir.data[lab == 10])  # noqa: E731
    assert ratio(long_) < 0.8 * ratio(short)


@pytest.mark.parametrize("realism", ["classic", "faithful", "randomized"])
def test_stir_redraw_changes_only_the_stir_protocol_and_noise(realism):
    from synthseq.phantom.sequences import STIR_FIELDS

    drawn = generate_subject("s", 5, preset="tiny", realism=realism)
    a, b = (generate_subject("s", 5, preset="tiny", realism=realism, stir_redraw_seed=k) for k in (1, 2))
    again = generate_subject("s", 5, preset="tiny", realism=realism, stir_redraw_seed=1)
    np.testing.assert_array_equal(a.stir.data, again.stir.data)  # deterministic per seed
    for rec in (a, b):
        for kind in ("t2w", "t1w", "labels", "lesions"):
            np.testing.assert_array_equal(getattr(rec, kind).data, getattr(drawn, kind).data)
        changed = {k for k in drawn.acquisition if rec.acquisition[k] != drawn.acquisition[k]}
        assert changed and changed <= set(STIR_FIELDS)
        assert rec.acquisition.get("kspace", {}).get("vendor") == drawn.acquisition.get("kspace", {}).get("vendor")
        assert rec.acquisition["field_strength_T"] == drawn.acquisition["field_strength_T"]
    assert not np.array_equal(a.stir.data, b.stir.data)
    # the noise is redrawn too: in the air 3 voxels or more from the body (noise, hardly any blur or ghost) the
    # redrawn STIR does not correlate with the drawn one, where the same subject re-acquired at another TE with
    # the same noise stream does (~1)
    air = ndimage.binary_erosion(drawn.labels.data == 0, np.ones((3, 3, 1)), iterations=3)  # in-plane only
    corr = lambda r: np.corrcoef(drawn.stir.data[air], r.stir.data[air])[0, 1]  # noqa: E731
    same_noise = generate_subject("s", 5, preset="tiny", realism=realism, stir_te_ms=33.0)
    assert air.sum() > 500 and corr(same_noise) > 0.9 and abs(corr(a)) < 0.2
    # an explicit TE still wins over the redrawn one
    fixed = generate_subject("s", 5, preset="tiny", realism=realism, stir_redraw_seed=1, stir_te_ms=33.0)
    assert fixed.acquisition["stir_te_ms"] == 33.0
    with pytest.raises(ConfigError, match="stir_redraw_seed"):
        generate_subject("s", 5, preset="tiny", stir_redraw_seed=-1)


def test_fixed_stir_te_in_dataset_json_and_range_checked(tmp_path):
    out = generate_dataset(tmp_path / "te", subjects=1, preset="tiny", stir_te_ms=45.0, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["stir_te_ms"] == 45.0 and acq_of(meta, "sub-0001")["stir_te_ms"] == 45.0
    assert "stir_te_ms" not in json.loads((generate_dataset(tmp_path / "d", subjects=1, preset="tiny",
                                                            progress=False) / "dataset.json").read_text())
    for bad in (5.0, 400.0, float("nan")):
        with pytest.raises(ConfigError, match="stir_te_ms"):
            generate_subject("s", 0, preset="tiny", stir_te_ms=bad)


def test_cli_phantom(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["phantom", "--out", str(out), "--subjects", "1", "--seed", "2", "--preset", "tiny", "--field",
                 "3"]) == 0
    assert json.loads((out / "dataset.json").read_text())["field_strength_T"] == 3.0
    assert main(["phantom", "--out", str(out), "--subjects", "1", "--preset", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(out) in err and "\n" not in err
