"""build_gan: config -> GANModel, and its user-facing errors."""

from __future__ import annotations

import pytest
import torch

from synthseq.errors import ConfigError
from synthseq.models import CycleGAN, Pix2Pix, build_gan


@pytest.mark.parametrize("kind,mode,expected", [("pix2pix", "auto", "vanilla"), ("cyclegan", "auto", "lsgan"),
                                                ("pix2pix", "hinge", "hinge"), ("cyclegan", "vanilla", "vanilla")])
def test_gan_mode_resolution(make_gan_cfg, kind, mode, expected):
    model = build_gan(*make_gan_cfg(kind, gan_mode=mode), in_channels=1)
    assert isinstance(model, Pix2Pix if kind == "pix2pix" else CycleGAN)
    assert model.criterion_gan.mode == expected


def test_networks_get_the_config_kwargs(make_gan_cfg):
    model_cfg, loss_cfg = make_gan_cfg("pix2pix")
    model_cfg.generator_kwargs["norm"] = "instance"
    model_cfg.discriminator = "multiscale_patchgan"
    model_cfg.discriminator_kwargs["num_scales"] = 2
    model = build_gan(model_cfg, loss_cfg, in_channels=3)
    assert model.G.config["norm"] == "instance" and model.G.config["in_channels"] == 3
    assert model.D.config["in_channels"] == 4 and model.D.config["num_scales"] == 2
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 1, 32, 32) * 2 - 1}
    loss, _, fakes = model.generator_loss(batch)  # GANLoss averages the list of scales
    d_loss, _ = model.discriminator_loss(batch, fakes)
    assert torch.isfinite(loss) and torch.isfinite(d_loss)


def test_rebuild_from_config_restores_the_model(make_gan_cfg):
    cfgs = make_gan_cfg("cyclegan")
    model = build_gan(*cfgs, in_channels=1)
    twin = build_gan(*cfgs, in_channels=1)
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    a = torch.rand(1, 1, 32, 32) * 2 - 1
    assert torch.equal(model.translate(a), twin.translate(a))


@pytest.mark.parametrize("change,match", [
    (lambda m, loss: setattr(m, "kind", "unit"), "model.kind: unknown 'unit'"),
    (lambda m, loss: setattr(m, "generator", "vit"), "model.generator: unknown model 'vit'.*unet"),
    (lambda m, loss: m.generator_kwargs.update(depth=3), "model.generator: .*unknown argument 'depth'"),
    (lambda m, loss: m.discriminator_kwargs.update(norm="layer"), "model.discriminator: .*norm 'layer'"),
    (lambda m, loss: m.generator_kwargs.update(in_channels=2), "model.generator_kwargs.in_channels"),
    (lambda m, loss: setattr(loss, "gan_mode", "wgan"), "loss.gan_mode"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_l1", -1.0), "loss.pix2pix.lambda_l1"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_lesion", -1.0), "loss.pix2pix.lambda_lesion"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_lesion", 1.0)),
     "loss.pix2pix.lambda_lesion"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_reference", -1.0), "loss.pix2pix.lambda_reference"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_reference", 1.0)),
     "loss.pix2pix.lambda_reference"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_tissue", -1.0), "loss.pix2pix.lambda_tissue"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_tissue", 1.0)),
     "loss.pix2pix.lambda_tissue"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_log_l1", -1.0), "loss.pix2pix.lambda_log_l1"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_log_l1", 1.0)),
     "loss.pix2pix.lambda_log_l1"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_gradient", -1.0), "loss.pix2pix.lambda_gradient"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_gradient", 1.0)),
     "loss.pix2pix.lambda_gradient"),
    (lambda m, loss: setattr(loss.pix2pix, "lambda_lesion_gan", -1.0), "loss.pix2pix.lambda_lesion_gan"),
    (lambda m, loss: (setattr(m, "kind", "cyclegan"), setattr(loss.pix2pix, "lambda_lesion_gan", 1.0)),
     "loss.pix2pix.lambda_lesion_gan"),
    (lambda m, loss: (setattr(loss.pix2pix, "lambda_lesion_gan", 1.0), setattr(loss.pix2pix, "lesion_crop", 8)),
     "loss.pix2pix.lesion_crop: 8 px is too small"),
])
def test_config_errors_name_the_key(make_gan_cfg, change, match):
    model_cfg, loss_cfg = make_gan_cfg("pix2pix")
    change(model_cfg, loss_cfg)
    with pytest.raises(ConfigError, match=match) as info:
        build_gan(model_cfg, loss_cfg, in_channels=1)
    assert "\n" not in str(info.value)
