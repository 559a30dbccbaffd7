"""Training augmentations of 2D slices: ONE definition (parameters, distributions, operations) for both data paths.

Both the map-style datasets (:func:`augment_item`, the CPU / DataLoader path) and the device-resident slice bank
(:class:`synthseq.data.gpu.GPUSliceBank`) draw their parameters with :func:`sample_geometry` /
:func:`sample_intensity` and apply them with :func:`pixel_affine` + kornia's ``warp_affine`` and
:func:`apply_intensity`, so switching ``data.gpu_resident`` never changes what the model trains on. Random
transforms only sample parameters (from the ``torch.Generator`` passed in) and hand them to deterministic
operations, so an augmentation can be replayed.

Items are dicts of channel-first ``(C, H, W)`` float tensors in model space (``"A"`` input, ``"B"`` target,
``"mask"`` body mask of A in {0, 1}, optional ``"lesion"`` lesion mask and ``"reference"`` lesion reference
tissue mask in {0, 1}).

* **Geometric** (:func:`sample_geometry`, probability ``affine_prob`` for the affine part): flip along W
  (anterior <-> posterior, pix2pix's horizontal flip; never head <-> feet) with ``flip_prob``; rotation uniform
  in ``+-rotate_deg``; isotropic zoom uniform in ``1 +- scale``; shift uniform in ``+-translate_px`` per axis. ONE
  draw moves A, B and mask of a pair together (bilinear for images, nearest for masks in the CPU path, border
  padding); for unpaired items A (with its mask) and B get independent draws.
* **Intensity** (:func:`sample_intensity`, INPUT A only: the model becomes robust to input variation while the
  target stays the true STIR intensity): a multiplicative bias field ``exp(c . (x, y, x^2, xy, y^2))`` with
  coefficients uniform in ``+-bias_coeff`` (probability ``bias_prob``) on ``A + 1`` (>= 0 on body voxels), gamma
  log-uniform in ``gamma`` (probability ``gamma_prob``) on ``(A + 1) / 2``, Gaussian noise with a std uniform in
  ``[0, noise_std]`` (probability ``noise_prob``). The same draw acts on all channels of an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class AugmentSettings:
    """Strengths and probabilities of the augmentations (both data paths)."""

    flip_prob: float = 0.5  #: in-plane flip along W (anterior <-> posterior)
    affine_prob: float = 0.5
    rotate_deg: float = 5.0  #: rotation drawn uniformly in +-rotate_deg
    scale: float = 0.05  #: isotropic zoom drawn in 1 +- scale
    translate_px: float = 8.0  #: shift drawn in +-translate_px along each axis
    bias_prob: float = 0.3
    bias_coeff: float = 0.15  #: polynomial coefficients of log(bias field) drawn in +-bias_coeff
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.8, 1.25)  #: gamma drawn log-uniformly in this range
    noise_prob: float = 0.3
    noise_std: float = 0.03  #: upper bound of the noise std, model units (the [-1, 1] range is 2 wide)


@dataclass(frozen=True)
class Geometry:
    """Geometric parameters of N items: ``flip`` (N,) +-1, ``angle`` (N,) rad, ``zoom`` (N,), ``shift`` (N, 2)
    pixels as (x, y)."""

    flip: Tensor
    angle: Tensor
    zoom: Tensor
    shift: Tensor


@dataclass(frozen=True)
class Intensity:
    """Intensity parameters of N items: ``bias`` (N, 5) log-field coefficients, ``gamma`` (N,), ``noise_std`` (N,)."""

    bias: Tensor
    gamma: Tensor
    noise_std: Tensor


# --------------------------------------------------------------------------------------------- sampling
def sample_geometry(s: AugmentSettings, n: int, g: torch.Generator) -> Geometry:
    """Draw the geometric parameters of ``n`` items from ``g`` (6 uniforms per item, on ``g``'s device)."""
    r = torch.rand((n, 6), generator=g, device=g.device)
    on = (r[:, 1] < s.affine_prob).float()
    return Geometry(
        flip=torch.where(r[:, 0] < s.flip_prob, -1.0, 1.0),
        angle=torch.deg2rad((2 * r[:, 2] - 1) * s.rotate_deg) * on,
        zoom=1 + (2 * r[:, 3] - 1) * s.scale * on,
        shift=(2 * r[:, 4:6] - 1) * s.translate_px * on[:, None],
    )


def sample_intensity(s: AugmentSettings, n: int, g: torch.Generator) -> Intensity:
    """Draw the intensity parameters of ``n`` items from ``g`` (10 uniforms per item)."""
    r = torch.rand((n, 5), generator=g, device=g.device)
    coef = (2 * torch.rand((n, 5), generator=g, device=g.device) - 1) * s.bias_coeff * (r[:, :1] < s.bias_prob)
    lg0, lg1 = np.log(s.gamma[0]), np.log(s.gamma[1])
    gamma = torch.where(r[:, 1] < s.gamma_prob, torch.exp(lg0 + r[:, 2] * (lg1 - lg0)), torch.ones_like(r[:, 2]))
    std = torch.where(r[:, 3] < s.noise_prob, r[:, 4] * s.noise_std, torch.zeros_like(r[:, 4]))
    return Intensity(bias=coef, gamma=gamma, noise_std=std)


# ------------------------------------------------------------------------------------------- operations
def pixel_affine(geo: Geometry, size: tuple[int, int], margin: int = 0) -> Tensor:
    """``(N, 2, 3)`` source -> destination pixel maps (kornia ``warp_affine`` convention) about the centre of an
    ``(H, W)`` = ``size`` output cut from a source window ``margin`` pixels larger on every side."""
    n = geo.flip.shape[0]
    cos, sin = torch.cos(geo.angle) * geo.zoom, torch.sin(geo.angle) * geo.zoom
    lin = torch.stack([torch.stack([cos * geo.flip, -sin], -1), torch.stack([sin * geo.flip, cos], -1)], 1)
    h, w = size
    c_dst = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=lin.device).expand(n, 2)
    c_src = c_dst + margin
    t = c_dst + geo.shift - (lin @ c_src[:, :, None])[:, :, 0]
    return torch.cat([lin, t[:, :, None]], 2)


def bias_basis(size: tuple[int, int], device: torch.device | str | None = None) -> Tensor:
    """``(5, H, W)`` monomials ``x, y, x^2, xy, y^2`` on ``[-1, 1]^2`` of the log bias field."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size[0]), torch.linspace(-1, 1, size[1]), indexing="ij")
    return torch.stack([xx, yy, xx * xx, xx * yy, yy * yy]).to(device)


def apply_intensity(a: Tensor, p: Intensity, basis: Tensor, g: torch.Generator) -> Tensor:
    """Bias field, gamma and noise (drawn from ``g``) on inputs ``a`` ``(N, C, H, W)`` in model space."""
    n = a.shape[0]
    field = torch.exp(torch.einsum("bp,phw->bhw", p.bias, basis))[:, None]
    a = (a + 1) * field - 1
    t = (a + 1) / 2
    a = 2 * torch.sign(t) * t.abs().pow(p.gamma.view(n, 1, 1, 1)) - 1
    noise = torch.randn(a.shape, generator=g, device=g.device)
    return a + noise * p.noise_std.view(n, 1, 1, 1)


def warp(x: Tensor, matrices: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """``(N, C, h, w)`` -> ``(N, C, *size)`` with kornia's ``warp_affine`` (border padding)."""
    from kornia.geometry.transform import warp_affine  # imported on first use (seconds)

    return warp_affine(x.float(), matrices, dsize=size, mode=mode, padding_mode="border", align_corners=True)


# -------------------------------------------------------------------------------------------- one item
def augment_item(settings: AugmentSettings, item: dict, seed: int, geometric_keys: Sequence[str],
                 intensity_keys: Sequence[str] = ("A",),
                 mask_keys: Sequence[str] = ("mask", "lesion", "reference")) -> dict:
    """Augment one item (the CPU path) with parameters drawn from a generator seeded by ``seed``.

    ``geometric_keys`` share ONE geometric draw (nearest-neighbour for ``mask_keys``, so masks stay in {0, 1});
    ``intensity_keys`` then get one intensity draw. Returns a new dict (other entries copied through) of plain
    float32 ``(C, H, W)`` tensors. The draws are those :class:`~synthseq.data.gpu.GPUSliceBank` makes for an item.
    """
    g = torch.Generator().manual_seed(int(seed) % (2**63))
    out = dict(item)
    if geometric_keys:
        size = tuple(item[geometric_keys[0]].shape[-2:])
        geo = sample_geometry(settings, 1, g)
        exact = bool(geo.angle[0] == 0 and geo.zoom[0] == 1 and not geo.shift[0].any())  # no affine drawn
        mats = pixel_affine(geo, size)
        for k in geometric_keys:
            x = torch.as_tensor(item[k]).float()
            if exact:  # a flip (or nothing) is exact without interpolation
                out[k] = (x.flip(-1) if geo.flip[0] < 0 else x).contiguous()
            else:
                mode = "nearest" if k in mask_keys else "bilinear"
                out[k] = warp(x[None], mats, size, mode)[0].contiguous()
    if intensity_keys:
        params = sample_intensity(settings, 1, g)
        for k in intensity_keys:
            x = torch.as_tensor(out[k]).float()
            out[k] = apply_intensity(x[None], params, bias_basis(tuple(x.shape[-2:])), g)[0].contiguous()
    return out


__all__ = ["AugmentSettings", "Geometry", "Intensity", "apply_intensity", "augment_item", "bias_basis",
           "pixel_affine", "sample_geometry", "sample_intensity", "warp"]
