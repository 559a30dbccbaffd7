"""Building blocks shared by the generators and discriminators: normalization choice and weight init."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

#: Normalization layers a network can be built with (``norm=`` argument).
NORMS = ("batch", "instance", "group", "none")


def check_norm(norm: str, owner: str) -> None:
    """Raise ConfigError naming ``owner`` when ``norm`` is not one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ConfigError(f"{owner}: unknown norm {norm!r} (expected one of {', '.join(NORMS)})")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """A 2D normalization layer over ``channels`` feature maps.

    ``"batch"``: BatchNorm2d (affine); ``"instance"``: InstanceNorm2d without affine parameters or running
    statistics (as in pix2pix / CycleGAN); ``"group"``: GroupNorm with the largest group count <= 32 that
    divides ``channels``; ``"none"``: identity.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "group":
        groups = max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {norm!r} (expected one of {', '.join(NORMS)})")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix initialization: conv weights ~ N(0, std), biases 0; affine norm weights ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
