"""Shared tiny configurations for the model tests (32x32, 8 base channels: seconds on a CPU)."""

from __future__ import annotations

import pytest
import torch

from synthseq.config import LossConfig, ModelConfig

TINY_NETS = {
    "unet": {"base_channels": 8, "num_downs": 5},
    "resnet": {"base_channels": 8, "n_blocks": 2},
    "patchgan": {"base_channels": 8, "n_layers": 2},
}


@pytest.fixture
def make_gan_cfg():
    """``make(kind, generator="unet", **loss_overrides) -> (ModelConfig, LossConfig)`` with tiny networks."""

    def make(kind: str = "pix2pix", generator: str = "unet", **loss: object) -> tuple[ModelConfig, LossConfig]:
        model = ModelConfig(kind=kind, generator=generator, generator_kwargs=dict(TINY_NETS[generator]),
                            discriminator="patchgan", discriminator_kwargs=dict(TINY_NETS["patchgan"]))
        # flat weight names (lambda_l1=..., pool_size=...) go to the kind's section, gan_mode stays shared
        cfg = LossConfig(gan_mode=str(loss.pop("gan_mode", "auto")))
        for key, value in loss.items():
            setattr(cfg.pix2pix if hasattr(cfg.pix2pix, key) else cfg.cyclegan, key, value)
        return model, cfg

    return make


@pytest.fixture
def tiny_batch():
    """``make(c_in=1, batch=2, size=32, seed=0)``: a fixed batch whose B is a smooth function of A."""

    def make(c_in: int = 1, batch: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(batch, c_in, size, size, generator=g) * 2 - 1
        a = torch.nn.functional.avg_pool2d(a, 5, stride=1, padding=2)
        b = torch.tanh(2 * a.mean(1, keepdim=True) ** 2 - 0.3)
        return {"A": a, "B": b, "mask": torch.ones(batch, 1, size, size)}

    return make


@pytest.fixture
def adam_steps():
    """``run(model, batch, steps, lr=1e-3)``: alternating G / D Adam steps as the training loop orders them;
    returns the G loss terms of each step."""
    return _adam_steps


def _adam_steps(model, batch: dict[str, torch.Tensor], steps: int, lr: float = 1e-3) -> list[dict[str, torch.Tensor]]:
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=(0.5, 0.999))
    history = []
    for _ in range(steps):
        model.set_discriminators_trainable(False)
        opt_g.zero_grad()
        loss, terms, fakes = model.generator_loss(batch)
        loss.backward()
        opt_g.step()
        model.set_discriminators_trainable(True)
        opt_d.zero_grad()
        model.discriminator_loss(batch, fakes)[0].backward()
        opt_d.step()
        history.append(terms)
    return history
