"""Image- and lesion-level metrics of pseudo-STIR against real STIR, defined once for the whole package.

Training validation, ``synthseq evaluate``, the downstream utility benchmark and the benchmarks all call these.

Intensity convention (read this before comparing numbers)
---------------------------------------------------------
Metrics compare images in the **normalized model space**. Each volume -- prediction and target alike -- is mapped
to [-1, 1] *by its own* robust percentiles: ``synthseq.data.normalize(x, "percentile", (0.5, 99.5), mask=body)``,
i.e. the 0.5th / 99.5th percentiles of its voxels inside the body mask map to -1 / +1, without clipping
(:func:`normalize_pair` does exactly this). Comparing each image in its own scale makes the numbers independent of
the arbitrary scanner scale of real STIR and of the T2w scale the pseudo-STIR is written in, and it is the space the
generator works in. Consequently:

* ``data_range`` is an explicit, required argument: **2.0** (the width of [-1, 1]) for normalized images.
  A PSNR whose peak is each image's own maximum is not comparable across images or studies and is never used.
* PSNR = ``10 log10(data_range**2 / MSE)``; MAE is in normalized units (1.0 = half the 0.5-99.5 percentile span).
* SSIM uses a Gaussian window (11 x 11, sigma 1.5), K1 = 0.01, K2 = 0.03, and a "same"-size SSIM map (reflect
  padding); the masked SSIM of an image is the mean of its SSIM map inside the mask.
* Masks restrict every metric to the body (``labels > 0`` and not airway for the phantom); an image whose mask is
  empty gives NaN.

Per-slice functions take ``(B, C, H, W)`` tensors (numpy arrays and 2D ``(H, W)`` / 3D ``(S, H, W)`` inputs are
accepted and treated as a batch of single-channel images) and return one value per image, shape ``(B,)``.
:func:`volume_metrics` pools all slices of a volume (voxel-weighted inside the mask).

Lesion level
------------
``contrast = (mean_lesion - mean_reference) / mean_reference`` computed on ``image + offset``; for normalized
images ``offset = 1`` shifts [-1, 1] to [0, 2], so the volume's low percentile inside the body is the zero of the
ratio (a plain ratio on [-1, 1] would divide by numbers near zero or of either sign). The reference tissue for each
lesion class is normal tissue from the phantom's tissue labels in the same sagittal slices
(:data:`REFERENCE_TISSUES`). ``contrast recovery = contrast(pseudo-STIR) / contrast(real STIR)``: 1 means the lesion
stands out exactly as much as in real STIR, 0 means it vanished, negative means its polarity flipped.
Contrast is a ratio over the reference, so a reference near the low percentile (e.g. the dark interspinous ligament
against a PLC injury on STIR, ~0.08 above it) makes it steep: a reference rendered 0.03 brighter halves it.
``step recovery = step(pseudo-STIR) / step(real STIR)`` with ``step = mean_lesion - mean_reference`` in normalized
units is the offset-free companion: how much of the lesion-to-reference intensity step is reproduced.
``CNR = (mean_lesion - mean_reference) / std`` with std taken in a noise mask if given, else in the reference tissue.

LPIPS needs pretrained backbone weights in the local torch cache (nothing is downloaded); when they are absent
:func:`lpips_distance` returns NaN with ``available=False`` and the reason, never a randomly initialised network.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import codes
from .codes import REFERENCE_TISSUES, body_mask_from_labels, reference_masks
from .data.normalize import NormParams, apply_normalization, fit_normalization

#: Width of the model space [-1, 1]: the data_range of every metric on normalized images.
MODEL_DATA_RANGE = 2.0
#: Percentiles each volume is normalized with before metrics (same as the model's default).
METRIC_PERCENTILES = (0.5, 99.5)
#: Smallest slice side LPIPS is run on (smaller slices are padded with background -1).
LPIPS_MIN_SIZE = 64

# --------------------------------------------------------------------------------------- code tables
#: ``{name: code}`` of the phantom's tissue labels and lesion codes (:mod:`synthseq.codes`).
TISSUE_CODES: dict[str, int] = {name: code for code, name in codes.TISSUES.items()}
LESION_CODES: dict[str, int] = {name: code for code, name in codes.LESIONS.items()}

# ------------------------------------------------------------------------------------------ helpers
def _as_bchw(x) -> Tensor:
    """``(B, C, H, W)`` tensor from a tensor or array of shape (B, C, H, W), (S, H, W) or (H, W); float32/64."""
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif t.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), (S, H, W) or (H, W), got shape {tuple(t.shape)}")
    if t.dtype != torch.float64:
        t = t.float()
    return t


def _prepare(pred, target, mask) -> tuple[Tensor, Tensor, Tensor]:
    p, t = _as_bchw(pred), _as_bchw(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    t = t.to(device=p.device, dtype=p.dtype)
    if mask is None:
        m = torch.ones_like(p)
    else:
        m = _as_bchw(mask).to(device=p.device, dtype=p.dtype)
        m = (m > 0).to(p.dtype).expand_as(p)
    return p, t, m


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not data_range > 0:
        raise ValueError(f"data_range must be positive (2.0 for images in [-1, 1]), got {data_range}")
    return data_range


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over (C, H, W) inside ``mask``, per image: ``(B,)``; NaN where the mask is empty."""
    num = (values * mask).flatten(1).sum(1)
    den = mask.flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))


# ---------------------------------------------------------------------------------- image metrics
def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.nanmean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def mae(pred, target, mask=None, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """Mean absolute error per image inside ``mask``.

    Args:
        pred, target: ``(B, C, H, W)`` (or ``(S, H, W)`` / ``(H, W)``), same units (normalized: [-1, 1]).
        mask: optional, broadcastable to pred (e.g. ``(B, 1, H, W)``); nonzero = inside.
        data_range: accepted so MAE, PSNR and SSIM share one call signature; MAE does not depend on it.
        reduction: ``"none"`` -> ``(B,)``; ``"mean"`` -> the mean over images (NaN images skipped).

    Returns:
        ``(B,)`` MAE in the images' units; NaN for an empty mask.

    >>> float(mae(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5))[0])
    0.5
    """
    p, t, m = _prepare(pred, target, mask)
    return _reduce(_masked_mean((p - t).abs(), m), reduction)


def mse(pred, target, mask=None, reduction: str = "none") -> Tensor:
    """Mean squared error per image inside ``mask``: ``(B,)``."""
    p, t, m = _prepare(pred, target, mask)
    return _reduce(_masked_mean((p - t) ** 2, m), reduction)


def psnr(pred, target, data_range: float, mask=None, reduction: str = "none") -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB per image: ``(B,)``.

    ``data_range`` is fixed by the caller (2.0 for [-1, 1] images), never taken from each image's own maximum.
    Identical images give +inf; an empty mask gives NaN.

    >>> round(float(psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1), data_range=2.0)[0]), 3)
    26.021
    """
    r = _check_range(data_range)
    err = mse(pred, target, mask)
    return _reduce(10.0 * torch.log10(r**2 / err), reduction)


def _gaussian_window(window: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(window, dtype=dtype, device=device) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(pred, target, data_range: float, window: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Local SSIM map ``(B, C, H, W)`` (same size as the input; Gaussian window, reflect padding).

    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
    ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2`` and ``R = data_range``.
    """
    r = _check_range(data_range)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    p, t, _ = _prepare(pred, target, None)
    c = p.shape[1]
    g = _gaussian_window(window, sigma, p.dtype, p.device)
    kh = g.view(1, 1, window, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, window).repeat(c, 1, 1, 1)
    pad = window // 2
    mode = "reflect" if min(p.shape[-2:]) > pad else "replicate"

    def blur(x: Tensor) -> Tensor:
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
        return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def ssim(pred, target, data_range: float, mask=None, window: int = 11, sigma: float = 1.5,
         reduction: str = "none") -> Tensor:
    """Structural similarity per image: the mean of :func:`ssim_map` (inside ``mask`` if given): ``(B,)``.

    >>> x = torch.rand(2, 1, 16, 16) * 2 - 1
    >>> torch.allclose(ssim(x, x, data_range=2.0), torch.ones(2))
    True
    """
    smap = ssim_map(pred, target, data_range, window, sigma)
    _, _, m = _prepare(pred, target, mask)
    return _reduce(_masked_mean(smap, m.to(smap.device, smap.dtype)), reduction)


def weighted_volume_mean(values, weights) -> float:
    """Per-volume value from per-slice values ``(S,)``: mean weighted by ``weights`` ``(S,)`` (e.g. mask voxels
    per slice), NaN slices skipped; NaN when no slice has weight."""
    v = np.asarray(torch.as_tensor(values).detach().cpu().double())
    w = np.asarray(torch.as_tensor(weights).detach().cpu().double())
    ok = np.isfinite(v) & (w > 0)
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


@torch.no_grad()
def volume_metrics(pred, target, mask=None, *, data_range: float, window: int = 11, sigma: float = 1.5,
                   batch_size: int = 64) -> dict[str, float]:
    """MAE, PSNR and SSIM of one volume, pooled over all its slices inside ``mask``.

    Args:
        pred, target: ``(S, H, W)`` slices of one volume (canonical sagittal slices; see
            :class:`synthseq.data.SagittalView`), already normalized the same way (see the module docstring).
        mask: ``(S, H, W)`` body mask or None (whole image).
        data_range: 2.0 for normalized images.

    Returns:
        ``{"mae", "psnr", "ssim", "voxels"}``: MAE and MSE over every masked voxel of the volume (PSNR from that
        MSE), SSIM as the mean of the SSIM maps over every masked voxel (= per-slice masked SSIM weighted by the
        slice's mask size).
    """
    p, t, m = _prepare(pred, target, mask)
    abs_sum = sq_sum = ssim_sum = count = 0.0
    for i in range(0, p.shape[0], batch_size):
        pb, tb, mb = p[i:i + batch_size], t[i:i + batch_size], m[i:i + batch_size]
        if not bool(mb.any()):
            continue
        d = pb - tb
        abs_sum += float((d.abs() * mb).sum())
        sq_sum += float((d * d * mb).sum())
        ssim_sum += float((ssim_map(pb, tb, data_range, window, sigma) * mb).sum())
        count += float(mb.sum())
    if count == 0:
        nan = float("nan")
        return {"mae": nan, "psnr": nan, "ssim": nan, "voxels": 0}
    mse_v = sq_sum / count
    psnr_v = 10.0 * math.log10(_check_range(data_range) ** 2 / mse_v) if mse_v > 0 else float("inf")
    return {"mae": abs_sum / count, "psnr": psnr_v, "ssim": ssim_sum / count, "voxels": int(count)}


def normalize_pair(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
                   percentiles: tuple[float, float] = METRIC_PERCENTILES,
                   names: tuple[str, str] = ("prediction", "target"),
                   ) -> tuple[np.ndarray, np.ndarray, NormParams, NormParams]:
    """Normalize prediction and target each by its own percentiles inside ``mask`` (no clipping).

    Returns ``(pred_n, target_n, pred_params, target_params)``, float32 arrays of the input shapes in model units.
    """
    pp = fit_normalization(pred, "percentile", percentiles, mask, names[0])
    tp = fit_normalization(target, "percentile", percentiles, mask, names[1])
    return apply_normalization(pred, pp), apply_normalization(target, tp), pp, tp


# -------------------------------------------------------------------------------------------- LPIPS
@dataclass(frozen=True)
class LPIPSResult:
    """LPIPS per image ``(B,)`` (NaN when unavailable), whether a pretrained network was used, and why not."""

    values: Tensor
    available: bool
    reason: str = ""


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str):
    from .perceptual import load_lpips

    return load_lpips(net=net)


@torch.no_grad()
def lpips_distance(pred, target, mask=None, net: str = "alex") -> LPIPSResult:
    """Learned perceptual distance (lower is better) per image, on ``(B, 1, H, W)`` images in [-1, 1].

    Single-channel images are repeated to 3 channels; outside ``mask`` both images are set to -1 (background) so
    only the body is compared; slices smaller than ``LPIPS_MIN_SIZE`` are padded with -1. The network comes from :func:`synthseq.perceptual.load_lpips`, which uses backbone
    weights from the local torch cache only; without them the result is NaN with ``available=False``.
    """
    from .errors import SynthseqError

    p, t, m = _prepare(pred, target, mask)
    nan = torch.full((p.shape[0],), float("nan"))
    try:
        model = _lpips_model(net)
    except (SynthseqError, ImportError, OSError, RuntimeError) as exc:
        return LPIPSResult(nan, False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    device = next(model.parameters()).device
    p = torch.where(m > 0, p, torch.full_like(p, -1.0)).float()
    t = torch.where(m > 0, t, torch.full_like(t, -1.0)).float()
    # the backbone pools the image down 8x twice over: pad small slices with background to LPIPS_MIN_SIZE
    ph, pw = max(0, LPIPS_MIN_SIZE - p.shape[-2]), max(0, LPIPS_MIN_SIZE - p.shape[-1])
    if ph or pw:
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        p, t = F.pad(p, pad, value=-1.0), F.pad(t, pad, value=-1.0)
    if p.shape[1] == 1:
        p, t = p.repeat(1, 3, 1, 1), t.repeat(1, 3, 1, 1)
    out = model(p.to(device), t.to(device))
    return LPIPSResult(out.flatten(1).mean(1).float().cpu(), True, "")


# ------------------------------------------------------------------------------------ lesion level
def tissue_contrast(image: np.ndarray, lesion_mask: np.ndarray, ref_mask: np.ndarray, offset: float = 1.0) -> float:
    """``(mean_lesion - mean_ref) / mean_ref`` on ``image + offset`` (offset 1 for [-1, 1] images); NaN if a mask
    is empty or the reference mean is ~0."""
    img = np.asarray(image, dtype=np.float64) + offset
    lm, rm = np.asarray(lesion_mask, bool), np.asarray(ref_mask, bool)
    if not lm.any() or not rm.any():
        return float("nan")
    ref = img[rm].mean()
    if abs(ref) < 1e-8:
        return float("nan")
    return float((img[lm].mean() - ref) / ref)


def lesion_cnr(image: np.ndarray, lesion_mask: np.ndarray, ref_mask: np.ndarray,
               noise_mask: np.ndarray | None = None) -> float:
    """Contrast-to-noise ratio ``(mean_lesion - mean_ref) / std``; std of ``noise_mask`` voxels if given, else of
    the reference tissue (texture + noise). NaN if a mask is empty or the std is 0."""
    img = np.asarray(image, dtype=np.float64)
    lm, rm = np.asarray(lesion_mask, bool), np.asarray(ref_mask, bool)
    nm = rm if noise_mask is None else np.asarray(noise_mask, bool)
    if not lm.any() or not rm.any() or nm.sum() < 2:
        return float("nan")
    sd = img[nm].std(ddof=1)
    if not sd > 0:
        return float("nan")
    return float((img[lm].mean() - img[rm].mean()) / sd)


#: Smallest |relative contrast| of a lesion in the real STIR for which a recovery ratio is reported (10 %).
MIN_TARGET_CONTRAST = 0.1
#: Smallest |lesion - reference step| in the real STIR (normalized units, range 2) for which a step recovery is
#: reported (2.5 % of the range).
MIN_TARGET_STEP = 0.05


#: Prefixes of the per-lesion-class columns of an evaluation table (contrast recovery, step recovery, reference
#: bias, CNR); no registered metric may take them.
LESION_COLUMN_PREFIXES = ("cr_", "sr_", "rb_", "cnr_")


def _mean_in(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``image`` inside ``mask`` (float64); NaN for an empty mask."""
    m = np.asarray(mask, bool)
    return float(np.asarray(image, np.float64)[m].mean()) if m.any() else float("nan")


def intensity_step(image: np.ndarray, lesion_mask: np.ndarray, ref_mask: np.ndarray) -> float:
    """``mean_lesion - mean_ref`` (the image's units); NaN if a mask is empty."""
    return _mean_in(image, lesion_mask) - _mean_in(image, ref_mask)


def contrast_recovery(pred: np.ndarray, target: np.ndarray, lesions: np.ndarray,
                      reference: Mapping[str, np.ndarray], offset: float = 1.0) -> dict[str, float]:
    """Per lesion class: ``contrast(pred) / contrast(target)`` (see the module docstring).

    Args:
        pred, target: normalized volumes (same shape, same normalization convention).
        lesions: lesion codes.
        reference: ``{lesion_class_name: reference mask}``, e.g. from :func:`reference_masks`.

    Returns:
        ``{lesion_class_name: recovery}`` for classes present in both ``lesions`` and ``reference``; NaN where the
        real STIR shows no contrast worth recovering (|contrast| < ``MIN_TARGET_CONTRAST``): a ratio over a
        near-zero denominator (e.g. a hemangioma, iso-intense on STIR) says nothing and would dominate means.
    """
    lesions = np.asarray(lesions)
    out: dict[str, float] = {}
    for name, ref in reference.items():
        lm = lesions == LESION_CODES[name]
        if not lm.any():
            continue
        c_pred = tissue_contrast(pred, lm, ref, offset)
        c_true = tissue_contrast(target, lm, ref, offset)
        out[name] = c_pred / c_true if np.isfinite(c_true) and abs(c_true) >= MIN_TARGET_CONTRAST else float("nan")
    return out


def lesion_metrics(pred: np.ndarray, target: np.ndarray, labels: np.ndarray, lesions: np.ndarray,
                   slice_axis: int | None = None, offset: float = 1.0) -> dict[str, dict[str, float]]:
    """All lesion-level numbers per lesion class present: contrast in pred and target, recovery, CNR of both,
    the lesion-to-reference intensity step of both with its recovery (NaN where the target's step is below
    :data:`MIN_TARGET_STEP`), and the reference bias: mean reference tissue in pred minus in target (the images'
    units; > 0: the normal tissue the lesion is read against is rendered too bright, which flattens the contrast
    of a lesion against a dark reference however well its own intensity is kept).

    Returns ``{class: {"contrast_pred", "contrast_target", "recovery", "cnr_pred", "cnr_target", "step_pred",
    "step_target", "step_recovery", "reference_bias", "voxels"}}``.
    """
    refs = reference_masks(labels, lesions, slice_axis)
    recovery = contrast_recovery(pred, target, lesions, refs, offset)
    out: dict[str, dict[str, float]] = {}
    for name, ref in refs.items():
        lm = np.asarray(lesions) == LESION_CODES[name]
        step_pred, step_target = intensity_step(pred, lm, ref), intensity_step(target, lm, ref)
        out[name] = {
            "contrast_pred": tissue_contrast(pred, lm, ref, offset),
            "contrast_target": tissue_contrast(target, lm, ref, offset),
            "recovery": recovery.get(name, float("nan")),
            "cnr_pred": lesion_cnr(pred, lm, ref),
            "cnr_target": lesion_cnr(target, lm, ref),
            "step_pred": step_pred,
            "step_target": step_target,
            "step_recovery": (step_pred / step_target if np.isfinite(step_target) and abs(step_target) >= MIN_TARGET_STEP
                              else float("nan")),
            "reference_bias": _mean_in(pred, ref) - _mean_in(target, ref),
            "voxels": int(lm.sum()),
        }
    return out


# ------------------------------------------------------------------------------------------ registry
#: The image metrics every evaluation reports, and whether higher is better. MAE, PSNR and SSIM are computed
#: together by :func:`volume_metrics`, LPIPS by :func:`lpips_distance`; further metrics register below.
BUILTIN_METRICS: dict[str, bool] = {"mae": False, "psnr": True, "ssim": True, "lpips": False}


@dataclass(frozen=True)
class VolumeMetric:
    """A registered per-volume image metric: ``fn(pred, target, mask, data_range=...) -> float`` on ``(S, H, W)``
    canonical slices in model units (mask bool), and its direction."""

    name: str
    fn: Callable[..., float]
    higher_is_better: bool


_METRICS: dict[str, VolumeMetric] = {}


def register_metric(name: str, higher_is_better: bool) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: add a per-volume metric to every evaluation (a ``metrics.csv`` column, a summary row with CI).

    >>> @register_metric("mae_x2", higher_is_better=False)
    ... def mae_x2(pred, target, mask, data_range):
    ...     return 2 * float(np.abs(pred - target)[mask].mean())
    >>> unregister_metric("mae_x2")
    """

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        if name in BUILTIN_METRICS or name.startswith(LESION_COLUMN_PREFIXES):
            raise ValueError(f"metric name {name!r} is taken by a built-in metric")
        if name in _METRICS and _METRICS[name].fn is not fn:
            raise ValueError(f"metric {name!r} is already registered")
        _METRICS[name] = VolumeMetric(name, fn, bool(higher_is_better))
        return fn

    return decorator


def unregister_metric(name: str) -> None:
    _METRICS.pop(name, None)


def registered_metrics() -> list[VolumeMetric]:
    """The metrics registered beyond the built-in ones, in registration order."""
    return list(_METRICS.values())


def image_metric_names() -> tuple[str, ...]:
    """Every image metric an evaluation reports (built-in first)."""
    return (*BUILTIN_METRICS, *_METRICS)


def higher_is_better(name: str) -> bool | None:
    """Direction of image metric ``name`` (None for an unknown name)."""
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    return _METRICS[name].higher_is_better if name in _METRICS else None


__all__ = [
    "BUILTIN_METRICS", "VolumeMetric", "higher_is_better", "image_metric_names", "register_metric",
    "registered_metrics", "unregister_metric",
    "LESION_CODES", "LPIPSResult", "MODEL_DATA_RANGE", "REFERENCE_TISSUES", "TISSUE_CODES", "body_mask_from_labels",
    "contrast_recovery", "lesion_cnr", "lesion_metrics", "lpips_distance", "mae", "mse", "normalize_pair", "psnr",
    "reference_masks", "ssim", "ssim_map", "tissue_contrast", "volume_metrics", "weighted_volume_mean",
]
