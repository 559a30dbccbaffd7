"""LPIPS from local files only: the backbone's ImageNet weights from the standard torch cache, never downloaded.

Used by the perceptual training loss (:class:`synthseq.losses.PerceptualLoss`) and the LPIPS metric
(:func:`synthseq.metrics.lpips_distance`). Where the weights are absent, :func:`load_lpips` fails with one line
saying which file to put in which folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import ConfigError, SynthseqError

#: LPIPS backbone name -> torchvision weights enum (its URL's file name is the torch-cache file name)
_LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def lpips_weights_path(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet weights of LPIPS backbone ``net`` in the torch cache:
    ``torch.hub.get_dir()/checkpoints/<file>`` (e.g. ``alexnet-owt-7be5be79.pth``); honours ``TORCH_HOME``."""
    import torchvision.models as tvm

    if net not in _LPIPS_BACKBONES:
        raise ConfigError(f"lpips net: unknown {net!r} (expected one of {', '.join(_LPIPS_BACKBONES)})")
    url = getattr(tvm, _LPIPS_BACKBONES[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_lpips(net: str = "alex", device: torch.device | str | None = None) -> nn.Module:
    """Build ``lpips.LPIPS(net)`` from local files only; never downloads.

    The backbone's ImageNet weights come from the torch cache (:func:`lpips_weights_path`); the LPIPS linear
    layers ship with the ``lpips`` package. The returned module is in eval mode, frozen, and expects
    3-channel inputs in [-1, 1] (see :class:`PerceptualLoss` for single-channel images).

    Raises:
        SynthseqError: the cached weight file is missing or unreadable (one line: which file, which folder).
    """
    path = lpips_weights_path(net)
    if not path.is_file():
        import torchvision.models as tvm

        url = getattr(tvm, _LPIPS_BACKBONES[net]).IMAGENET1K_V1.url
        raise SynthseqError(
            f"LPIPS ({net}) needs the torchvision backbone weights: place {path.name} in {path.parent} "
            f"(it is {url}; nothing is downloaded at run time)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated file
        raise SynthseqError(f"{path}: cannot read the LPIPS backbone weights ({type(exc).__name__}: {exc})") from exc
    try:
        import lpips
    except ImportError as exc:
        raise SynthseqError("LPIPS needs the 'lpips' package (pip install lpips)") from exc

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # random trunk: no download

    # lpips splits torchvision's `features` Sequential into slices whose children keep their index names
    by_index = {int(name): child for block in model.net.children() for name, child in block.named_children()}
    features: dict[int, dict[str, Tensor]] = {}
    for key, value in state.items():
        if key.startswith("features."):
            index, rest = key[len("features."):].split(".", 1)
            features.setdefault(int(index), {})[rest] = value
    missing = sorted(i for i in by_index if any(True for _ in by_index[i].parameters()) and i not in features)
    if missing or not features:
        raise SynthseqError(f"{path}: not a torchvision {net} state dict (no weights for features {missing})")
    try:
        for index, sub_state in features.items():
            if index in by_index:
                by_index[index].load_state_dict(sub_state)
    except RuntimeError as exc:
        raise SynthseqError(f"{path}: does not match the torchvision {net} architecture") from exc

    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


__all__ = ["load_lpips", "lpips_weights_path"]
