"""U-Net and ResNet generator structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synthseq.models import create_model


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_unet_256_matches_pix2pix_layout():
    net = create_model("unet", in_channels=3, out_channels=3)  # pix2pix "unet_256", ngf 64, batch norm
    # pix2pix reports 54.414 M parameters for this generator (our two norm-free encoder convs keep a bias)
    assert _n_params(net) / 1e6 == pytest.approx(54.414, abs=1e-3)
    assert net.size_multiple == 256
    widths = [enc[-2].out_channels if len(enc) == 3 else enc[-1].out_channels for enc in net.encoders]
    assert widths == [64, 128, 256, 512, 512, 512, 512, 512]
    # dropout 0.5 in the three decoder levels just outside the innermost, as in pix2pix
    dropout = [any(isinstance(m, nn.Dropout) for m in dec) for dec in net.decoders]
    assert dropout == [False, True, True, True, False, False, False, False]
    assert all(m.p == 0.5 for m in net.modules() if isinstance(m, nn.Dropout))


def test_unet_skip_connections_carry_fine_detail():
    # with the innermost path zeroed the output still depends on the input through the skips
    torch.manual_seed(0)
    net = create_model("unet", in_channels=1, base_channels=8, num_downs=4, norm="none", dropout=0.0).eval()
    for p in net.decoders[0].parameters():
        nn.init.zeros_(p)
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    net(x)[0, 0, 5, 5].backward()
    assert x.grad.abs().sum() > 0
    assert net.decoders[1][1].in_channels == 2 * 32  # skip (32) + upsampled (32)


def test_unet_dropout_disabled_is_deterministic_in_train_mode():
    torch.manual_seed(0)
    net = create_model("unet", in_channels=2, base_channels=8, num_downs=5, norm="instance", dropout=0.0)
    x = torch.rand(2, 2, 32, 32)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    torch.testing.assert_close(net(x), net(x))
    with_dropout = create_model("unet", in_channels=2, base_channels=8, num_downs=5, norm="instance")
    assert not torch.equal(with_dropout(x), with_dropout(x))


def test_unet_full_res_head_sees_each_input_pixel_directly():
    torch.manual_seed(0)
    classic = create_model("unet", in_channels=2, base_channels=8, num_downs=4, norm="none", dropout=0.0).eval()
    headed = create_model("unet", in_channels=2, base_channels=8, num_downs=4, norm="none", dropout=0.0,
                          full_res_head=6).eval()
    # classic keys unchanged (old checkpoints load); the head adds exactly its two convolutions
    assert set(headed.state_dict()) - set(classic.state_dict()) == {"head.0.weight", "head.0.bias",
                                                                     "head.2.weight", "head.2.bias"}
    assert headed.head[0].in_channels == 6 + 2
    # with every U-Net path zeroed, only the full-resolution input path is left: output pixel (5, 5) then
    # depends on the input inside its 3x3 neighbourhood and nowhere else
    for dec in headed.decoders:
        for p in dec.parameters():
            nn.init.zeros_(p)
    x = torch.rand(1, 2, 16, 16, requires_grad=True)
    y = headed(x)
    assert y.shape == (1, 1, 16, 16) and y.abs().max() <= 1
    y[0, 0, 5, 5].backward()
    support = x.grad.abs().sum(1)[0] > 0
    assert support[4:7, 4:7].any() and not support[:4].any() and not support[7:].any()
    with pytest.raises(Exception, match="full_res_head"):
        create_model("unet", in_channels=1, num_downs=4, full_res_head=-1)


@pytest.mark.parametrize("head", [0, 4])
def test_unet_residual_channel_learns_the_change_from_that_input(head):
    torch.manual_seed(0)
    net = create_model("unet", in_channels=3, base_channels=8, num_downs=4, dropout=0.0, full_res_head=head,
                       residual_channel=1).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    last = net.head[2] if head else net.decoders[-1][1]
    for p in last.parameters():  # the network proposes no change: the output is input channel 1 exactly
        nn.init.zeros_(p)
    torch.testing.assert_close(net(x), x[:, 1:2])
    nn.init.constant_(last.bias, 10.0)  # a saturated change is +2 model units, not clipped to [-1, 1]
    torch.testing.assert_close(net(x), x[:, 1:2] + 2.0, atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="residual_channel"):
        create_model("unet", in_channels=3, num_downs=4, residual_channel=3)


def test_resnet_layout():
    net = create_model("resnet", in_channels=1, base_channels=16, n_blocks=6)
    assert net.config["norm"] == "instance"
    assert sum(type(m).__name__ == "ResnetBlock" for m in net.modules()) == 6
    assert isinstance(net.model[0], nn.ReflectionPad2d)
    assert isinstance(net.model[-1], nn.Tanh)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    y = net(torch.rand(1, 1, 36, 20) * 2 - 1)  # any multiple of 4
    assert y.shape == (1, 1, 36, 20)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,kwargs", [("unet", dict(num_downs=6)), ("resnet", dict(n_blocks=3))])
def test_compile_channels_last_bf16_matches_eager(name, kwargs):
    torch.manual_seed(0)
    net = create_model(name, in_channels=3, base_channels=16, **kwargs).cuda().eval()
    net = net.to(memory_format=torch.channels_last)
    x = (torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(net)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager, comp = net(x), compiled(x)
    assert comp.shape == (4, 1, 64, 64)
    torch.testing.assert_close(comp.float(), eager.float(), atol=3e-2, rtol=0)
