"""pix2pix objectives and a few optimisation steps."""

from __future__ import annotations

import pytest
import torch

from synthseq import losses
from synthseq.errors import ConfigError
from synthseq.models import Pix2Pix, build_gan
from synthseq.models.base import GANModel
from synthseq.models.pix2pix import lesion_boxes, take_crops


@pytest.fixture
def make_model(make_gan_cfg):
    def make(in_channels: int = 1, **loss) -> Pix2Pix:
        torch.manual_seed(0)
        return build_gan(*make_gan_cfg("pix2pix", **loss), in_channels=in_channels)

    return make


def test_interface_and_conditional_discriminator(tiny_batch, make_model):
    model = make_model()
    assert isinstance(model, GANModel) and model.kind == "pix2pix"
    assert model.generator_modules() == ["G"] and model.discriminator_modules() == ["D"]
    assert model.criterion_gan.mode == "vanilla"  # "auto" for pix2pix
    assert model.D.config["in_channels"] == 2  # concat(A, B)
    assert len(list(model.generator_parameters())) == len(list(model.G.parameters()))
    batch = tiny_batch()
    loss, terms, fakes = model.generator_loss(batch)
    assert set(terms) == {"G_gan", "G_l1"} and set(fakes) == {"fake_B"}
    assert fakes["fake_B"].shape == batch["B"].shape
    assert all(not t.requires_grad and t.ndim == 0 for t in terms.values())
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"])
    torch.testing.assert_close(terms["G_l1"], (fakes["fake_B"] - batch["B"]).abs().mean().detach())

    d_loss, d_terms = model.discriminator_loss(batch, fakes)
    assert set(d_terms) == {"D_real", "D_fake"}
    torch.testing.assert_close(d_loss.detach(), 0.5 * (d_terms["D_real"] + d_terms["D_fake"]))
    # the D step's graph does not reach the generator
    d_loss.backward()
    assert all(p.grad is None for p in model.G.parameters())
    assert all(p.grad is not None for p in model.D.parameters())


def test_discriminator_sees_the_condition(tiny_batch, make_model):
    model = make_model()
    model.eval()
    batch = tiny_batch()
    _, _, fakes = model.generator_loss(batch)
    _, t1 = model.discriminator_loss(batch, fakes)
    shifted = dict(batch, A=-batch["A"])  # same B and fakes, other condition
    _, t2 = model.discriminator_loss(shifted, fakes)
    assert t1["D_real"] != t2["D_real"]  # while the full-image D sees the change


def test_frozen_discriminator_gets_no_gradient(tiny_batch, make_model):
    model = make_model()
    model.set_discriminators_trainable(False)
    loss, _, _ = model.generator_loss(tiny_batch())
    loss.backward()
    assert all(p.grad is None for p in model.D.parameters())
    assert all(p.grad is not None for p in model.G.parameters())
    model.set_discriminators_trainable(True)
    assert all(p.requires_grad for p in model.D.parameters())


def test_optional_ssim_and_perceptual_terms(tiny_batch, make_model, monkeypatch):
    # a stand-in LPIPS so no weights are needed; the real loading path is tested in tests/test_losses.py
    monkeypatch.setattr(losses, "load_lpips", lambda net: torch.nn.L1Loss())
    model = make_model(lambda_ssim=2.0, lambda_perceptual=3.0)
    loss, terms, fakes = model.generator_loss(tiny_batch())
    assert set(terms) == {"G_gan", "G_l1", "G_ssim", "G_perceptual"}
    expected = terms["G_gan"] + 100 * terms["G_l1"] + 2 * terms["G_ssim"] + 3 * terms["G_perceptual"]
    torch.testing.assert_close(loss.detach(), expected)
    assert 0 < terms["G_ssim"] <= 2
    assert "perceptual" not in "".join(model.state_dict())


@pytest.mark.parametrize("weight, term, fn", [
    ("lambda_log_l1", "G_l1_log", losses.log_l1_loss),
    ("lambda_gradient", "G_gradient", losses.gradient_l1_loss),
])
def test_whole_image_terms_are_added_with_their_weight(tiny_batch, make_model, weight, term, fn):
    model = make_model(**{weight: 40.0})
    batch = tiny_batch()
    loss, terms, fakes = model.generator_loss(batch)
    assert set(terms) == {"G_gan", "G_l1", term}
    torch.testing.assert_close(terms[term], fn(fakes["fake_B"], batch["B"]).detach())
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"] + 40 * terms[term])


def test_lesion_term_is_the_l1_inside_the_lesion_map(tiny_batch, make_model):
    model = make_model(lambda_lesion=30.0)
    batch = tiny_batch()
    lesion = torch.zeros_like(batch["B"])
    lesion[:, :, 2:6, 3:9] = 1
    loss, terms, fakes = model.generator_loss(dict(batch, lesion=lesion))
    diff = (fakes["fake_B"] - batch["B"]).abs().detach()
    torch.testing.assert_close(terms["G_l1_lesion"], diff[lesion.bool()].mean())
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"] + 30 * terms["G_l1_lesion"])
    _, empty, _ = model.generator_loss(dict(batch, lesion=torch.zeros_like(lesion)))
    assert empty["G_l1_lesion"] == 0  # a batch without lesion pixels adds nothing
    with pytest.raises(ConfigError, match="data.lesion_key"):
        model.generator_loss(batch)


def test_reference_term_is_the_l1_inside_the_reference_map(tiny_batch, make_model):
    model = make_model(lambda_lesion=30.0, lambda_reference=7.0)
    batch = tiny_batch()
    lesion, reference = torch.zeros_like(batch["B"]), torch.zeros_like(batch["B"])
    lesion[:, :, 2:6, 3:9] = 1
    reference[:, :, 8:12, 1:5] = 1
    loss, terms, fakes = model.generator_loss(dict(batch, lesion=lesion, reference=reference))
    diff = (fakes["fake_B"] - batch["B"]).abs().detach()
    torch.testing.assert_close(terms["G_l1_reference"], diff[reference.bool()].mean())
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"] + 30 * terms["G_l1_lesion"]
                               + 7 * terms["G_l1_reference"])
    with pytest.raises(ConfigError, match="data.label_key"):
        model.generator_loss(dict(batch, lesion=lesion))


def test_tissue_term_is_the_weighted_l1(tiny_batch, make_model):
    model = make_model(lambda_tissue=9.0)
    batch = tiny_batch()
    weight = torch.zeros_like(batch["B"])
    weight[:, :, 2:6, 3:9] = 4.0
    weight[:, :, 8:12, 1:5] = 0.5
    loss, terms, fakes = model.generator_loss(dict(batch, tissue_weight=weight))
    diff = (fakes["fake_B"] - batch["B"]).abs().detach()
    torch.testing.assert_close(terms["G_l1_tissue"], (diff * weight).sum() / weight.sum())
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"] + 9 * terms["G_l1_tissue"])
    # only weighted pixels pull on the output: a term-only backward leaves the others' gradient 0
    fake = fakes["fake_B"].detach().requires_grad_(True)
    losses.l1_loss(fake, batch["B"], weight).backward()
    assert (fake.grad[weight == 0] == 0).all() and (fake.grad[weight > 0] != 0).all()
    assert losses.l1_loss(fake, batch["B"], torch.zeros_like(weight)) == 0
    with pytest.raises(ConfigError, match="data.label_key"):
        model.generator_loss(batch)


def test_lesion_boxes_hold_a_lesion_pixel_and_stay_inside():
    lesion = torch.zeros(3, 1, 40, 48)
    lesion[0, 0, 20, 30] = 1  # one pixel: the crop is centred on it
    lesion[2, 0, 1:3, 45:48] = 1  # in a corner: the crop is shifted inside
    torch.manual_seed(0)
    boxes = lesion_boxes(lesion, 16)
    assert boxes.tolist()[0] == [0, 12, 22]  # slice 1 has no lesion: no row
    b, top, left = boxes.tolist()[1]
    assert b == 2 and top == 0 and left == 48 - 16
    for b, top, left in boxes.tolist():
        assert lesion[b, 0, top:top + 16, left:left + 16].sum() > 0
    assert lesion_boxes(torch.zeros(2, 1, 40, 48), 16).shape == (0, 3)
    with pytest.raises(ValueError, match="does not fit"):
        lesion_boxes(lesion, 41)


def test_take_crops_is_slicing():
    x = torch.arange(2 * 3 * 20 * 24, dtype=torch.float32).reshape(2, 3, 20, 24)
    boxes = torch.tensor([[1, 4, 7], [0, 0, 16], [1, 12, 0]])
    crops = take_crops(x, boxes, 8)
    assert crops.shape == (3, 3, 8, 8)
    for crop, (b, top, left) in zip(crops, boxes.tolist()):
        assert torch.equal(crop, x[b, :, top:top + 8, left:left + 8])


def test_lesion_crop_discriminator(tiny_batch, make_model):
    model = make_model(lambda_lesion_gan=3.0, lesion_crop=16)
    assert model.discriminator_modules() == ["D", "D_lesion"]
    assert model.D_lesion.config["in_channels"] == 2
    batch = tiny_batch()
    lesion = torch.zeros_like(batch["B"])
    lesion[1, :, 20:24, 25:28] = 1  # slice 0 has none: one crop
    batch = dict(batch, lesion=lesion)
    loss, terms, fakes = model.generator_loss(batch)
    assert fakes["lesion_boxes"].shape == (1, 3) and fakes["lesion_boxes"][0, 0] == 1
    assert terms["G_gan_lesion"] > 0
    torch.testing.assert_close(loss.detach(), terms["G_gan"] + 100 * terms["G_l1"] + 3 * terms["G_gan_lesion"])
    d_loss, d_terms = model.discriminator_loss(batch, fakes)
    torch.testing.assert_close(d_loss.detach(), 0.5 * (d_terms["D_real"] + d_terms["D_fake"]
                                                       + d_terms["D_lesion_real"] + d_terms["D_lesion_fake"]))
    d_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.D_lesion.parameters())
    # the lesion discriminator judges the crop: changing pixels outside it leaves its terms unchanged
    model.eval()
    _, t1 = model.discriminator_loss(batch, fakes)
    far = batch["B"].clone()
    far[1, :, :4, :4] = 1.0
    _, t2 = model.discriminator_loss(dict(batch, B=far), fakes)
    torch.testing.assert_close(t1["D_lesion_real"], t2["D_lesion_real"])
    assert t1["D_real"] != t2["D_real"]  # while the full-image D sees the change
    # no lesion in the batch: the terms are 0 and D_lesion still gets (zero) gradients, as DDP needs
    model.train()
    model.zero_grad()
    empty = dict(batch, lesion=torch.zeros_like(lesion))
    g, t, f = model.generator_loss(empty)
    assert t["G_gan_lesion"] == 0
    d_loss, d_terms = model.discriminator_loss(empty, f)
    assert d_terms["D_lesion_real"] == 0 and d_terms["D_lesion_fake"] == 0
    d_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in model.D_lesion.parameters())
    with pytest.raises(ConfigError, match="data.lesion_key"):
        model.generator_loss(tiny_batch())


def test_a_few_adam_steps_reduce_l1(tiny_batch, make_model, adam_steps):
    model = make_model()
    l1 = [terms["G_l1"].item() for terms in adam_steps(model, tiny_batch(), steps=15)]
    assert all(torch.isfinite(torch.tensor(l1)))
    assert sum(l1[-3:]) / 3 < 0.75 * l1[0]  # measured: about 0.49


def test_translate_is_the_generator(make_model):
    model = make_model().eval()
    a = torch.rand(2, 1, 32, 32) * 2 - 1
    out = model.translate(a)
    assert not out.requires_grad
    torch.testing.assert_close(out, model.G(a))


@pytest.mark.parametrize("c_in", [3, 2])
def test_multichannel_inputs(tiny_batch, make_model, c_in):
    model = make_model(in_channels=c_in)
    batch = tiny_batch(c_in=c_in)
    loss, _, fakes = model.generator_loss(batch)
    assert fakes["fake_B"].shape == (2, 1, 32, 32) and torch.isfinite(loss)
