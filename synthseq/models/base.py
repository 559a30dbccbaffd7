"""The interface between GAN models and the code that trains or runs them.

A :class:`GANModel` holds networks and knows its losses; it owns no optimizer, device or logger.
The training loop builds one optimizer over :meth:`generator_parameters` and one over
:meth:`discriminator_parameters`, and may replace each attribute named by :meth:`generator_modules` /
:meth:`discriminator_modules` with a DDP wrapper of it (so the model must always call its networks
through those attributes). Batches follow the convention in ``docs/overview.md``:
``"A"`` (B, C_in, H, W) T2w in [-1, 1], ``"B"`` (B, 1, H, W) STIR in [-1, 1], ``"mask"`` (B, 1, H, W).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn


class GANModel(nn.Module):
    """Base class of pix2pix and CycleGAN."""

    #: ``"pix2pix"`` or ``"cyclegan"``; stored in checkpoints.
    kind: str = ""

    def generator_modules(self) -> list[str]:
        """Attribute names of the generator networks (e.g. ``["G"]`` or ``["G_AB", "G_BA"]``)."""
        raise NotImplementedError

    def discriminator_modules(self) -> list[str]:
        """Attribute names of the discriminator networks (e.g. ``["D"]`` or ``["D_A", "D_B"]``)."""
        raise NotImplementedError

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        for name in self.generator_modules():
            yield from getattr(self, name).parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        for name in self.discriminator_modules():
            yield from getattr(self, name).parameters()

    def set_discriminators_trainable(self, flag: bool) -> None:
        """Freeze discriminators during the generator step (saves their weight gradients)."""
        for p in self.discriminator_parameters():
            p.requires_grad_(flag)

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Generator objective on one batch.

        Returns:
            ``(loss, terms, fakes)``: the scalar to backpropagate, each loss term detached (for logging),
            and the generated images the discriminator step needs (e.g. ``{"fake_B": ...}``).
        """
        raise NotImplementedError

    def discriminator_loss(self, batch: dict[str, Tensor], fakes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator objective given the generator step's ``fakes`` (detached inside)."""
        raise NotImplementedError

    @torch.no_grad()
    def translate(self, a: Tensor) -> Tensor:
        """Inference T2w -> pseudo-STIR: ``(B, C_in, H, W)`` in [-1, 1] -> ``(B, 1, H, W)`` in [-1, 1]."""
        raise NotImplementedError
