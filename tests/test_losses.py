"""Adversarial, L1, SSIM and LPIPS losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from synthseq import losses
from synthseq.errors import ConfigError, SynthseqError
from synthseq.losses import (
    LOG_L1_EPS,
    GANLoss,
    PerceptualLoss,
    gradient_l1_loss,
    l1_loss,
    load_lpips,
    log_l1_loss,
    lpips_weights_path,
    ssim_loss,
)

P = torch.tensor([[[[-2.0, -0.5], [0.0, 3.0]]]])  # logits (1, 1, 2, 2)


# ------------------------------------------------------------------------------------------ GANLoss

def test_vanilla_is_binary_cross_entropy():
    crit = GANLoss("vanilla")
    s = torch.sigmoid(P)
    assert crit(P, True).item() == pytest.approx(-torch.log(s).mean().item(), rel=1e-6)
    assert crit(P, False).item() == pytest.approx(-torch.log(1 - s).mean().item(), rel=1e-6)
    assert crit(P, True, for_discriminator=False) == crit(P, True)


def test_lsgan_is_squared_error():
    crit = GANLoss("lsgan")
    assert crit(P, True).item() == pytest.approx(((P - 1) ** 2).mean().item())
    assert crit(P, False).item() == pytest.approx((P**2).mean().item())
    assert crit(P, True).item() == pytest.approx((9 + 2.25 + 1 + 4) / 4)


def test_hinge_discriminator_and_generator_terms():
    crit = GANLoss("hinge")
    # D real: mean(relu(1 - p)) = (3 + 1.5 + 1 + 0) / 4; D fake: mean(relu(1 + p)) = (0 + 0.5 + 1 + 4) / 4
    assert crit(P, True).item() == pytest.approx(5.5 / 4)
    assert crit(P, False).item() == pytest.approx(5.5 / 4)
    assert crit(P, True, for_discriminator=False).item() == pytest.approx(-P.mean().item())
    with pytest.raises(ValueError):
        crit(P, False, for_discriminator=False)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_list_of_predictions_is_mean_over_scales(mode):
    crit = GANLoss(mode)
    p2 = torch.randn(2, 1, 5, 5)
    for real in (True, False):
        expected = (crit(P, real) + crit(p2, real)) / 2
        torch.testing.assert_close(crit([P, p2], real), expected)


def test_targets_are_expanded_buffers_not_saved():
    crit = GANLoss("lsgan", real_label=0.9)
    pred = torch.zeros(3, 1, 4, 5, dtype=torch.float64)
    target = crit.target_tensor(pred, True)
    assert target.shape == pred.shape and target.dtype == torch.float64
    assert target.stride() == (0, 0, 0, 0)  # a broadcast view, no allocation per call
    torch.testing.assert_close(target, torch.full_like(pred, 0.9))
    assert torch.all(crit.target_tensor(pred, False) == 0)
    assert dict(crit.named_buffers()).keys() == {"real_label", "fake_label"}
    assert crit.state_dict() == {}
    assert crit(pred, True).item() == pytest.approx(0.81)


def test_unknown_gan_mode():
    with pytest.raises(ConfigError, match="loss.gan_mode.*'wgan'"):
        GANLoss("wgan")


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_gan_loss_gradcheck(mode):
    crit = GANLoss(mode)
    pred = (torch.randn(1, 1, 3, 3, dtype=torch.float64) * 0.3 + 0.37).requires_grad_()  # away from hinge kinks
    assert torch.autograd.gradcheck(lambda p: crit(p, True), (pred,))
    assert torch.autograd.gradcheck(lambda p: crit(p, False), (pred,))


# ---------------------------------------------------------------------------------------------- L1

def test_l1_mask_behaviour():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :] = 1
    mask[1, 0, 3, 3] = 1
    diff = (pred - target).abs()
    selected = torch.cat([diff[0, :, :2, :].flatten(), diff[1, :, 3, 3].flatten()])
    assert l1_loss(pred, target, mask).item() == pytest.approx(selected.mean().item(), rel=1e-6)
    assert l1_loss(pred, target).item() == pytest.approx(diff.mean().item(), rel=1e-6)
    torch.testing.assert_close(l1_loss(pred, target, torch.ones(2, 1, 4, 4)), l1_loss(pred, target))
    assert l1_loss(pred, target, torch.zeros(2, 1, 4, 4)).item() == 0.0
    # outside the mask nothing matters
    changed = pred.clone()
    changed[1, :, :3] += 10
    assert l1_loss(changed, target, mask) == l1_loss(pred, target, mask)


def test_l1_gradcheck_with_mask():
    pred = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    mask = (torch.rand(1, 1, 3, 3) > 0.4).double()
    assert torch.autograd.gradcheck(lambda p: l1_loss(p, target, mask), (pred,))


# -------------------------------------------------------------------------------------- log-intensity L1

def test_log_l1_weighs_an_error_by_how_dark_the_tissue_is():
    target = torch.tensor([[[[-0.86, 0.8]]]])  # a fat-suppressed ligament and CSF, model units
    on_dark, on_bright = target + torch.tensor([[[[0.1, 0.0]]]]), target + torch.tensor([[[[0.0, 0.1]]]])
    assert l1_loss(on_dark, target) == l1_loss(on_bright, target)  # plain L1 cannot tell them apart
    dark, bright = log_l1_loss(on_dark, target), log_l1_loss(on_bright, target)
    # u = 0.07 vs 0.9: (0.9 + eps) / (0.07 + eps) = 7.9x to first order; 6.8x for an error this large
    assert 6.0 < (dark / bright).item() < 7.5
    u, v = (target + 1) / 2, (target + 1.1) / 2
    expected = torch.log((v[..., 0] + LOG_L1_EPS) / (u[..., 0] + LOG_L1_EPS)).item() / 2
    assert dark.item() == pytest.approx(expected, rel=1e-5)
    assert log_l1_loss(target, target).item() == 0.0


def test_log_l1_is_finite_at_the_bottom_of_the_range_and_differentiable():
    pred = torch.full((1, 1, 2, 2), -1.2, dtype=torch.float64, requires_grad=True)  # below the range: clamped
    target = torch.full((1, 1, 2, 2), -1.0, dtype=torch.float64)
    assert log_l1_loss(pred, target).item() == 0.0
    pred = (torch.rand(1, 2, 3, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    target = torch.rand(1, 2, 3, 3, dtype=torch.float64) * 1.8 - 0.9
    assert torch.autograd.gradcheck(lambda p: log_l1_loss(p, target), (pred,))


# -------------------------------------------------------------------------------------------- gradient L1

def test_gradient_l1_charges_a_blurred_edge_and_not_an_offset():
    # two rows of a dark ligament 3 px wide between brighter tissue; then the same drawn 1 px wider on each side
    target = torch.full((1, 1, 2, 16), -0.5)
    target[..., 6:9] = -0.86
    blurred = target.clone()
    blurred[..., 5] = blurred[..., 9] = -0.68
    assert gradient_l1_loss(target, target).item() == 0.0
    assert gradient_l1_loss(target + 0.05, target).item() == pytest.approx(0.0, abs=1e-7)  # no edge moved
    # the error (-0.18 at columns 5 and 9) changes at 4 of the 15 steps along W, at none along H
    assert gradient_l1_loss(blurred, target).item() == pytest.approx(0.5 * 4 * 0.18 / 15, rel=1e-5)
    assert l1_loss(blurred, target).item() == pytest.approx(2 * 0.18 / 16, rel=1e-5)


def test_gradient_l1_is_differentiable_and_symmetric():
    pred = (torch.rand(2, 1, 5, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    target = torch.rand(2, 1, 5, 6, dtype=torch.float64) * 2 - 1
    assert torch.autograd.gradcheck(lambda p: gradient_l1_loss(p, target), (pred,))
    assert gradient_l1_loss(pred, target).item() == pytest.approx(gradient_l1_loss(target, pred).item())


# -------------------------------------------------------------------------------------------- SSIM

def test_ssim_loss_zero_for_identical_and_positive_otherwise():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    worse = (x + 0.8 * torch.randn_like(x)).clamp(-1, 1)
    assert 0 < ssim_loss(noisy, x) < ssim_loss(worse, x) <= 2


def test_ssim_uses_data_range():
    # scaling images by s and the data range by s leaves SSIM unchanged; a wrong range changes it
    torch.manual_seed(0)
    x = torch.rand(1, 1, 24, 24) * 0.2  # low contrast: the range-dependent constants matter
    y = x + 0.1 * torch.randn_like(x)
    torch.testing.assert_close(ssim_loss(2 * x, 2 * y, data_range=4.0), ssim_loss(x, y, data_range=2.0))
    assert abs(ssim_loss(x, y, data_range=1.0) - ssim_loss(x, y, data_range=2.0)) > 0.05


def test_ssim_loss_is_one_minus_the_metric_and_differentiable():
    """One SSIM: the loss is exactly 1 - the metric validation and evaluation report (same window and padding)."""
    from synthseq.metrics import ssim

    x = torch.rand(3, 1, 20, 20) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    torch.testing.assert_close(ssim_loss(y, x), 1 - ssim(y, x, data_range=2.0).mean())
    torch.testing.assert_close(ssim_loss(y, x, window_size=5), 1 - ssim(y, x, data_range=2.0, window=5).mean())
    a = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    b = torch.rand(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda img: ssim_loss(img, a, window_size=5), (b,))


# ------------------------------------------------------------------------------------------- LPIPS

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    return tmp_path


def _write_alexnet_weights(path) -> dict:
    # a random torchvision AlexNet; only its `features` (the part LPIPS uses) to keep the file small
    torch.manual_seed(1)
    state = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_lpips_missing_weights_message(torch_home):
    path = lpips_weights_path("alex")
    assert path == torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(SynthseqError) as info:
        load_lpips("alex")
    message = str(info.value)
    assert "\n" not in message
    assert "alexnet-owt-7be5be79.pth" in message and str(path.parent) in message


def test_lpips_unknown_net():
    with pytest.raises(ConfigError, match="'resnet'"):
        load_lpips("resnet")


def test_lpips_corrupt_file(torch_home):
    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SynthseqError, match="alexnet-owt-7be5be79.pth"):
        load_lpips("alex")


def test_lpips_loads_cached_backbone_and_packaged_linear_layers(torch_home):
    import lpips

    state = _write_alexnet_weights(lpips_weights_path("alex"))
    model = load_lpips("alex")
    torch.testing.assert_close(model.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "10").bias, state["features.10.bias"])
    shipped = torch.load(f"{lpips.__path__[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())

    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    y = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    loss = PerceptualLoss("alex")
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    value = loss(y, x)
    assert value > 0
    torch.testing.assert_close(value, model(y.expand(-1, 3, -1, -1), x.expand(-1, 3, -1, -1)).mean())
    assert loss.state_dict() == {}  # the frozen LPIPS net never enters model checkpoints
    y.requires_grad_(True)
    loss(y, x).backward()
    assert y.grad.abs().sum() > 0


def test_perceptual_loss_loads_lazily(torch_home, monkeypatch):
    loss = PerceptualLoss("alex")  # no weights needed to build it (inference-only models)
    calls = []
    monkeypatch.setattr(losses, "load_lpips", lambda net: calls.append(net) or _L1Like())
    x = torch.zeros(1, 1, 8, 8)
    loss(x, x + 1)
    loss(x, x + 1)
    assert calls == ["alex"]


class _L1Like(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, a, b):
        assert a.shape[1] == 3
        return F.l1_loss(a, b, reduction="none").mean(dim=(1, 2, 3))
