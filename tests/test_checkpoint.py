"""The checkpoint schema: version-0.1.0 files still load, a flipped bit is caught, and a model trained with
non-default percentiles is synthesized, written and scored in exactly its own scale."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthseq.checkpoint import SCHEMA_VERSION, ModelSpec, load_checkpoint, save_checkpoint, weights_sha256
from synthseq.data.preprocess import Preprocessor
from synthseq.errors import InputError
from synthseq.evaluation import SubjectData, input_params
from synthseq.evaluation.scoring import normalized_pair
from synthseq.io import Volume
from synthseq.synthesis import Synthesizer

DATA = Path(__file__).parent / "data"
V010 = DATA / "ckpt_v0.1.0_pix2pix_p1-99.pt"  # written by synthseq 0.1.0 (commit 85eddbc), norm_percentiles=[1, 99]


def _t2w(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    data = np.zeros((6, 40, 40), np.float32)
    data[:, 6:34, 8:32] = rng.uniform(100, 1000, (6, 28, 24))
    data[:, 15:20, 12:18] = 1500  # a bright focus
    return Volume(data, np.diag([2.0, 1.0, 1.0, 1.0]), nib.Nifti1Header(), None)


def test_version_0_1_0_checkpoint_loads_with_its_preprocessing():
    ckpt = load_checkpoint(V010)
    assert ckpt["synthseq_version"] == "0.1.0" and "schema_version" not in ckpt
    spec = ModelSpec.from_checkpoint(ckpt)
    assert spec.schema_version == 1 and spec.kind == "pix2pix"
    assert spec.preprocessing == Preprocessor(percentiles=(1.0, 99.0))
    assert spec.input_keys == ["T2w"] and spec.slice_plane == "sagittal" and spec.splits is None
    synth = Synthesizer.from_checkpoint(V010, device="cpu")
    out = synth(_t2w())
    assert out.shape == (6, 40, 40) and np.isfinite(out.data).all()


def test_spec_entries_round_trip_and_newer_schema_refused(tmp_path):
    spec = ModelSpec.from_checkpoint(load_checkpoint(V010))
    ckpt = {**spec.entries(), "model": load_checkpoint(V010)["model"]}
    save_checkpoint(ckpt, tmp_path / "v2.pt")
    again = load_checkpoint(tmp_path / "v2.pt")
    assert again["schema_version"] == SCHEMA_VERSION and again["weights_sha256"] == weights_sha256(ckpt["model"])
    round_trip = ModelSpec.from_checkpoint(again)
    assert round_trip.preprocessing == spec.preprocessing and round_trip.input_keys == spec.input_keys
    torch.save({**again, "schema_version": SCHEMA_VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(InputError, match="future.pt: checkpoint schema version"):
        load_checkpoint(tmp_path / "future.pt")


def test_a_flipped_bit_inside_a_weight_tensor_is_a_one_line_error(tmp_path):
    ckpt = load_checkpoint(V010)
    path = save_checkpoint(ckpt, tmp_path / "ok.pt")
    raw = bytearray(path.read_bytes())
    # find the stored bytes of the largest weight tensor and flip bits in its middle
    name = max(ckpt["model"], key=lambda k: ckpt["model"][k].numel())
    blob = ckpt["model"][name].contiguous().numpy().tobytes()
    at = bytes(raw).find(blob)
    assert at > 0
    for i in range(at + len(blob) // 2, at + len(blob) // 2 + 64):
        raw[i] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"flipped.pt: the weights do not match their stored SHA-256") as err:
        load_checkpoint(tmp_path / "flipped.pt")
    assert "\n" not in str(err.value)


def test_model_with_1_99_percentiles_is_scored_in_exactly_its_training_scale():
    """Synthesis fits the T2w with the checkpoint's (1, 99) rule and writes the pseudo-STIR with those NormParams;
    evaluation given that rule fits exactly the same NormParams (so it maps the prediction back to the generator's
    model-space output), and the default rule would not."""
    synth = Synthesizer.from_checkpoint(V010, device="cpu")
    t2w = _t2w(1)
    _, params, view = synth.normalize_input(t2w)
    slices = view.to_slices(t2w.data)
    assert (params.low, params.high) == pytest.approx(
        tuple(np.percentile(slices[Preprocessor().body_mask(slices)], [1.0, 99.0])))
    pred = synth(t2w)
    scored = SubjectData("sub-x", pred, t2w, t2w=t2w, preprocessor=synth.preprocessor)
    assert input_params(scored) == pytest.approx(params)
    body = np.ones(t2w.shape, bool)
    pred_n, target_n, _ = normalized_pair(pred, scored, body, input_params(scored))
    np.testing.assert_allclose(synth.preprocessor.invert(pred_n, params), pred.data, rtol=1e-5, atol=1e-3)
    _, t_params = synth.preprocessor(t2w.data, mask=body)
    np.testing.assert_allclose(target_n, synth.preprocessor.apply(t2w.data, t_params), atol=1e-6)
    default = SubjectData("sub-x", pred, t2w, t2w=t2w)  # no rule known: the default 0.5 / 99.5 percentiles
    assert abs(input_params(default).low - params.low) > 1.0
