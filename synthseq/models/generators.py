"""Image-to-image generators: U-Net (pix2pix) and ResNet (CycleGAN / Johnson et al.).

Both map ``(B, in_channels, H, W)`` in [-1, 1] to ``(B, out_channels, H, W)`` in [-1, 1] (tanh output).
``in_channels`` is 1 for a T2w slice, k for a 2.5D stack of k neighbouring slices, or (sequences x k) for
multi-input. H and W must be multiples of ``net.size_multiple`` (2**num_downs for the U-Net, 4 for the
ResNet); callers pad to it. ``forward`` has no Python-side shape logic, so the networks trace cleanly under
``torch.compile`` and run in ``channels_last``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import check_norm, init_weights, norm_layer
from .registry import register_model


@register_model("unet")
class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``num_downs`` stride-2 4x4 convolutions down, mirrored transposed convolutions up,
    each decoder level concatenated with the encoder features of the same resolution.

    Encoder widths are ``base_channels * min(2**i, 8)`` for level ``i``; the innermost level has no
    normalization (its map is 1x1 at the classic 256 px / ``num_downs=8`` setting). Dropout ``dropout`` is
    applied in the ``dropout_layers`` decoder levels just outside the innermost one (pix2pix: 0.5 in 3
    levels, its only source of noise). With ``norm="batch"`` convolutions that feed a norm have no bias.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels (1 for pseudo-STIR).
        base_channels: width of the first level (64 in pix2pix).
        num_downs: number of downsamplings; H and W must be multiples of ``2**num_downs``
            (8 for 256x256, 5 for 32x32).
        norm: ``"batch" | "instance" | "group" | "none"``.
        dropout: dropout probability in the inner decoder levels (0 disables).
        dropout_layers: how many decoder levels (counted outward from the innermost) use dropout.
        full_res_head: 0 (pix2pix): the last transposed convolution writes the output. ``k > 0``: it writes ``k``
            feature maps instead, which are concatenated with the INPUT at full resolution and mapped to the output
            by a 3x3 convolution, ReLU and a 1x1 convolution. The classic U-Net sees each input pixel only through
            a stride-2 4x4 convolution, so even the identity or a per-pixel intensity curve (what histogram
            matching does) must be rebuilt from half-resolution features; with the head it is one path
            (measured on the real MT pairs: ``benchmarks/RESULTS.md``).
        residual_channel: None (pix2pix): the output is the network's tanh. An input channel index ``r``: the
            output is ``x[:, r] + 2 * tanh(...)``, so the network learns the CHANGE from that input (range +-2 in
            model units, enough to turn bright fat dark) and starts near the identity, which passes every
            structure of the input through until training says otherwise (a lesion the input shows is not erased
            by default). ``r`` is the centre slice of the input the target most resembles (the T2w): inputs are
            stacked as ``data.input_keys`` blocks of ``context_slices`` channels, so with ``[T1w, T2w]`` and
            ``k`` context slices ``r = k + k // 2``. The output is no longer bounded to [-1, 1] (synthesis clamps).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        base_channels: int = 64,
        num_downs: int = 8,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_layers: int = 3,
        full_res_head: int = 0,
        residual_channel: int | None = None,
    ) -> None:
        super().__init__()
        check_norm(norm, "unet")
        if residual_channel is not None and not 0 <= residual_channel < in_channels:
            raise ConfigError(f"unet: residual_channel must be an input channel index in [0, {in_channels - 1}], "
                              f"got {residual_channel}")
        self.residual_channel = residual_channel
        if full_res_head < 0:
            raise ConfigError(f"unet: full_res_head must be >= 0 (0 = classic pix2pix output), got {full_res_head}")
        if num_downs < 2:
            raise ConfigError(f"unet: num_downs must be >= 2, got {num_downs}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"unet: dropout must be in [0, 1), got {dropout}")
        widths = [base_channels * min(2**i, 8) for i in range(num_downs)]
        bias = norm == "none"
        self.size_multiple = 2**num_downs

        # encoders[i]: (widths[i-1] or in_channels) -> widths[i], halving H and W
        self.encoders = nn.ModuleList()
        for i, width in enumerate(widths):
            if i == 0:
                layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1, bias=True)]
            elif i == num_downs - 1:  # innermost: no norm
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], width, 4, 2, 1, bias=True)]
            else:
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], width, 4, 2, 1, bias=bias),
                          norm_layer(norm, width)]
            self.encoders.append(nn.Sequential(*layers))

        # decoders[i]: features at level i (concatenated with the skip except at the innermost) ->
        # widths[i-1] channels (out_channels at level 0), doubling H and W. Stored innermost first.
        self.decoders = nn.ModuleList()
        for i in reversed(range(num_downs)):
            in_ch = widths[i] if i == num_downs - 1 else 2 * widths[i]
            if i == 0 and full_res_head:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, full_res_head, 4, 2, 1, bias=True), nn.ReLU()]
            elif i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_channels, 4, 2, 1, bias=True), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, widths[i - 1], 4, 2, 1, bias=bias),
                          norm_layer(norm, widths[i - 1])]
                levels_out = num_downs - 1 - i  # 0 = innermost
                if dropout > 0 and 1 <= levels_out <= dropout_layers:
                    layers.append(nn.Dropout(dropout))
            self.decoders.append(nn.Sequential(*layers))
        # registered only when used, so classic checkpoints keep their exact state_dict keys
        self.head = (nn.Sequential(nn.Conv2d(full_res_head + in_channels, full_res_head, 3, 1, 1), nn.ReLU(),
                                   nn.Conv2d(full_res_head, out_channels, 1), nn.Tanh())
                     if full_res_head else None)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, out_channels, H, W)`` in [-1, 1] (+-3 with ``residual_channel``)."""
        inputs, skips = x, []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()  # the innermost features feed the first decoder directly
        x = self.decoders[0](x)
        for decoder, skip in zip(self.decoders[1:], reversed(skips)):
            x = decoder(torch.cat([skip, x], dim=1))  # skip first, as in pix2pix
        if self.head is not None:
            x = self.head(torch.cat([inputs, x], dim=1))
        if self.residual_channel is not None:
            r = self.residual_channel
            x = inputs[:, r:r + 1] + 2.0 * x
        return x


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with a residual connection; shape-preserving."""

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = norm == "none"
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


@register_model("resnet")
class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator: 7x7 stem, two stride-2 downsamplings, ``n_blocks`` residual blocks,
    two transposed-convolution upsamplings, 7x7 head and tanh. Reflection padding avoids border artifacts.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels.
        base_channels: stem width (64 in CycleGAN); the residual blocks run at 4x this width.
        n_blocks: residual blocks (9 for 256 px, 6 for 128 px in CycleGAN).
        norm: ``"instance"`` (default) | ``"batch"`` | ``"group"`` | ``"none"``.
        dropout: dropout probability inside each residual block (0 in CycleGAN).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        base_channels: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_norm(norm, "resnet")
        if n_blocks < 0:
            raise ConfigError(f"resnet: n_blocks must be >= 0, got {n_blocks}")
        self.size_multiple = 4
        bias = norm == "none"
        c = base_channels
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, c, 7, bias=bias),
                                   norm_layer(norm, c), nn.ReLU()]
        for mult in (1, 2):
            layers += [nn.Conv2d(c * mult, c * mult * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, c * mult * 2), nn.ReLU()]
        layers += [ResnetBlock(4 * c, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(c * mult, c * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       norm_layer(norm, c * mult // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, out_channels, H, W)`` in [-1, 1]."""
        return self.model(x)
