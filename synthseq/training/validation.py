"""Validation on held-out subjects: whole slices (no augmentation, no crop), metrics inside the body mask.

Slices are padded (replicating the border) to the generator's size multiple, translated, and cropped back, so
every pixel of the original slice is scored. MAE, PSNR and SSIM come from :mod:`synthseq.metrics` with
``data_range=2.0`` (the width of model space [-1, 1]) inside the body mask of the input; each slice counts once and
the reported value is the mean over all validation slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_multiple_of(model: nn.Module) -> int:
    """Spatial size the generators need their input to be divisible by (``net.size_multiple``)."""
    return max(int(getattr(getattr(model, n), "size_multiple", 1)) for n in model.generator_modules())


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` at the bottom / right (replicating the border) to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


@torch.no_grad()
def predict(model: nn.Module, a: Tensor, device: torch.device, autocast: Callable, multiple: int) -> Tensor:
    """``translate`` in eval mode on whole slices: ``(B, C_in, H, W)`` -> ``(B, 1, H, W)`` float32 on the CPU."""
    was_training = model.training
    model.eval()
    try:
        x, (h, w) = pad_to_multiple(a.to(device, non_blocking=True).float(), multiple)
        with autocast():
            y = model.translate(x)
        return y[..., :h, :w].float().clamp(-1.0, 1.0).cpu()
    finally:
        model.train(was_training)


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[dict[str, Tensor]], device: torch.device, autocast: Callable,
             multiple: int) -> dict[str, float]:
    """Mean masked ``mae``, ``psnr`` (dB) and ``ssim`` over all slices of ``batches`` (dicts with A, B, mask)."""
    from .. import metrics

    values: dict[str, list[Tensor]] = {"mae": [], "psnr": [], "ssim": []}
    for batch in batches:
        pred = predict(model, batch["A"], device, autocast, multiple)
        target, mask = batch["B"].float().cpu(), batch["mask"].float().cpu()
        values["mae"].append(metrics.mae(pred, target, mask=mask))
        values["psnr"].append(metrics.psnr(pred, target, data_range=2.0, mask=mask))
        values["ssim"].append(metrics.ssim(pred, target, data_range=2.0, mask=mask))
    out = {}
    for name, parts in values.items():
        v = torch.cat(parts).double() if parts else torch.zeros(0, dtype=torch.float64)
        v = v[torch.isfinite(v)]  # slices with an empty body mask give NaN; PSNR of a perfect slice is inf
        out[name] = float(v.mean()) if v.numel() else float("nan")
    return out
