"""Volume <-> canonical sagittal slices, and 2.5D context stacks.

Whatever the storage order (PSR, RAS, LAS, oblique), :class:`SagittalView` presents a volume as
``(S, H, W)`` slices with

* S running right -> left (across the volume's own left-right axis),
* H running superior -> inferior (row 0 is the top of the head),
* W running anterior -> posterior (column 0 is the face side),

so every model sees the same anatomy orientation, and :meth:`SagittalView.from_slices` puts slices back onto the
original grid exactly (a permutation plus flips: no interpolation, no loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import anatomical_axis


@dataclass(frozen=True)
class SagittalView:
    """Axis permutation and flips from storage order to canonical ``(S, H, W)``."""

    perm: tuple[int, int, int]  #: storage axes for (LR, SI, AP)
    flips: tuple[bool, bool, bool]  #: flip each canonical axis after permuting

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> SagittalView:
        lr, lr_sign = anatomical_axis(affine, "LR")
        si, si_sign = anatomical_axis(affine, "SI")
        ap, ap_sign = anatomical_axis(affine, "AP")
        # Canonical directions: towards L, towards I, towards P, i.e. towards the NEGATIVE RAS end.
        return cls(perm=(lr, si, ap), flips=(lr_sign > 0, si_sign > 0, ap_sign > 0))

    def to_slices(self, data):
        """``(X, Y, Z)`` storage array (numpy or torch) -> ``(S, H, W)`` canonical slices (a view when possible)."""
        axes = [i for i, f in enumerate(self.flips) if f]
        if isinstance(data, np.ndarray):
            out = np.transpose(data, self.perm)
            return np.flip(out, axis=axes) if axes else out
        out = data.permute(*self.perm)
        return out.flip(axes) if axes else out

    def from_slices(self, slices):
        """Exact inverse of :meth:`to_slices`: ``(S, H, W)`` -> storage ``(X, Y, Z)``."""
        axes = [i for i, f in enumerate(self.flips) if f]
        inverse = tuple(int(i) for i in np.argsort(self.perm))
        if isinstance(slices, np.ndarray):
            out = np.flip(slices, axis=axes) if axes else slices
            return np.transpose(out, inverse)
        out = slices.flip(axes) if axes else slices
        return out.permute(*inverse)

    def inplane_spacing(self, spacing: tuple[float, float, float]) -> tuple[float, float]:
        """Pixel size (dh, dw) in mm of the canonical slices, from the storage voxel size."""
        return float(spacing[self.perm[1]]), float(spacing[self.perm[2]])

    def slice_spacing(self, spacing: tuple[float, float, float]) -> float:
        """Distance between sagittal slices in mm."""
        return float(spacing[self.perm[0]])


def stack_context(slices, k: int):
    """``(S, H, W)`` -> ``(S, k, H, W)``: each slice with its k//2 neighbours on each side as channels.

    Edge slices are handled by replication (the nearest existing slice is repeated). ``k`` must be odd.
    Works for numpy arrays and torch tensors.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"context_slices must be a positive odd number, got {k}")
    n = slices.shape[0]
    offsets = np.arange(k) - k // 2
    index = np.clip(np.arange(n)[:, None] + offsets[None, :], 0, n - 1)  # (S, k)
    if isinstance(slices, np.ndarray):
        return slices[index]
    import torch

    return slices[torch.as_tensor(index, device=slices.device)]


def unstack_context(stacks):
    """``(S, k, H, W)`` -> ``(S, H, W)``: the centre channel (inverse of :func:`stack_context`)."""
    return stacks[:, stacks.shape[1] // 2]
