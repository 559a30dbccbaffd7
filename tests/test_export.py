"""synthseq.export: ONNX / TorchScript export runs without synthseq and matches synthseq's output; the ONNX Runtime
engine of synthesize; bad inputs give one line, exit 2 and no files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthseq.cli import main
from synthseq.config import load_config, to_dict
from synthseq.errors import InputError
from synthseq.export import TOLERANCE, export_checkpoint, sidecar_path
from synthseq.io import Volume, load_volume, save_volume
from synthseq.models import build_gan
from synthseq.synthesis import Synthesizer, synthesize_path
from synthseq.training.checkpoint import FORMAT, save_checkpoint

pytest.importorskip("onnxruntime")


def _checkpoint(path: Path) -> Path:
    """A tiny pix2pix checkpoint (random weights; batch-norm statistics made non-trivial so folding them matters)."""
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                             "model.discriminator_kwargs={base_channels: 4}", "infer.batch_size=4"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {"format": FORMAT, "synthseq_version": "test", "kind": "pix2pix", "config": to_dict(cfg),
            "model": model.state_dict(), "step": 7,
            "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]},
            "pixel_spacing_mm": None, "image_size": 32, "context_slices": 1, "input_keys": ["T2w"]}
    return save_checkpoint(ckpt, path)


def _volume(path: Path) -> Path:
    """A sagittal (L-R, A-P, S-I) test volume with a body, a bright canal and noise; int16 like scanner files."""
    rng = np.random.default_rng(1)
    y, z = np.meshgrid(np.linspace(-1, 1, 22), np.linspace(-1, 1, 27), indexing="ij")
    body = (y / 0.8) ** 2 + (z / 0.9) ** 2 < 1
    img = np.where(body, 400.0, 0.0) + np.where(body & (np.abs(y - 0.1) < 0.1), 900.0, 0.0)
    data = img[None] * np.linspace(0.8, 1.0, 5)[:, None, None] + rng.normal(0, 15, (5, 22, 27))
    return save_volume(Volume(np.abs(np.round(data)).astype(np.float32), np.diag([3.0, 0.9, 0.9, 1.0])), path,
                       dtype=np.int16)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


# The runner of an exported model: synthseq is made unimportable, so it sees only the model file, its JSON and
# the model-space slices; it pads, runs, crops, clamps and denormalizes as the JSON says.
RUNNER = r"""
import json, sys
sys.modules["synthseq"] = None  # any "import synthseq" now fails
import numpy as np
model, x_path, params_path, out_path = sys.argv[1:5]
meta = json.load(open(model + ".json"))
x = np.load(x_path)  # (S, C_in, H, W) model space
p = json.load(open(params_path))
m = meta["input"]["size_multiple"]
assert meta["preprocessing"]["pad"] == {"mode": "replicate", "multiple": m, "where": "bottom and right"}
h, w = x.shape[-2:]
xp = np.pad(x, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="edge").astype(np.float32)
if meta["model_format"] == "onnx":
    import onnxruntime as ort
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    y = sess.run(None, {meta["input"]["name"]: xp})[0]
else:
    import torch
    y = torch.jit.load(model)(torch.from_numpy(xp)).detach().numpy()
y = np.clip(y[:, 0, :h, :w], -1, 1)
np.save(out_path, (y.astype(np.float64) * p["scale"] + p["center"]).astype(np.float32))
"""


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_runs_without_synthseq_and_matches_synthesize(tmp_path, ckpt, fmt):
    out = tmp_path / ("g.onnx" if fmt == "onnx" else "g.ts")
    model, side = export_checkpoint(ckpt, out, fmt)
    assert model == out and side == sidecar_path(out) and out.stat().st_size > 0
    meta = json.loads(side.read_text())
    assert meta["format"] == "synthseq-export" and meta["model_format"] == fmt
    assert meta["checkpoint"]["kind"] == "pix2pix" and meta["checkpoint"]["step"] == 7
    assert meta["preprocessing"]["normalization"]["percentiles"] == [0.5, 99.5]
    assert meta["input"]["size_multiple"] == 8 and meta["input"]["shape"][1] == 1
    assert 0 <= meta["export_check"]["max_abs_diff_vs_torch"] <= TOLERANCE

    src = _volume(tmp_path / "sub-01_T2w.nii.gz")
    ref = synthesize_path(ckpt, src, tmp_path / "ref_pseudoSTIR.nii.gz", device="cpu", engine="torch")[0]
    synth = Synthesizer.from_checkpoint(ckpt, device="cpu")
    vol = load_volume(src)
    x, params, view = synth.prepare_inputs(vol)
    np.save(tmp_path / "x.npy", x.numpy())
    (tmp_path / "p.json").write_text(json.dumps({"scale": params.scale, "center": params.center}))
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    proc = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "x.npy"), str(tmp_path / "p.json"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = view.from_slices(np.load(tmp_path / "y.npy"))
    expected = load_volume(ref).data
    assert exported.shape == expected.shape == vol.shape
    # within 1e-3 in model units, i.e. 1e-3 x scale in the written (scanner) units
    assert np.abs(exported - expected).max() <= TOLERANCE * params.scale
    assert np.abs(expected - expected.mean()).max() > 10 * TOLERANCE * params.scale  # not a constant image

    # synthseq itself reads the export (the preprocessing from the JSON) and gives the same volume
    via = synthesize_path(out, src, tmp_path / "via_pseudoSTIR.nii.gz")[0]
    assert np.abs(load_volume(via).data - expected).max() <= TOLERANCE * params.scale


def test_onnxruntime_engine_matches_torch_and_keeps_uncertainty(tmp_path, ckpt):
    src = _volume(tmp_path / "sub-01_T2w.nii.gz")
    torch_out = synthesize_path(ckpt, src, tmp_path / "t_pseudoSTIR.nii.gz", device="cpu", engine="torch",
                                uncertainty=True)
    ort_out = synthesize_path(ckpt, src, tmp_path / "o_pseudoSTIR.nii.gz", device="cpu", engine="onnxruntime",
                              uncertainty=True)
    synth = Synthesizer.from_checkpoint(ckpt, device="cpu").set_engine("onnxruntime")
    assert synth.engine == "onnxruntime"
    scale = synth.prepare_inputs(load_volume(src))[1].scale
    a, b = load_volume(torch_out[0]).data, load_volume(ort_out[0]).data
    assert np.abs(a - b).max() <= TOLERANCE * scale
    # the uncertainty passes still run the torch networks (MC dropout): the same map either way
    ua, ub = load_volume(torch_out[1]).data, load_volume(ort_out[1]).data
    assert ua.max() > 0 and np.abs(ua - ub).max() <= 1e-4 * scale


def test_exported_file_refuses_uncertainty_and_other_engines(tmp_path, ckpt):
    out, _ = export_checkpoint(ckpt, tmp_path / "g.onnx")
    synth = Synthesizer.from_checkpoint(out)
    assert synth.engine == "onnxruntime" and synth.context_slices == 1 and synth.input_keys == ["T2w"]
    with pytest.raises(InputError, match="MC dropout"):
        synth.predict(load_volume(_volume(tmp_path / "v_T2w.nii.gz")), uncertainty=True)
    with pytest.raises(InputError, match="runs only as exported"):
        synth.set_engine("torch")


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path, ckpt, capsys):
    from synthseq.downstream.classifier import FORMAT as CLASSIFIER_FORMAT
    from synthseq.downstream.modelfile import write_model_file

    classifier = write_model_file(tmp_path / "model.ssmodel", CLASSIFIER_FORMAT, {"config": {}})
    legacy = tmp_path / "classifier_old.pt"
    torch.save({"format": FORMAT, "kind": "classifier", "config": {}, "model": {}}, legacy)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    cases = {classifier: "classifier", legacy: "'classifier' checkpoint", text: "not a readable checkpoint",
             tmp_path / "missing.pt": "not found"}
    for bad, words in cases.items():
        out = tmp_path / "out" / "g.onnx"
        code, err = _cli(["export", str(bad), str(out), "--format", "onnx"], capsys)
        assert code == 2 and "\n" not in err and err.startswith(f"synthseq: error: {bad}"), err
        assert words in err, err
        assert not out.exists() and not sidecar_path(out).exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    # an existing output is refused (and left as it was); --overwrite replaces it
    out = tmp_path / "g.onnx"
    out.write_bytes(b"keep")
    code, err = _cli(["export", str(ckpt), str(out)], capsys)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"keep"
    assert not sidecar_path(out).exists()
    assert _cli(["export", str(ckpt), str(out), "--overwrite"], capsys)[0] == 0
    assert out.read_bytes() != b"keep" and sidecar_path(out).is_file()
    # the checkpoint itself is never the output
    code, err = _cli(["export", str(ckpt), str(ckpt), "--overwrite", "--format", "torchscript"], capsys)
    assert code == 2 and "refusing to overwrite the checkpoint" in err
    # an exported file without its JSON is refused by synthesize with one line
    sidecar_path(out).unlink()
    src = _volume(tmp_path / "sub-02_T2w.nii.gz")
    code, err = _cli(["synthesize", "--checkpoint", str(out), "--input", str(src), "--output",
                      str(tmp_path / "x_pseudoSTIR.nii.gz")], capsys)
    assert code == 2 and "\n" not in err and ".json" in err and not (tmp_path / "x_pseudoSTIR.nii.gz").exists()


def test_cli_synthesize_engine_choice(tmp_path, ckpt, capsys):
    src = _volume(tmp_path / "sub-01_T2w.nii.gz")
    outs = {}
    for engine in ("torch", "onnxruntime", "auto"):
        dst = tmp_path / f"{engine}_pseudoSTIR.nii.gz"
        assert main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(dst),
                     "--device", "cpu", "--engine", engine]) == 0
        outs[engine] = load_volume(dst).data
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= TOLERANCE * np.ptp(outs["torch"])
    capsys.readouterr()  # drop the runs' own messages (e.g. the erasure check's)
    with pytest.raises(SystemExit) as info:  # argparse's own usage error, one line (synthseq's _Parser)
        main(["synthesize", "--checkpoint", str(ckpt), "--input", str(src), "--output",
              str(tmp_path / "n_pseudoSTIR.nii.gz"), "--engine", "tensorrt"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "--engine" in err and "\n" not in err
    assert not (tmp_path / "n_pseudoSTIR.nii.gz").exists()


def test_cyclegan_generator_exports_and_runs_in_onnxruntime(tmp_path):
    """CycleGAN's ResNet generator (reflection padding, size multiple 4) exports and matches torch."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "cyclegan_cpu_tiny.yaml",
                      ["model.generator_kwargs.base_channels=4"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    ckpt = save_checkpoint({"format": FORMAT, "synthseq_version": "test", "kind": "cyclegan", "config": to_dict(cfg),
                            "model": model.state_dict(), "step": 3,
                            "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]},
                            "pixel_spacing_mm": None, "image_size": 64, "context_slices": 1, "input_keys": ["T2w"]},
                           tmp_path / "cg.pt")
    meta = _export_matches_torch_file_to_file(ckpt, tmp_path / "cg.onnx", tmp_path)
    assert meta["checkpoint"]["kind"] == "cyclegan" and meta["input"]["size_multiple"] == 4


def test_unet_with_full_res_head_and_residual_exports_and_matches_torch(tmp_path, checkpoint_writer):
    """The head's input concatenation and the residual output (unbounded before synthesis clamps) export too."""
    ckpt = checkpoint_writer(tmp_path / "res.pt", ["model.generator_kwargs={base_channels: 4, num_downs: 3, "
                                                   "full_res_head: 4, residual_channel: 0}"], spacing=None)
    _export_matches_torch_file_to_file(ckpt, tmp_path / "res.onnx", tmp_path)


def _export_matches_torch_file_to_file(ckpt: Path, out: Path, tmp_path: Path) -> dict:
    """Export ``ckpt`` to ONNX at ``out``; the export check and a file-to-file synthesis agree with torch within
    TOLERANCE model units (and the output is not constant). Returns the export's sidecar."""
    out, side = export_checkpoint(ckpt, out)
    meta = json.loads(side.read_text())
    assert meta["export_check"]["max_abs_diff_vs_torch"] <= TOLERANCE
    src = _volume(tmp_path / "sub-01_T2w.nii.gz")
    a = load_volume(synthesize_path(ckpt, src, tmp_path / "t_pseudoSTIR.nii.gz", device="cpu", engine="torch")[0])
    b = load_volume(synthesize_path(out, src, tmp_path / "o_pseudoSTIR.nii.gz")[0])
    scale = Synthesizer.from_checkpoint(ckpt, device="cpu").prepare_inputs(load_volume(src))[1].scale
    assert np.abs(a.data - b.data).max() <= TOLERANCE * scale and np.ptp(a.data) > 0
    return meta
