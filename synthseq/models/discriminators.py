"""PatchGAN discriminators (pix2pix) and a multi-scale variant (pix2pixHD).

A PatchGAN maps ``(B, C, H, W)`` to a grid of logits ``(B, 1, H', W')``, each judging one overlapping
input patch of ``receptive_field(n_layers)`` pixels square (70 for the default ``n_layers=3``, 16 for 1,
34 for 2, 142 for 4). For pix2pix the input is the pair ``concat(A, B)``; for CycleGAN a single domain.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import check_norm, init_weights, norm_layer
from .registry import register_model


def receptive_field(n_layers: int) -> int:
    """Receptive field (pixels, per axis) of one PatchGAN output for ``n_layers`` stride-2 convolutions.

    All convolutions are 4x4: ``n_layers`` with stride 2, then two with stride 1. Walking back from one
    output pixel, a k x k stride-s convolution maps a span r to ``s * (r - 1) + k``.
    """
    r = 1
    for stride in [1, 1] + [2] * n_layers:  # last layer first
        r = stride * (r - 1) + 4
    return r


@register_model("patchgan")
class PatchGANDiscriminator(nn.Module):
    """pix2pix PatchGAN: ``n_layers`` stride-2 4x4 convolutions (widths ``base_channels * min(2**i, 8)``),
    a stride-1 convolution and a 1-channel stride-1 output convolution; LeakyReLU(0.2); no norm on the
    first layer. Outputs raw logits (the GAN loss applies the sigmoid / squares / hinge).

    Args:
        in_channels: input channels (C_in + 1 for the conditional pix2pix D).
        base_channels: width of the first layer (64 in pix2pix).
        n_layers: stride-2 layers; 3 gives the classic 70x70 receptive field.
        norm: ``"batch" | "instance" | "group" | "none"``.
    """

    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        check_norm(norm, "patchgan")
        if n_layers < 1:
            raise ConfigError(f"patchgan: n_layers must be >= 1, got {n_layers}")
        bias = norm == "none"
        widths = [base_channels * min(2**i, 8) for i in range(n_layers + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1, bias=bias), norm_layer(norm, widths[i]),
                       nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        self.receptive_field = receptive_field(n_layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> logits ``(B, 1, H', W')`` with ``H' = H / 2**n_layers - 2`` for H divisible."""
        return self.model(x)


@register_model("multiscale_patchgan")
class MultiScalePatchGANDiscriminator(nn.Module):
    """``num_scales`` independent PatchGANs; scale ``s`` sees the input average-pooled ``s`` times
    (3x3, stride 2), so coarser scales judge larger structures (pix2pixHD).

    Returns a list of logit maps, finest first; :class:`synthseq.losses.GANLoss` averages over the list.
    """

    def __init__(
        self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch", num_scales: int = 2
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise ConfigError(f"multiscale_patchgan: num_scales must be >= 1, got {num_scales}")
        self.discriminators = nn.ModuleList(
            PatchGANDiscriminator(in_channels, base_channels, n_layers, norm) for _ in range(num_scales)
        )
        #: receptive field of each scale in input pixels (pooling by 2 doubles it, roughly)
        self.receptive_field = receptive_field(n_layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, C, H, W)`` -> ``[(B, 1, H_s', W_s') for s in range(num_scales)]``, finest first."""
        outputs = []
        last = len(self.discriminators) - 1
        for s, disc in enumerate(self.discriminators):
            outputs.append(disc(x))
            if s < last:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return outputs
