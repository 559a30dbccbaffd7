"""A history of generated images for the CycleGAN discriminators (Shrivastava et al. 2017).

Showing the discriminators a mix of current and older fakes damps oscillation. Decisions come from a
private, seedable ``torch.Generator`` so that, with :meth:`ImagePool.state_dict` saved in the checkpoint,
a resumed run draws exactly what an uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError


class ImagePool:
    """Buffer of up to ``size`` past images.

    :meth:`query` takes a batch ``(B, C, H, W)`` and returns a batch of the same shape: while the pool is
    filling, each image is stored and returned as is; once full, each image is, with probability 1/2,
    swapped for a uniformly chosen stored one (which is returned, the new one taking its slot), otherwise
    returned as is. ``size=0`` disables the pool (returns its input).

    Args:
        size: capacity in images (50 in CycleGAN).
        seed: an int seed or a ``torch.Generator`` (CPU) that drives the choices.
    """

    def __init__(self, size: int = 50, seed: int | torch.Generator = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        if isinstance(seed, torch.Generator):
            self.generator = seed
        else:
            self.generator = torch.Generator()
            self.generator.manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def seed(self, seed: int) -> None:
        """Reseed the choices (e.g. differently per DDP rank) without touching the contents."""
        self.generator.manual_seed(int(seed))

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` (detached inside) -> ``(B, C, H, W)`` mixing new and stored images."""
        if self.size == 0:
            return images
        images = images.detach()
        out = []
        for image in images.unbind(0):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            swap = torch.rand((), generator=self.generator).item() < 0.5
            if swap:
                slot = int(torch.randint(self.size, (), generator=self.generator).item())
                out.append(self.images[slot].to(image.device, image.dtype))
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out, 0)

    def state_dict(self) -> dict[str, Any]:
        """Contents ((N, C, H, W) tensor or None) and generator state, for checkpoints."""
        return {
            "size": self.size,
            "images": torch.stack(self.images, 0) if self.images else None,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (images stay on the device they were loaded to)."""
        if int(state["size"]) != self.size:
            raise ConfigError(f"loss.cyclegan.pool_size is {self.size} but the saved image pool has size {state['size']}")
        images = state["images"]
        self.images = [] if images is None else list(images.unbind(0))
        self.generator.set_state(state["generator"])
