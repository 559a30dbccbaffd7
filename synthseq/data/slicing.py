"""Volume <-> canonical 2D slices in a chosen anatomical plane, and 2.5D context stacks.

Whatever the storage order (PSR, RAS, LAS, oblique), :class:`SliceView` presents a volume as ``(S, H, W)``
slices in one anatomical plane; every canonical axis runs towards the NEGATIVE end of its RAS axis (towards
L, P or I), so every model sees one anatomy orientation per plane:

=========  ======================  ==========================  ==========================
plane      S (slice index)         H (rows, row 0 =)           W (columns, column 0 =)
=========  ======================  ==========================  ==========================
sagittal   right -> left           superior (top of the head)  anterior (face side)
axial      superior -> inferior    anterior                    patient's right (radiological)
coronal    anterior -> posterior   superior                    patient's right (radiological)
=========  ======================  ==========================  ==========================

``plane="acquisition"`` resolves, per volume, to the plane orthogonal to the thickest voxel axis (the slices of
the acquisition: an axial 0.9 x 0.9 x 5 mm scan is cut into its 5-mm axial slices, not into 5-mm-tall sagittal
strips); :func:`resolve_plane` says which plane that is. :meth:`SliceView.from_slices` puts slices back onto the
original grid exactly (a permutation plus flips: no interpolation, no loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..io import anatomical_axis

#: Planes a model can be trained / applied in; "acquisition" resolves to one of the first three per volume.
PLANES = ("sagittal", "axial", "coronal")
PLANE_CHOICES = (*PLANES, "acquisition")
#: Anatomical axes of (S, H, W) per plane.
_PLANE_AXES = {"sagittal": ("LR", "SI", "AP"), "axial": ("SI", "AP", "LR"), "coronal": ("AP", "SI", "LR")}
_PLANE_ACROSS = {"LR": "sagittal", "SI": "axial", "AP": "coronal"}


def resolve_plane(plane: str, affine: np.ndarray) -> str:
    """``"sagittal"`` / ``"axial"`` / ``"coronal"`` as is; ``"acquisition"``: the plane orthogonal to the storage
    axis with the largest voxel size (the last storage axis when two or more tie within 1 %, the usual slice axis
    of a NIfTI converted from DICOM). ConfigError naming ``data.slice_plane`` for anything else."""
    if plane in PLANES:
        return plane
    if plane != "acquisition":
        raise ConfigError(f"data.slice_plane: expected one of {', '.join(PLANE_CHOICES)}, got {plane!r}")
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    thick = int(np.flatnonzero(spacing >= spacing.max() * 0.99)[-1])
    for name in ("LR", "SI", "AP"):
        if anatomical_axis(affine, name)[0] == thick:
            return _PLANE_ACROSS[name]
    raise ConfigError(f"data.slice_plane=acquisition: cannot tell the slice axis of affine {affine.tolist()}")


@dataclass(frozen=True)
class SliceView:
    """Axis permutation and flips from storage order to canonical ``(S, H, W)`` of one plane."""

    perm: tuple[int, int, int]  #: storage axes for (S, H, W)
    flips: tuple[bool, bool, bool]  #: flip each canonical axis after permuting
    plane: str = "sagittal"

    @classmethod
    def from_affine(cls, affine: np.ndarray, plane: str = "sagittal") -> SliceView:
        """The view of ``affine`` in ``plane`` (one of :data:`PLANE_CHOICES`; "acquisition" is resolved)."""
        plane = resolve_plane(plane, affine)
        perm, flips = [], []
        for name in _PLANE_AXES[plane]:
            axis, sign = anatomical_axis(affine, name)
            perm.append(axis)
            flips.append(sign > 0)  # canonical directions point towards L / P / I, the NEGATIVE RAS end
        return cls(perm=tuple(perm), flips=tuple(flips), plane=plane)

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
        """Distance between slices in mm."""
        return float(spacing[self.perm[0]])


#: The sagittal view under its historic name: ``SagittalView.from_affine(affine)`` is the sagittal plane.
SagittalView = SliceView


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
