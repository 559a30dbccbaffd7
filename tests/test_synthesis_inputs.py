"""synthseq.synthesis with several inputs (T1w + T2w): grids, pairing, missing inputs, MONAI transform, training refusal."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from synthseq.cli import main
from synthseq.config import load_config, to_dict
from synthseq.data.slicing import SliceView
from synthseq.errors import ConfigError, InputError
from synthseq.io import Volume, load_volume, save_volume
from synthseq.models import build_gan
from synthseq.models.base import GANModel
from synthseq.synthesis import (
    Synthesizer,
    SynthesizeSequenced,
    grid_key,
    synthesis_config_problem,
    synthesize_path,
)
from synthseq.training.checkpoint import FORMAT, save_checkpoint

KEYS = ["T1w", "T2w"]


class _Channel(nn.Module):
    size_multiple = 4

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.k:self.k + 1]


class ChannelGAN(GANModel):
    """'Generator' returning input channel ``k`` unchanged: exposes what reached the model in that channel."""

    kind = "pix2pix"

    def __init__(self, k: int) -> None:
        super().__init__()
        self.G = _Channel(k)

    def generator_modules(self) -> list[str]:
        return ["G"]

    def discriminator_modules(self) -> list[str]:
        return []

    def translate(self, a: torch.Tensor) -> torch.Tensor:
        return self.G(a)


def _world_linear(affine: np.ndarray, shape) -> np.ndarray:
    """An intensity linear in world mm (positive), sampled at the voxel centres of a grid: trilinear resampling of
    it is exact, so a volume resampled from another grid must equal this function sampled on its own grid."""
    idx = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    val = 500.0 + 6.0 * world[0] - 4.0 * world[1] + 3.0 * world[2]
    return val.reshape(shape).astype(np.float32)


def _t2w() -> Volume:
    """PSR storage (like a DICOM sagittal), 1 mm in-plane, 2 mm slices; a body blob on a dark background."""
    affine = np.array([[0.0, 0, 2.0, -5.0], [-1.0, 0, 0, 10.0], [0, -1.0, 0, 12.0], [0, 0, 0, 1]])
    shape = (24, 20, 6)
    jj, kk = np.mgrid[0:24, 0:20]
    body = (((jj - 12) / 9.0) ** 2 + ((kk - 10) / 8.0) ** 2 < 1)[:, :, None]
    data = body * (300.0 + 10.0 * np.sin(jj / 3.0)[:, :, None]) + 2.0
    return Volume(np.repeat(data, shape[2], axis=2).astype(np.float32), affine)


def _t1w_other_grid() -> Volume:
    """RAS storage, 1.5 mm voxels, shifted, a field of view covering the T2w's: another grid entirely."""
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (-12.0, -20.0, -15.0)
    shape = (20, 26, 24)
    return Volume(_world_linear(affine, shape), affine)


def _synth(k: int = 0, **kw) -> Synthesizer:
    return Synthesizer(ChannelGAN(k), input_keys=KEYS, device="cpu", batch_size=4, **kw)


# ------------------------------------------------------------------------------------------ geometry
def test_grid_key_is_the_t2w():
    assert grid_key(["T1w", "T2w"]) == "T2w" and grid_key(["T2w"]) == "T2w" and grid_key(["PD", "T1w"]) == "PD"
    s = _synth()
    assert s.grid_key == "T2w" and s.extra_keys == ["T1w"]


def test_t1w_on_another_grid_is_resampled_onto_the_t2w_grid():
    t2, t1 = _t2w(), _t1w_other_grid()
    out = _synth(k=0)(t2, extra={"T1w": t1})  # model output = the T1w channel as it reached the model
    assert out.shape == t2.shape and out.data.dtype == np.float32
    np.testing.assert_array_equal(out.affine, t2.affine)  # exact, not approximately
    # the same T1w function sampled directly on the T2w grid gives the same output (trilinear is exact on it)
    direct = Volume(_world_linear(t2.affine, t2.shape), t2.affine)
    ref = _synth(k=0)(t2, extra={"T1w": direct})
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-4, atol=1e-2 * float(np.ptp(ref.data)) * 1e-2)
    # and the output of the T2w channel is the T2w itself (denormalized with its own parameters)
    same = _synth(k=1)(t2, extra={"T1w": t1})
    np.testing.assert_allclose(same.data, t2.data, rtol=1e-5, atol=1e-3)


def test_context_stacks_are_key_major_as_in_training():
    # 2.5D with two inputs: channels (T1w i-1, i, i+1, T2w i-1, i, i+1), the order PairedSliceDataset builds
    t2 = _t2w()
    t2 = Volume(t2.data * (1.0 + 0.1 * np.arange(t2.shape[2], dtype=np.float32)), t2.affine)  # slices differ
    t1 = Volume(_world_linear(t2.affine, t2.shape), t2.affine)
    view = SliceView.from_affine(t2.affine, "sagittal")
    outs = [view.to_slices(_synth(k=k, context_slices=3)(t2, extra={"T1w": t1}).data) for k in range(6)]
    ref = view.to_slices(t2.data)
    inside = ref < np.percentile(ref, 99)  # above the 99.5th percentile the output is clipped at tanh's +1
    np.testing.assert_allclose(outs[4][inside], ref[inside], rtol=1e-5, atol=1e-3)  # T2w, centre slice
    for centre, before, after in ((1, 0, 2), (4, 3, 5)):
        np.testing.assert_allclose(outs[before][1:], outs[centre][:-1], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(outs[after][:-1], outs[centre][1:], rtol=1e-5, atol=1e-3)
    assert not np.allclose(outs[1], outs[4], rtol=0.05)  # T1w channels are not the T2w's


def test_rigid_refinement_keeps_the_grid():
    t2, t1 = _t2w(), _t1w_other_grid()
    out = _synth(k=0, register=True)(t2, extra={"T1w": t1})
    assert out.shape == t2.shape
    np.testing.assert_array_equal(out.affine, t2.affine)


def test_missing_or_unknown_input_is_one_line_naming_it():
    t2 = _t2w()
    with pytest.raises(InputError) as e:
        _synth()(t2)
    assert "missing T1w input" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="^PD: not an extra input"):
        _synth()(t2, extra={"T1w": _t1w_other_grid(), "PD": t2})


# ------------------------------------------------------------------------------------------ files + CLI
def _checkpoint(path: Path) -> Path:
    """A tiny random pix2pix checkpoint reading T1w + T2w (2 channels)."""
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                             "model.discriminator_kwargs={base_channels: 4}", "infer.batch_size=4",
                             "data.input_keys=[T1w, T2w]"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 2)
    ckpt = {
        "format": FORMAT, "synthseq_version": "test", "kind": "pix2pix", "config": to_dict(cfg),
        "model": model.state_dict(), "optimizers": {}, "schedulers": {}, "scaler": {}, "step": 0, "rng": {},
        "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]},
        "pixel_spacing_mm": [1.0, 1.0], "image_size": 32, "context_slices": 1, "input_keys": KEYS,
        "best": {"metric": "ssim", "value": None, "step": None},
    }
    return save_checkpoint(ckpt, path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt2") / "t1t2.pt")


def test_cli_extra_keeps_the_t2w_grid(tmp_path, ckpt, capsys):
    t2 = save_volume(_t2w(), tmp_path / "sub-01_T2w.nii.gz", dtype=np.float32)
    t1 = save_volume(_t1w_other_grid(), tmp_path / "sub-01_T1w.nii.gz", dtype=np.float32)
    out = tmp_path / "out.nii.gz"
    assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(t2), "--extra", f"T1w={t1}",
                 "--output", str(out), "--device", "cpu"]) == 0
    a, b = nib.load(t2), nib.load(out)
    assert b.shape == a.shape
    np.testing.assert_array_equal(b.affine, a.affine)
    assert np.isfinite(np.asarray(b.dataobj)).all()


def test_cli_missing_extra_is_one_line(tmp_path, ckpt, capsys):
    t2 = save_volume(_t2w(), tmp_path / "sub-01_T2w.nii.gz", dtype=np.float32)
    code = main(["synthesize", "--checkpoint", str(ckpt), "--input", str(t2), "--output",
                 str(tmp_path / "o.nii.gz"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "missing T1w input" in err and "--extra T1w=FILE" in err
    assert not (tmp_path / "o.nii.gz").exists()
    code = main(["synthesize", "--checkpoint", str(ckpt), "--input", str(t2), "--extra", "T1w",
                 "--output", str(tmp_path / "o.nii.gz"), "--device", "cpu"])
    assert code == 2 and "expected KEY=FILE" in capsys.readouterr().err


def test_help_documents_extra(capsys):
    with pytest.raises(SystemExit):
        main(["synthesize", "--help"])
    text = capsys.readouterr().out
    assert "--extra KEY=FILE" in text and "T1w" in text


def test_folder_mode_pairs_t1w_with_t2w(tmp_path, ckpt):
    src = tmp_path / "in"
    for sid in ("sub-01", "sub-02"):
        save_volume(_t2w(), src / sid / f"{sid}_T2w.nii.gz", dtype=np.float32)
        save_volume(_t1w_other_grid(), src / sid / f"{sid}_T1w.nii.gz", dtype=np.float32)
    written = synthesize_path(ckpt, src, tmp_path / "out", device="cpu")
    assert written == [tmp_path / "out" / s / f"{s}_pseudoSTIR.nii.gz" for s in ("sub-01", "sub-02")]
    assert load_volume(written[0]).shape == _t2w().shape
    # a subject without its T1w: one line naming the missing file, and nothing written
    (src / "sub-02" / "sub-02_T1w.nii.gz").unlink()
    with pytest.raises(InputError) as e:
        synthesize_path(ckpt, src, tmp_path / "out2", device="cpu")
    assert str(e.value).startswith(str(src / "sub-02" / "sub-02_T1w.nii.gz")) and "missing T1w" in str(e.value)
    assert not (tmp_path / "out2").exists()


# -------------------------------------------------------------------------------------- MONAI transform
def test_monai_transform_with_two_keys():
    from monai.data import MetaTensor

    t2, t1 = _t2w(), _t1w_other_grid()
    tf = SynthesizeSequenced(keys_in=["t1w", "t2w"], key_out="stir", synthesizer=_synth(k=0))
    out = tf({"t1w": t1, "t2w": t2})["stir"]
    assert isinstance(out, Volume) and out.shape == t2.shape
    np.testing.assert_array_equal(out.affine, t2.affine)
    mt = {"t1w": MetaTensor(torch.from_numpy(t1.data)[None], affine=torch.from_numpy(t1.affine)),
          "t2w": MetaTensor(torch.from_numpy(t2.data)[None], affine=torch.from_numpy(t2.affine))}
    res = tf(mt)["stir"]
    assert tuple(res.shape) == (1, *t2.shape)
    np.testing.assert_allclose(res[0].numpy(), out.data, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(res.affine), t2.affine)
    with pytest.raises(InputError, match="t1w"):
        tf({"t2w": t2})
    with pytest.raises(InputError, match="1 input key.*takes 2"):
        SynthesizeSequenced(keys_in=["t2w"], synthesizer=_synth())


# ------------------------------------------------------------------------------------- training refusal
@pytest.mark.parametrize("keys, kind, expect", [
    ("[T1w, T2w]", "pix2pix", None),
    ("[T2w, T2w]", "pix2pix", "twice"),
    ("[T2w, STIR]", "pix2pix", "target"),
    ("[T1w, T2w]", "cyclegan", "CycleGAN"),
])
def test_config_synthesize_could_not_use_is_named(keys, kind, expect):
    cfg = load_config(None, [f"data.input_keys={keys}", f"model.kind={kind}"])
    problem = synthesis_config_problem(cfg)
    assert problem is None if expect is None else (expect in problem and problem.startswith("data.input_keys"))


def test_training_refuses_such_a_config_before_any_work(tmp_path):
    from synthseq.training.loop import run

    cfg = load_config(None, ["data.input_keys=[T2w, T2w]", f"train.out_dir={tmp_path / 'run'}",
                             f"data.root={tmp_path / 'nothing'}", "train.device=cpu"])
    with pytest.raises(ConfigError, match="twice"):
        run(cfg)
    assert not (tmp_path / "run").exists()
