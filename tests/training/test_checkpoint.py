import random

import numpy as np
import pytest
import torch

from synthseq.config import load_config, to_dict
from synthseq.errors import InputError
from synthseq.models import build_gan
from synthseq.training.checkpoint import (
    FORMAT,
    build_model_from_checkpoint,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from synthseq.training.logging import display_grid


def test_rng_round_trip():
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1]
    assert torch.equal(first[2], again[2])


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a synthseq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_checkpoint_alone_rebuilds_the_model(tmp_path):
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                             "model.discriminator_kwargs={base_channels: 4, n_layers: 2}"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1).eval()
    save_checkpoint({"format": FORMAT, "kind": "pix2pix", "config": to_dict(cfg), "model": model.state_dict()},
                    tmp_path / "m.pt")
    rebuilt = build_model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert not rebuilt.training
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(rebuilt.translate(x), model.translate(x))
    # a truncated file is reported, not a traceback from deep inside torch
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_display_grid_uses_a_fixed_window():
    a = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 4)
    fake = torch.full((1, 1, 1, 4), 0.5)
    real = torch.full((1, 1, 1, 4), -0.5)
    grid = display_grid(a, fake, real)
    assert grid.shape == (1, 1, 16)
    assert grid[0, 0, :4].tolist() == [0.0, 0.5, 1.0, 1.0]  # [-1, 1] -> [0, 1], clipped, no stretching
    assert grid[0, 0, 4:8].tolist() == [0.75] * 4
    assert grid[0, 0, 8:12].tolist() == [0.25] * 4
    assert grid[0, 0, 12:].tolist() == [0.5] * 4  # |0.5 - (-0.5)| = 1 of the [0, 2] difference window
