"""synthseq.provenance: outputs marked synthetic (descrip, intent, sidecar), BIDS derivatives, refusal of outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthseq import __version__
from synthseq.cli import main
from synthseq.errors import InputError
from synthseq.io import Volume, save_volume
from synthseq.provenance import (
    derivative_name,
    descrip,
    is_bids_dataset,
    plan_bids_outputs,
    save_marked,
    sidecar_path,
)
from synthseq.synthesis import synthesize_path

SHAPE = (6, 20, 24)  # RAS: 6 sagittal slices of 20 (A-P) x 24 (S-I)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, checkpoint_writer) -> Path:
    torch.set_num_threads(1)
    return checkpoint_writer(tmp_path_factory.mktemp("ckpt") / "tiny.pt", ["infer.uncertainty_samples=2"])


def _t2w(path: Path, seed: int = 0) -> Path:
    """An int16 T2w whose header carries an acquired image's description (as scanners write it)."""
    rng = np.random.default_rng(seed)
    _, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    data = np.where(y ** 2 + z ** 2 < 0.7, 400.0, 10.0) + rng.normal(0, 5, SHAPE)
    affine = np.diag([3.0, 1.0, 1.0, 1.0])
    img = nib.Nifti1Image(data.astype(np.int16), affine)
    img.header["descrip"] = b"Philips T2w TR=3820 TE=105"
    img.header.set_intent("none")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ header + sidecar
def test_outputs_are_marked_synthetic_with_provenance(tmp_path, ckpt):
    src = _t2w(tmp_path / "in" / "sub-01_T2w.nii.gz")
    out = tmp_path / "out" / "sub-01_pseudoSTIR.nii.gz"
    written = synthesize_path(ckpt, src, out, device="cpu", uncertainty=True)
    assert written == [out, out.with_name("sub-01_pseudoSTIR_uncertainty.nii.gz")]
    for path, kind, intent_name in ((written[0], "pseudo", "pseudoSTIR"), (written[1], "uncertainty",
                                                                           "pseudoSTIR_SD")):
        hdr = nib.load(str(path)).header
        text = hdr["descrip"].tobytes().decode().rstrip("\0")
        assert text.startswith("SYNTHETIC pseudo-STIR") and f"synthseq {__version__}" in text
        assert "T2w TR=" not in text  # the acquired T2w's description is never copied
        assert hdr.get_intent()[0] == "estimate" and hdr.get_intent()[2] == intent_name
        side = json.loads(sidecar_path(path).read_text())
        assert side["Synthetic"] is True and side["ImageKind"] == kind
        assert side["SynthseqVersion"] == __version__
        assert side["GeneratedBy"][0] == {"Name": "synthseq", "Version": __version__}
        assert side["Checkpoint"]["Path"] == str(ckpt.resolve())
        assert side["Checkpoint"]["SHA256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert side["Checkpoint"]["Kind"] == "pix2pix"
        assert side["InputFiles"] == [{"Path": str(src.resolve()), "SHA256": hashlib.sha256(src.read_bytes()).hexdigest(),
                                       "Role": "T2w"}]
        assert side["ModelInputs"] == ["T2w"] and side["SlicePlane"] == "sagittal"
        pre = side["Preprocessing"]
        assert pre["Normalization"] == "percentile" and pre["NormalizationPercentiles"] == [0.5, 99.5]
        assert pre["PixelSpacingMM"] == [1.0, 1.0] and pre["ContextSlices"] == 1
        assert side["DateCreated"][:2] == "20" and side["DateCreated"].endswith("+00:00")
        assert "not for diagnosis" in side["IntendedUse"]
        assert "Sources" not in side  # not a BIDS run
    assert "2 stochastic passes" in json.loads(sidecar_path(written[1]).read_text())["UncertaintyMethod"]
    # the image itself is the unscaled float32 pseudo-STIR on the input's grid
    img = nib.load(str(written[0]))
    assert img.get_data_dtype() == np.float32 and img.shape == SHAPE
    np.testing.assert_array_equal(img.affine, nib.load(str(src)).affine)


def test_extra_keys_reach_the_sidecar_and_cannot_replace_provenance(tmp_path):
    vol = Volume(np.ones(SHAPE, np.float32), np.eye(4))
    info = {"SynthseqVersion": __version__, "ModelInputs": ["T2w"], "Checkpoint": {"Path": None, "SHA256": None}}
    from synthseq.provenance import build_sidecar

    side = build_sidecar(info, [], "flags", extra={"ErasureCheck": {"erased": 2, "unsupported": 0}})
    path = save_marked(vol, tmp_path / "x_flags.nii.gz", side, "flags", dtype=np.uint8)
    got = json.loads((tmp_path / "x_flags.json").read_text())
    assert got["ErasureCheck"] == {"erased": 2, "unsupported": 0}
    hdr = nib.load(str(path)).header
    assert hdr.get_intent()[0] == "label" and hdr["descrip"].tobytes().startswith(b"SYNTHETIC pseudo-STIR erasure")
    with pytest.raises(ValueError, match="Checkpoint"):
        build_sidecar(info, [], "pseudo", extra={"Checkpoint": "forged"})


def test_descrip_fits_nifti_and_keeps_the_word_synthetic():
    assert len(descrip("uncertainty", "1.2.3")) <= 80
    long = descrip("uncertainty", "9" * 100)
    assert len(long) == 80 and long.startswith("SYNTHETIC pseudo-STIR uncertainty")


def test_existing_image_or_sidecar_is_refused_before_any_work(tmp_path, ckpt):
    src = _t2w(tmp_path / "sub-01_T2w.nii.gz")
    out = tmp_path / "o" / "sub-01_pseudoSTIR.nii.gz"
    out.parent.mkdir()
    sidecar_path(out).write_text("{}")  # only the sidecar exists: still refused, image not written
    with pytest.raises(InputError, match=r"sub-01_pseudoSTIR\.json: already exists"):
        synthesize_path(ckpt, src, out, device="cpu")
    assert not out.exists() and sidecar_path(out).read_text() == "{}"
    synthesize_path(ckpt, src, out, device="cpu", overwrite=True)
    assert json.loads(sidecar_path(out).read_text())["Synthetic"] is True


def test_failed_image_write_leaves_no_sidecar(tmp_path):
    vol = Volume(np.ones(SHAPE, np.float32), np.eye(4), path=tmp_path / "in.nii.gz")
    save_volume(vol, tmp_path / "in.nii.gz")
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        save_marked(vol, tmp_path / "in.nii.gz", {"Synthetic": True}, overwrite=True)
    assert not (tmp_path / "in.json").exists() and not list(tmp_path.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------- BIDS derivatives
def _bids(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny spine", "BIDSVersion": "1.9.0"}))
    _t2w(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz", 1)
    _t2w(root / "sub-01" / "anat" / "sub-01_acq-stir_T2w.nii.gz", 2)  # a STIR by the layout's key map: no input
    _t2w(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_acq-sag_T2w.nii.gz", 3)
    (root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_acq-sag_T2w.json").write_text('{"EchoTime": 0.1}')
    return root


def test_bids_dataset_gives_a_derivative_dataset_and_leaves_the_raw_data_alone(tmp_path, ckpt, capsys):
    root = _bids(tmp_path / "bids")
    before = _tree_digest(root)
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(root), "--device", "cpu",
                 "--uncertainty"]) == 0
    deriv = root / "derivatives" / "synthseq"
    assert sorted(str(p.relative_to(deriv)) for p in deriv.rglob("*") if p.is_file()) == [
        "dataset_description.json",
        "sub-01/anat/sub-01_desc-pseudoFlags_dseg.json",  # the erasure check's flag map (on in the CLI)
        "sub-01/anat/sub-01_desc-pseudoFlags_dseg.nii.gz",
        "sub-01/anat/sub-01_desc-pseudoUncertainty_STIR.json",
        "sub-01/anat/sub-01_desc-pseudoUncertainty_STIR.nii.gz",
        "sub-01/anat/sub-01_desc-pseudo_STIR.json",
        "sub-01/anat/sub-01_desc-pseudo_STIR.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudoFlags_dseg.json",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudoFlags_dseg.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudoUncertainty_STIR.json",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudoUncertainty_STIR.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudo_STIR.json",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudo_STIR.nii.gz",
    ]
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    assert desc["GeneratedBy"][0]["Name"] == "synthseq" and desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["DatasetLinks"] == {"raw": "../.."} and "tiny spine" in desc["Name"]
    side = json.loads((deriv / "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudo_STIR.json").read_text())
    assert side["Sources"] == ["bids:raw:sub-02/ses-1/anat/sub-02_ses-1_acq-sag_T2w.nii.gz"]
    # the raw dataset: every byte as before, apart from the derivatives folder
    after = {k: v for k, v in _tree_digest(root).items() if not k.startswith("derivatives")}
    assert after == before
    # a second run refuses the existing outputs; --overwrite replaces them
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(root), "--device", "cpu"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(root), "--device", "cpu",
                 "--overwrite", "--subjects", "sub-01"]) == 0


def test_bids_output_elsewhere_and_refusals(tmp_path):
    root = _bids(tmp_path / "bids")
    out, pairs = plan_bids_outputs(root, tmp_path / "deriv")
    assert out == tmp_path / "deriv"
    assert [(p.relative_to(root).as_posix(), q.relative_to(out).as_posix()) for p, q in pairs] == [
        ("sub-01/anat/sub-01_T2w.nii.gz", "sub-01/anat/sub-01_desc-pseudo_STIR.nii.gz"),
        ("sub-02/ses-1/anat/sub-02_ses-1_acq-sag_T2w.nii.gz",
         "sub-02/ses-1/anat/sub-02_ses-1_acq-sag_desc-pseudo_STIR.nii.gz")]
    for bad in (root, root / "sub-01", root / "derivatives"):
        with pytest.raises(InputError, match="inside the raw BIDS dataset"):
            plan_bids_outputs(root, bad)
    other = tmp_path / "fmriprep"
    other.mkdir()
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]}))
    with pytest.raises(InputError, match="belongs to another dataset"):
        plan_bids_outputs(root, other)
    with pytest.raises(InputError, match="'sub-09' has no T2w"):
        plan_bids_outputs(root, None, subjects=["sub-09"])
    assert is_bids_dataset(root) and not is_bids_dataset(root / "sub-01")


def test_derivative_names():
    assert derivative_name("sub-01_T2w.nii.gz") == "sub-01_desc-pseudo_STIR.nii.gz"
    assert derivative_name("sub-01_ses-2_run-1_T2w.nii", "uncertainty") == "sub-01_ses-2_run-1_desc-pseudoUncertainty_STIR.nii"
    assert derivative_name("sub-01_acq-x_T2w.nii.gz", "flags") == "sub-01_acq-x_desc-pseudoFlags_dseg.nii.gz"
    with pytest.raises(InputError, match="not a BIDS T2w file name"):
        derivative_name("t2.nii.gz")


def test_output_may_be_left_out_only_for_a_bids_dataset(tmp_path, ckpt, capsys):
    src = _t2w(tmp_path / "sub-01_T2w.nii.gz")
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output is required" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01_T2w.nii.gz"]


def test_python_api_outputs_carry_the_marks_even_through_plain_save_volume(tmp_path, ckpt):
    from synthseq.io import load_volume
    from synthseq.synthesis import Synthesizer

    synth = Synthesizer.from_checkpoint(ckpt, device="cpu")
    t2w = load_volume(_t2w(tmp_path / "sub-01_T2w.nii.gz"))
    pred, unc = synth.predict(t2w, uncertainty=True)
    for vol, name, kind in ((pred, "p.nii.gz", "pseudo-STIR by"), (unc, "u.nii.gz", "pseudo-STIR uncertainty")):
        hdr = nib.load(str(save_volume(vol, tmp_path / name))).header
        assert hdr["descrip"].tobytes().decode().startswith(f"SYNTHETIC {kind}")
    headerless = Volume(t2w.data, t2w.affine)  # e.g. a DICOM series: no NIfTI header to copy
    assert synth(headerless).header["descrip"].tobytes().startswith(b"SYNTHETIC pseudo-STIR")
    assert t2w.header["descrip"].tobytes().startswith(b"Philips T2w")  # the input's own header is untouched
