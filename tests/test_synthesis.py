"""synthseq.synthesis: geometry preservation, intensity convention, uncertainty, files, errors, MONAI transform."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from synthseq.cli import main
from synthseq.config import load_config, to_dict
from synthseq.data.datasets import body_mask_from_intensity
from synthseq.data.normalize import fit_normalization
from synthseq.data.slicing import SagittalView
from synthseq.errors import InputError
from synthseq.io import Volume, load_volume, save_volume
from synthseq.models import build_gan
from synthseq.models.base import GANModel
from synthseq.synthesis import (
    Synthesizer,
    SynthesizeSequenced,
    plan_outputs,
    synthesize_path,
    uncertainty_path,
)
from synthseq.training.checkpoint import FORMAT, save_checkpoint

REAL_T2W = "sct_errsm30_T2w_sag_crop.nii.gz"
CANONICAL = (6, 20, 24)  # (S, H, W): right->left, superior->inferior, anterior->posterior


# ------------------------------------------------------------------------------------------- helpers
def _tiny_config(**extra):
    overrides = ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                 "model.discriminator_kwargs={base_channels: 4}", "infer.batch_size=4",
                 "infer.uncertainty_samples=4", *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(None, overrides)


def _checkpoint(path: Path, kind: str = "pix2pix", spacing=(1.0, 1.0)) -> Path:
    """A checkpoint with the layout of docs/overview.md around a tiny randomly initialised pix2pix."""
    cfg = _tiny_config()
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    ckpt = {
        "format": FORMAT, "synthseq_version": "test", "kind": kind, "config": to_dict(cfg),
        "model": model.state_dict(), "optimizers": {}, "schedulers": {}, "scaler": {}, "step": 0, "rng": {},
        "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]},
        "pixel_spacing_mm": list(spacing), "image_size": 32, "context_slices": 1, "input_keys": ["T2w"],
        "best": {"metric": "ssim", "value": None, "step": None},
    }
    return save_checkpoint(ckpt, path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def synth(ckpt) -> Synthesizer:
    return Synthesizer.from_checkpoint(ckpt, device="cpu")


def _anatomy(seed: int = 0) -> np.ndarray:
    """Canonical ``(S, H, W)`` blob-like image with a dark background (positive, MRI-like magnitudes)."""
    rng = np.random.default_rng(seed)
    s, h, w = CANONICAL
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros(CANONICAL, np.float32)
    for k in range(s):
        body = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2 < 1
        img[k] = body * (300 + 200 * np.sin(yy / 3.0 + k) * np.cos(xx / 4.0))
    return img + rng.random(CANONICAL).astype(np.float32) * 5


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


# storage axes -> world (columns of the affine, before voxel size)
ORIENTATIONS = {
    "RAS": np.eye(3),
    "LAS": np.diag([-1.0, 1.0, 1.0]),
    "PSR": np.array([[0.0, 0, 1], [-1, 0, 0], [0, 1, 0]]),
    "oblique": _rotation(20) @ np.array([[0.0, 0, 1], [-1, 0, 0], [0, 1, 0]]),
}


def _volume(orientation: str, spacing=(1.0, 1.0, 1.0), canonical: np.ndarray | None = None) -> Volume:
    affine = np.eye(4)
    affine[:3, :3] = ORIENTATIONS[orientation] @ np.diag(spacing)
    affine[:3, 3] = (-10.0, 5.0, 20.0)
    view = SagittalView.from_affine(affine)
    data = view.from_slices(_anatomy() if canonical is None else canonical)
    return Volume(np.ascontiguousarray(data, dtype=np.float32), affine)


def _save(vol: Volume, path: Path, dtype=np.int16) -> Path:
    return save_volume(vol, path, dtype=dtype)


class _CenterChannel(nn.Module):
    size_multiple = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // 2
        return x[:, c:c + 1]


class IdentityGAN(GANModel):
    """'Generator' returning its (centre) input channel: exposes the pipeline's own geometry and intensity maps."""

    kind = "pix2pix"

    def __init__(self) -> None:
        super().__init__()
        self.G = _CenterChannel()

    def generator_modules(self) -> list[str]:
        return ["G"]

    def discriminator_modules(self) -> list[str]:
        return []

    def translate(self, a: torch.Tensor) -> torch.Tensor:
        return self.G(a)


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("orientation", ["PSR", "RAS", "LAS", "oblique"])
def test_output_has_the_input_grid_and_float32(tmp_path, ckpt, orientation):
    src = _save(_volume(orientation, spacing=(0.8, 1.2, 1.0)), tmp_path / "sub-01_T2w.nii.gz")
    written = synthesize_path(ckpt, src, tmp_path / "out.nii.gz", device="cpu")
    assert written == [tmp_path / "out.nii.gz"]
    inp, out = nib.load(src), nib.load(written[0])
    assert out.shape == inp.shape
    assert np.array_equal(out.affine, inp.affine)
    assert np.array_equal(out.header.get_sform(), inp.header.get_sform())
    assert out.header.get_data_dtype() == np.float32
    assert np.isfinite(out.get_fdata()).all()
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(inp.affine)


def test_same_anatomy_in_any_storage_order_gives_the_same_slices(synth):
    outs = {}
    for orientation in ("PSR", "RAS", "LAS", "oblique"):
        vol = _volume(orientation)
        pred = synth(vol)
        outs[orientation] = SagittalView.from_affine(vol.affine).to_slices(pred.data)
    for o in ("RAS", "LAS", "oblique"):
        np.testing.assert_allclose(outs[o], outs["PSR"], atol=1e-4)


def test_identity_model_returns_the_input_in_its_own_scale():
    vol = _volume("PSR")
    synth = Synthesizer(IdentityGAN(), pixel_spacing_mm=None, device="cpu", batch_size=4)
    pred = synth(vol)
    slices = SagittalView.from_affine(vol.affine).to_slices(vol.data)
    p = fit_normalization(slices, "percentile", (0.5, 99.5), body_mask_from_intensity(slices))
    # model space [-1, 1] maps back onto the T2w's own low/high percentiles
    np.testing.assert_allclose(pred.data, np.clip(vol.data, p.low, p.high), rtol=1e-5, atol=1e-3)
    assert pred.data.dtype == np.float32


def test_inplane_resampling_and_context_stack_round_trip():
    """Slices resampled to the checkpoint's spacing for the model and back, 2.5D input of 3 slices: an identity
    model stays close to the exact (unresampled) result on a smooth image; shrinking loses more than growing."""
    s, h, w = CANONICAL
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([400 + 200 * np.sin(yy / 4.0 + k) * np.cos(xx / 5.0) for k in range(s)]).astype(np.float32)
    vol = _volume("RAS", spacing=(3.0, 1.0, 1.0), canonical=smooth)
    exact = Synthesizer(IdentityGAN(), pixel_spacing_mm=None, context_slices=3, device="cpu")(vol).data
    errors = {}
    for spacing, work in (((0.5, 0.5), (40, 48)), ((2.0, 2.0), (10, 12))):
        synth = Synthesizer(IdentityGAN(), pixel_spacing_mm=spacing, context_slices=3, device="cpu", batch_size=4)
        assert synth._work_size(vol, SagittalView.from_affine(vol.affine), (h, w)) == work
        pred = synth(vol)
        assert pred.shape == vol.shape
        errors[spacing] = np.abs(pred.data - exact).mean() / np.abs(exact).mean()
    assert errors[(0.5, 0.5)] < 0.01
    assert errors[(0.5, 0.5)] < errors[(2.0, 2.0)] < 0.05


# --------------------------------------------------------------------------------------- uncertainty
def test_uncertainty_is_zero_for_a_shift_invariant_model_and_reproducible(synth):
    vol = _volume("PSR")
    _, unc = Synthesizer(IdentityGAN(), device="cpu").predict(vol, uncertainty=True)
    assert unc.shape == vol.shape and float(np.abs(unc.data).max()) < 1e-3

    pred0 = synth(vol)
    pred1, unc1 = synth.predict(vol, uncertainty=True, seed=3)
    _, unc2 = synth.predict(vol, uncertainty=True, seed=3)
    np.testing.assert_array_equal(pred0.data, pred1.data)  # asking for uncertainty never changes the output
    np.testing.assert_array_equal(unc1.data, unc2.data)
    assert unc1.data.dtype == np.float32 and (unc1.data >= 0).all() and unc1.data.max() > 0
    assert np.array_equal(unc1.affine, vol.affine)


def test_uncertainty_file_is_written_beside_the_output(tmp_path, ckpt):
    src = _save(_volume("LAS"), tmp_path / "sub-07_T2w.nii.gz")
    out = tmp_path / "res" / "sub-07_pseudoSTIR.nii.gz"
    written = synthesize_path(ckpt, src, out, device="cpu", uncertainty=True)
    assert written == [out, tmp_path / "res" / "sub-07_pseudoSTIR_uncertainty.nii.gz"]
    assert uncertainty_path(out) == written[1]
    u = nib.load(written[1])
    assert np.array_equal(u.affine, nib.load(src).affine) and u.header.get_data_dtype() == np.float32


# ------------------------------------------------------------------------------------------- files
def test_folder_mode_maps_names_and_keeps_subfolders(tmp_path, ckpt):
    inp = tmp_path / "in"
    _save(_volume("PSR"), inp / "sub-01_T2w.nii.gz")
    _save(_volume("RAS"), inp / "site" / "sub-02" / "sub-02_T2w.nii.gz")
    _save(_volume("RAS"), inp / "sub-03_T1w.nii.gz")  # not a T2w: ignored
    written = synthesize_path(ckpt, inp, tmp_path / "out", device="cpu")
    assert written == [tmp_path / "out" / "site" / "sub-02" / "sub-02_pseudoSTIR.nii.gz",
                       tmp_path / "out" / "sub-01_pseudoSTIR.nii.gz"]
    assert all(p.is_file() for p in written)
    assert not (tmp_path / "out" / "sub-03_pseudoSTIR.nii.gz").exists()
    # an existing folder as output of a single file
    assert plan_outputs(inp / "sub-01_T2w.nii.gz", tmp_path / "out")[0][1] == tmp_path / "out" / "sub-01_pseudoSTIR.nii.gz"


def test_refuses_to_overwrite_the_input_or_existing_outputs(tmp_path, ckpt):
    src = _save(_volume("PSR"), tmp_path / "sub-01_T2w.nii.gz")
    before = src.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        synthesize_path(ckpt, src, src, device="cpu", overwrite=True)
    assert src.read_bytes() == before
    out = tmp_path / "sub-01_pseudoSTIR.nii.gz"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        synthesize_path(ckpt, src, out, device="cpu")
    assert out.read_bytes() == b"old"
    synthesize_path(ckpt, src, out, device="cpu", overwrite=True)
    assert load_volume(out).shape == load_volume(src).shape
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def _one_line_error(fn) -> str:
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_each_bad_input_gives_a_one_line_error(tmp_path, ckpt):
    good = _save(_volume("PSR"), tmp_path / "ok_T2w.nii.gz")
    four_d = tmp_path / "four_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6, 2), np.float32), np.eye(4)), four_d)
    nan = tmp_path / "nan_T2w.nii.gz"
    data = np.ones((6, 6, 6), np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nan)
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    wrong_kind = _checkpoint(tmp_path / "classifier.pt", kind="injury_classifier")
    out = tmp_path / "o.nii.gz"

    assert "3D" in _one_line_error(lambda: synthesize_path(ckpt, four_d, out, device="cpu"))
    assert "NaN" in _one_line_error(lambda: synthesize_path(ckpt, nan, out, device="cpu"))
    assert str(tmp_path / "missing.pt") in _one_line_error(
        lambda: synthesize_path(tmp_path / "missing.pt", good, out, device="cpu"))
    assert str(not_ckpt) in _one_line_error(lambda: synthesize_path(not_ckpt, good, out, device="cpu"))
    msg = _one_line_error(lambda: synthesize_path(wrong_kind, good, out, device="cpu"))
    assert "injury_classifier" in msg and str(wrong_kind) in msg
    assert not out.exists()


def test_cli_synthesize_reports_errors_on_one_line(tmp_path, ckpt, capsys):
    src = _save(_volume("PSR"), tmp_path / "sub-01_T2w.nii.gz")
    rc = main(["synthesize", "--checkpoint", str(tmp_path / "nope.pt"), "--input", str(src),
               "--output", str(tmp_path / "o.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nope.pt" in err
    rc = main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.nii.gz"),
               "--device", "cpu", "--uncertainty"])
    assert rc == 0 and (tmp_path / "o_uncertainty.nii.gz").is_file()


@pytest.mark.parametrize("name, codes", [
    (REAL_T2W, ("P", "S", "R")),  # real sagittal cervical T2w, int16 on disk
    ("sub-unf01_T2w.nii.gz", ("R", "A", "S")),  # real axial slab, slightly oblique, zeros outside a narrow L-R FOV
])
def test_real_t2w_keeps_its_affine(tmp_path, ckpt, name, codes):
    src = Path(__file__).parent / "data" / name  # copied from ../shared/data/real (tests/data/PROVENANCE.md)
    written = synthesize_path(ckpt, src, tmp_path / "real_pseudoSTIR.nii.gz", device="cpu")
    inp, out = nib.load(src), nib.load(written[0])
    assert nib.aff2axcodes(inp.affine) == codes
    assert out.shape == inp.shape and np.array_equal(out.affine, inp.affine)
    assert out.header.get_data_dtype() == np.float32 and np.isfinite(out.get_fdata()).all()


# -------------------------------------------------------------------------------------- MONAI transform
def test_transform_fills_only_missing_keys(synth):
    t = SynthesizeSequenced(keys_in=["t2w"], key_out="stir", synthesizer=synth)
    vol = _volume("PSR")
    filled = t({"t2w": vol})
    assert isinstance(filled["stir"], Volume) and np.array_equal(filled["stir"].affine, vol.affine)
    present = object()
    assert t({"t2w": vol, "stir": present})["stir"] is present
    again = SynthesizeSequenced(keys_in="t2w", key_out="stir", synthesizer=synth, only_if_missing=False)
    assert isinstance(again({"t2w": vol, "stir": present})["stir"], Volume)
    with pytest.raises(InputError, match="t2w"):
        t({"other": vol})


def test_transform_accepts_metatensors_and_arrays_with_meta(synth):
    from monai.data import MetaTensor

    vol = _volume("RAS")
    expected = synth(vol).data
    t = SynthesizeSequenced(keys_in=["t2w"], key_out="stir", synthesizer=synth)
    mt = MetaTensor(torch.from_numpy(vol.data)[None], affine=torch.as_tensor(vol.affine))
    out = t({"t2w": mt})["stir"]
    assert isinstance(out, MetaTensor) and out.shape == mt.shape
    assert torch.equal(out.affine, mt.affine)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-4)
    arr = t({"t2w": vol.data, "t2w_meta_dict": {"affine": vol.affine}})
    np.testing.assert_allclose(arr["stir"], expected, atol=1e-4)
    assert np.array_equal(arr["stir_meta_dict"]["affine"], vol.affine)
    with pytest.raises(InputError, match="affine"):
        t({"t2w": vol.data})


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(ckpt):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    vol = _volume("PSR")
    cpu = Synthesizer.from_checkpoint(ckpt, device="cpu")(vol).data
    gpu = Synthesizer.from_checkpoint(ckpt, device="cuda")(vol).data
    scale = np.percentile(cpu, 99.5) - np.percentile(cpu, 0.5)
    assert np.abs(gpu - cpu).mean() / scale < 0.02
