"""synthseq.training.batchnorm: batch-norm statistics re-estimated on whole slices, and the loop's use of it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from synthseq.config import load_config
from synthseq.errors import ConfigError
from synthseq.models.kinds import build_gan
from synthseq.training import load_checkpoint, run
from synthseq.training.batchnorm import batchnorm_layers, recalibrate_batchnorm
from synthseq.training.data import calibration_batches, load_run_subjects
from synthseq.training.validation import pad_multiple_of

from .conftest import SHAPE, tiny_overrides


def _model(cfg):
    torch.manual_seed(0)
    return build_gan(cfg.model, cfg.loss, in_channels=1)


def _batches(n: int = 3, seed: int = 1, shift: float = 0.4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"A": (torch.rand(4, 1, 32, 32, generator=g) * 0.5 + shift).clamp(-1, 1)} for _ in range(n)]


def _bn_inputs(model, batches):
    """Per batch, the input of every generator batch-norm layer, with those layers on batch statistics and
    dropout off: what the re-estimate should average."""
    layers = batchnorm_layers(model.G)
    seen: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen[m].append(a[0].detach().clone())) for m in layers]
    model.eval()
    for m in layers:
        m.train()
    with torch.no_grad():
        for b in batches:
            model.translate(b["A"])
    for h in hooks:
        h.remove()
    model.train()
    return layers, seen


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_running_statistics_are_the_average_over_whole_slices(tiny_cfg):
    cfg = tiny_cfg()
    model = _model(cfg)
    d_before = {k: v.clone() for k, v in model.D.state_dict().items() if "running" in k}
    batches = _batches()
    model.train()
    seen = recalibrate_batchnorm(model, batches, torch.device("cpu"), _no_autocast, pad_multiple_of(model))
    assert seen == 12 and model.training  # mode restored
    stats = [(m.running_mean.clone(), m.running_var.clone(), m.momentum, int(m.num_batches_tracked))
             for m in batchnorm_layers(model.G)]
    layers, inputs = _bn_inputs(model, batches)
    assert len(layers) == len(stats) > 1
    for m, (running_mean, running_var, momentum, count) in zip(layers, stats):
        mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs[m]]).mean(0)
        var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in inputs[m]]).mean(0)
        torch.testing.assert_close(running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(running_var, var, rtol=1e-4, atol=1e-5)
        assert momentum == 0.1 and count == len(batches)
    # the discriminator is not on translate's path: its statistics are untouched
    for k, v in model.D.state_dict().items():
        if k in d_before:
            torch.testing.assert_close(v, d_before[k], rtol=0, atol=0)


def test_recalibration_is_deterministic_and_follows_the_slices(tiny_cfg):
    cfg = tiny_cfg()
    model = _model(cfg)
    layers = batchnorm_layers(model.G)
    means = lambda: [m.running_mean.clone() for m in layers]  # noqa: E731
    again = lambda shift: recalibrate_batchnorm(model, _batches(shift=shift), torch.device("cpu"),  # noqa: E731
                                                _no_autocast, pad_multiple_of(model))
    again(0.4)
    a = means()
    again(0.4)
    for x, y in zip(a, means()):  # dropout off (the decoder's layers too), nothing left over from the last call
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    again(-0.6)
    assert not torch.allclose(layers[0].running_mean, a[0])  # other slices, other statistics
    assert recalibrate_batchnorm(model, [], torch.device("cpu"), _no_autocast, 8) == 0


def test_calibration_batches_are_whole_slices_from_every_subject(tiny_cfg):
    cfg = tiny_cfg()
    subjects = load_run_subjects(cfg)[:3]
    batches = calibration_batches(cfg, subjects, slices=7, batch_size=4)
    a = torch.cat([b["A"] for b in batches])
    assert set(batches[0]) == {"A"} and max(len(b["A"]) for b in batches) <= 4
    assert a.shape[0] == 9 and tuple(a.shape[-2:]) == SHAPE[1:]  # ceil(7 / 3) = 3 per subject; not 16 px crops
    assert calibration_batches(cfg, subjects, slices=0) == [] and calibration_batches(cfg, [], slices=5) == []


def test_training_is_unchanged_and_checkpoints_carry_the_new_statistics(tiny_cfg):
    plain = run(tiny_cfg("pix2pix", "train.steps=4", out="plain"))
    recal = run(tiny_cfg("pix2pix", "train.steps=4", "train.bn_recalibration_slices=6", out="recal"))
    logs = [[json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()] for d in (plain, recal)]
    for ra, rb in zip(*logs):  # training uses batch statistics: the same losses
        assert {k: v for k, v in ra.items() if k != "images_per_s"} == pytest.approx(
            {k: v for k, v in rb.items() if k != "images_per_s"}, abs=1e-6)
    a, b = (load_checkpoint(d / "last.pt")["model"] for d in (plain, recal))
    running = [k for k in a if k.startswith("G.") and k.endswith("running_mean")]
    assert running
    for k, v in a.items():
        if isinstance(v, torch.Tensor) and "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v, b[k], rtol=0, atol=1e-6)
    assert all(not torch.allclose(a[k], b[k]) for k in running)
    assert load_checkpoint(recal / "last.pt")["config"]["train"]["bn_recalibration_slices"] == 6


def test_negative_slice_count_is_refused():
    with pytest.raises(ConfigError, match="train.bn_recalibration_slices"):
        load_config(None, [*tiny_overrides(), "train.bn_recalibration_slices=-1"]).validate()
