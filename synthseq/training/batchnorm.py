"""Precise batch-norm statistics: re-estimate a generator's running means and variances on whole slices.

A generator trained on random crops (``data.image_size`` below the slice size) keeps running statistics that are
an exponential average over its last training batches, of crops. Synthesis runs it in eval mode on whole slices,
whose feature statistics differ (more air, other anatomy in the receptive field, a larger bottleneck map).
:func:`recalibrate_batchnorm` replaces them by a plain average over whole training slices, fed exactly as
synthesis and validation feed them (padded to the generator's size multiple), with everything else in eval mode
(dropout off): "precise BN" (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm"). Training is unaffected, since
it normalizes with batch statistics; only what the checkpoint's eval mode uses changes. The training loop calls it
before every validation and checkpoint when ``train.bn_recalibration_slices`` > 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .validation import pad_to_multiple


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[dict[str, Tensor]], device: torch.device,
                          autocast: Callable, multiple: int) -> int:
    """Re-estimate the running statistics of the batch-norm layers on ``model.translate``'s path.

    Args:
        model: a synthseq model (``translate``: ``(B, C_in, H, W)`` in [-1, 1] -> pseudo-STIR).
        batches: dicts with ``"A"``, whole input slices ``(B, C_in, H, W)`` in model units.
        multiple: the generator's size multiple (slices are padded to it, bottom / right, replicating the border).

    Returns:
        The number of slices seen (0: nothing changed: no batch-norm layer, or no batch). Layers that
        ``translate`` does not reach (a discriminator, CycleGAN's reverse generator) keep their statistics.
    """
    layers = batchnorm_layers(model)
    batches = list(batches)
    if not layers or not batches:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in layers]
    was_training = model.training
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, not an exponential one
        m.train()
    seen, done = 0, False
    try:
        for batch in batches:
            x, _ = pad_to_multiple(batch["A"].to(device, non_blocking=True).float(), multiple)
            with autocast():
                model.translate(x)
            seen += int(x.shape[0])
        done = True
    finally:
        for m, (mean, var, count, momentum) in zip(layers, saved):
            m.momentum = momentum
            if not done or int(m.num_batches_tracked) == 0:  # interrupted, or not on the translate path
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        model.train(was_training)
    return seen


__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]
