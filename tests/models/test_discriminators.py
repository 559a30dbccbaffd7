"""PatchGAN receptive field and the multi-scale variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synthseq.models import create_model
from synthseq.models.discriminators import receptive_field


def _measured_receptive_field(net, size: int) -> tuple[int, int]:
    """Height and width of the input region that one central output logit depends on."""
    x = torch.rand(1, net.config["in_channels"], size, size, dtype=torch.float64, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)))
    assert rows.min() > 0 and rows.max() < size - 1  # the region is interior, not clipped
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_patchgan_default_receptive_field_is_70():
    torch.manual_seed(0)
    # norm "none" and eval: batch statistics would couple every pixel
    net = create_model("patchgan", in_channels=2, base_channels=4, norm="none").double().eval()
    assert net.config["n_layers"] == 3
    assert net.receptive_field == 70
    assert _measured_receptive_field(net, 160) == (70, 70)


@pytest.mark.parametrize("n_layers", [1, 2, 4])
def test_patchgan_receptive_field_formula(n_layers):
    torch.manual_seed(0)
    net = create_model("patchgan", in_channels=1, base_channels=2, n_layers=n_layers, norm="none").double().eval()
    rf = receptive_field(n_layers)
    assert net.receptive_field == rf
    assert _measured_receptive_field(net, 2 * rf + 32) == (rf, rf)


def test_patchgan_outputs_logits_not_probabilities():
    torch.manual_seed(0)
    net = create_model("patchgan", in_channels=1, base_channels=8, norm="instance")
    y = net(torch.randn(2, 1, 64, 64) * 3)
    assert y.min() < 0 or y.max() > 1  # unbounded


def test_multiscale_scales_see_pooled_inputs():
    torch.manual_seed(0)
    net = create_model("multiscale_patchgan", in_channels=1, base_channels=4, n_layers=2, num_scales=3,
                       norm="none").eval()
    x = torch.rand(2, 1, 64, 64)
    ys = net(x)
    assert [y.shape[-1] for y in ys] == [14, 6, 2]
    # scale s equals its own PatchGAN applied to the input pooled s times
    pooled = x
    for s, disc in enumerate(net.discriminators):
        torch.testing.assert_close(ys[s], disc(pooled))
        pooled = F.avg_pool2d(pooled, 3, stride=2, padding=1, count_include_pad=False)
    # the scales are independent networks
    assert net.discriminators[0].model[0].weight.data_ptr() != net.discriminators[1].model[0].weight.data_ptr()
