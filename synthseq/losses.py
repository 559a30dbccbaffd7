"""Training losses: adversarial (vanilla / LSGAN / hinge), L1, SSIM and LPIPS perceptual.

Images are in the model space [-1, 1]; SSIM therefore uses ``data_range=2.0``. Discriminator outputs are
raw logits, either one map ``(B, 1, H', W')`` or a list of maps (multi-scale discriminators).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, SynthseqError

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss(nn.Module):
    """Adversarial loss against real/fake targets, for one prediction map or a list of them.

    Modes (``p`` = discriminator logits, means over every element):

    - ``"vanilla"``: binary cross-entropy with logits against 1 (real) / 0 (fake) (pix2pix).
    - ``"lsgan"``: mean squared error against 1 / 0 (CycleGAN).
    - ``"hinge"``: discriminator ``mean(relu(1 - p))`` for real and ``mean(relu(1 + p))`` for fake;
      generator ``-mean(p)`` (call with ``target_is_real=True, for_discriminator=False``).

    The targets are buffers (not saved in state dicts), expanded to each prediction's shape and dtype, so
    they follow ``.to(device)``. For a list of predictions the loss is the mean over the list (so loss
    weights mean the same with one or several scales).

    >>> crit = GANLoss("lsgan")
    >>> crit(torch.ones(2, 1, 6, 6), target_is_real=True)
    tensor(0.)
    """

    def __init__(self, mode: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ConfigError(f"loss.gan_mode: unknown {mode!r} (expected one of {', '.join(GAN_MODES)})")
        self.mode = mode
        self.register_buffer("real_label", torch.tensor(float(real_label)), persistent=False)
        self.register_buffer("fake_label", torch.tensor(float(fake_label)), persistent=False)

    def target_tensor(self, pred: Tensor, target_is_real: bool) -> Tensor:
        """The real or fake label expanded to ``pred``'s shape (no copy)."""
        label = self.real_label if target_is_real else self.fake_label
        return label.to(pred.dtype).expand_as(pred)

    def _single(self, pred: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, self.target_tensor(pred, target_is_real))
        if self.mode == "lsgan":
            return F.mse_loss(pred, self.target_tensor(pred, target_is_real))
        if not for_discriminator:
            if not target_is_real:
                raise ValueError("hinge generator loss is defined for target_is_real=True only")
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()

    def forward(self, pred: Tensor | list[Tensor], target_is_real: bool, for_discriminator: bool = True) -> Tensor:
        """Scalar loss of ``pred`` (a logit map or a list of maps) against the real/fake target.

        ``for_discriminator`` only matters for hinge; the generator step passes ``False`` with
        ``target_is_real=True``.
        """
        if isinstance(pred, list | tuple):
            losses = [self._single(p, target_is_real, for_discriminator) for p in pred]
            return torch.stack(losses).mean()
        return self._single(pred, target_is_real, for_discriminator)


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error, optionally only where ``mask`` is 1.

    Args:
        pred, target: ``(B, C, H, W)``.
        mask: ``(B, 1 or C, H, W)`` weights in {0, 1} (broadcast over channels) or None.

    Returns:
        Scalar: ``sum(|pred - target| * mask) / sum(mask)`` over all elements (0 for an empty mask).
    """
    diff = (pred - target).abs()
    if mask is None:
        return diff.mean()
    mask = mask.to(diff.dtype).expand_as(diff)
    return (diff * mask).sum() / mask.sum().clamp_min(1.0)


def ssim_loss(pred: Tensor, target: Tensor, data_range: float = 2.0, window_size: int = 11) -> Tensor:
    """``1 - mean SSIM`` (Gaussian window, kornia), in [0, 2]; 0 for identical images.

    Args:
        pred, target: ``(B, C, H, W)`` in [-1, 1]; computed in float32.
        data_range: dynamic range of the images (2.0 for [-1, 1]), sets SSIM's stabilising constants.
        window_size: odd Gaussian window size (sigma 1.5); ``"valid"`` windows only, so H, W >= window_size.
    """
    import kornia

    ssim_map = kornia.metrics.ssim(pred.float(), target.float(), window_size, max_val=data_range, padding="valid")
    return 1.0 - ssim_map.mean()


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`."""

    def __init__(self, data_range: float = 2.0, window_size: int = 11) -> None:
        super().__init__()
        self.data_range = data_range
        self.window_size = window_size

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim_loss(pred, target, self.data_range, self.window_size)


# ----------------------------------------------------------------------------------------------- LPIPS

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


class PerceptualLoss(nn.Module):
    """LPIPS distance between single-channel (or RGB) images in [-1, 1]; mean over the batch.

    The LPIPS network is loaded on first use (so building a model for inference never needs its weights)
    and is deliberately NOT a registered submodule: it stays frozen and in eval mode, is absent from state
    dicts, and follows the input's device lazily.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        lpips_weights_path(net)  # validates the name early
        self.net = net
        self._lpips: list[nn.Module] = []  # a list hides it from nn.Module registration

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``, ``target``: ``(B, 1 or 3, H, W)`` in [-1, 1] -> scalar mean LPIPS."""
        if not self._lpips:
            self._lpips.append(load_lpips(self.net))
        model = self._lpips[0]
        param = next(model.parameters(), None)
        if param is not None and param.device != pred.device:
            model.to(pred.device)
        if pred.shape[1] == 1:  # LPIPS expects RGB: replicate the grey channel
            pred, target = pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        elif pred.shape[1] != 3:
            raise ValueError(f"PerceptualLoss expects 1 or 3 channels, got {pred.shape[1]}")
        return model(pred.float(), target.float()).mean()
