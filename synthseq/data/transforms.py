"""Training augmentations of 2D slice pairs as MONAI dictionary transforms (the CPU / DataLoader path).

Items are dicts of channel-first ``(C, H, W)`` float tensors in model space (``"A"`` input, ``"B"`` target,
``"mask"`` body mask of A in {0, 1}, optional ``"lesion"`` lesion mask in {0, 1}). Choices (shared with the GPU
path in :mod:`synthseq.data.gpu`, which draws the same kinds of transforms with kornia from :class:`AugmentSettings`):

* **Geometric** transforms (in-plane flip along W, i.e. anterior <-> posterior as pix2pix's horizontal flip; small
  rotation / isotropic scaling / translation) are applied with ONE draw to A, B and mask of a pair, so the pair
  stays pixel-aligned (bilinear for images, nearest for the masks, border padding). Flipping along H (head <-> feet)
  is never done. For unpaired items A (with its mask) and B get independent draws.
* **Intensity** transforms (multiplicative bias field, gamma, Gaussian noise) touch the INPUT A only: the model
  should become robust to input variation while the target stays the true STIR intensity. Bias field and gamma
  act on ``A + 1`` (>= 0 for body voxels; the bias field is multiplicative) and shift back, so the background
  stays at its normalized value.

Randomness: :func:`augment_item` reseeds the composed transform from an integer, so an item's augmentation is a
pure function of ``(seed, epoch, index)`` chosen by the dataset, whatever the worker or the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # MONAI takes seconds to import: only the augmenting CPU path needs it
    from monai.transforms import Compose


@dataclass(frozen=True)
class AugmentSettings:
    """Strengths and probabilities of the augmentations (both the MONAI and the kornia path)."""

    flip_prob: float = 0.5  #: in-plane flip along W (anterior <-> posterior)
    affine_prob: float = 0.5
    rotate_deg: float = 5.0  #: rotation drawn uniformly in +-rotate_deg
    scale: float = 0.05  #: isotropic zoom drawn in 1 +- scale
    translate_px: float = 8.0  #: shift drawn in +-translate_px along each axis
    bias_prob: float = 0.3
    bias_coeff: float = 0.15  #: polynomial coefficients of log(bias field) drawn in +-bias_coeff
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_prob: float = 0.3
    noise_std: float = 0.03  #: model units (the [-1, 1] range is 2 wide)


def build_augmentation(
    settings: AugmentSettings = AugmentSettings(),
    geometric_keys: Sequence[str] = ("A", "B", "mask"),
    intensity_keys: Sequence[str] = ("A",),
    mask_keys: Sequence[str] = ("mask", "lesion"),
) -> Compose:
    """A MONAI ``Compose`` of dictionary transforms for ``(C, H, W)`` items (see the module docstring).

    Args:
        settings: strengths and probabilities.
        geometric_keys: keys moved together by one draw of flip and affine.
        intensity_keys: keys that get bias field, gamma and noise (default: the input only).
        mask_keys: geometric keys interpolated with nearest neighbour.
    """
    from monai.transforms import (
        Compose,
        Lambdad,
        RandAdjustContrastd,
        RandAffined,
        RandBiasFieldd,
        RandFlipd,
        RandGaussianNoised,
    )

    s = settings
    geo = list(geometric_keys)
    modes = ["nearest" if k in mask_keys else "bilinear" for k in geo]
    rot = float(np.deg2rad(s.rotate_deg))
    steps: list = []
    if geo:
        steps += [
            RandFlipd(keys=geo, prob=s.flip_prob, spatial_axis=1),
            # one scale for both axes would need a custom transform; MONAI draws per axis, so keep it small
            RandAffined(keys=geo, prob=s.affine_prob, rotate_range=(rot,), scale_range=(s.scale, s.scale),
                        translate_range=(s.translate_px, s.translate_px), mode=modes, padding_mode="border"),
        ]
    ik = list(intensity_keys)
    if ik:
        steps += [
            Lambdad(keys=ik, func=lambda x: x + 1.0),
            RandBiasFieldd(keys=ik, degree=3, coeff_range=(-s.bias_coeff, s.bias_coeff), prob=s.bias_prob),
            Lambdad(keys=ik, func=lambda x: x - 1.0),
            RandAdjustContrastd(keys=ik, prob=s.gamma_prob, gamma=s.gamma),
            RandGaussianNoised(keys=ik, prob=s.noise_prob, mean=0.0, std=s.noise_std),
        ]
    return Compose(steps)


def _plain(x) -> torch.Tensor:
    """MetaTensor / ndarray -> plain contiguous float32 ``torch.Tensor`` (drops MONAI metadata)."""
    if hasattr(x, "as_tensor"):
        x = x.as_tensor()
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float().contiguous()


def augment_item(transform: Compose, item: dict, seed: int, keys: Sequence[str]) -> dict:
    """Apply ``transform`` to the tensors ``keys`` of ``item`` with randomness seeded by ``seed``.

    Returns a new dict (other entries copied through) whose tensors are plain float32 ``(C, H, W)``; mask
    keys stay in {0, 1} because they are resampled with nearest neighbour.
    """
    transform.set_random_state(seed=int(seed) % (2**32))
    out = transform({k: item[k] for k in keys})
    result = dict(item)
    for k in keys:
        result[k] = _plain(out[k])
    return result


__all__ = ["AugmentSettings", "augment_item", "build_augmentation"]
