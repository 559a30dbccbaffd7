"""Training losses: adversarial (vanilla / LSGAN / hinge), L1, log-intensity L1, SSIM and LPIPS perceptual.

Images are in the model space [-1, 1]; SSIM therefore uses ``data_range=2.0``, and the SSIM loss is ``1 -`` the
very metric validation and evaluation report (:func:`synthseq.metrics.ssim`): one SSIM for one objective. Discriminator outputs are
raw logits, either one map ``(B, 1, H', W')`` or a list of maps (multi-scale discriminators).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .metrics import ssim
from .perceptual import load_lpips, lpips_weights_path

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
    """Mean absolute error, optionally only where ``mask`` is 1, or weighted by it.

    Args:
        pred, target: ``(B, C, H, W)``.
        mask: ``(B, 1 or C, H, W)`` weights >= 0 (broadcast over channels): a {0, 1} mask (lesion, reference
            tissue) or real weights (tissue-balance weights); or None.

    Returns:
        Scalar: ``sum(|pred - target| * mask) / sum(mask)`` over all elements (0 when every weight is 0).
    """
    diff = (pred - target).abs()
    if mask is None:
        return diff.mean()
    mask = mask.to(diff.dtype).expand_as(diff)
    total = mask.sum()
    return (diff * mask).sum() / torch.where(total > 0, total, torch.ones_like(total))


#: Floor of :func:`log_l1_loss`, as a fraction of the intensity range: it caps how much more a dark pixel's error
#: weighs than a bright one's (at most ``1 / LOG_L1_EPS`` = 20x at the bottom of the range, against a pixel at the top).
LOG_L1_EPS = 0.05


def log_l1_loss(pred: Tensor, target: Tensor, eps: float = LOG_L1_EPS) -> Tensor:
    """Mean ``|log(u_pred + eps) - log(u_target + eps)|`` with ``u = (x + 1) / 2`` in [0, 1]: an L1 of relative error.

    Plain L1 weighs an error of 0.05 alike on CSF and on a fat-suppressed ligament, but a lesion's contrast
    against a dark reference, ``(lesion - reference) / reference``, halves when that reference is rendered 0.05 too
    bright. This term weighs an error by ``1 / (u + eps)``: dark tissue, where STIR's contrasts are decided, counts
    up to 20x more than bright.

    Args:
        pred, target: ``(B, C, H, W)`` in [-1, 1] (values below -1 are clamped to it); computed in float32.
        eps: floor as a fraction of the range (> 0).

    Returns:
        Scalar >= 0, 0 for identical images.
    """
    if pred.dtype != torch.float64:
        pred, target = pred.float(), target.float()
    u_pred = ((pred + 1.0) * 0.5).clamp_min(0.0) + eps
    u_target = ((target + 1.0) * 0.5).clamp_min(0.0) + eps
    return (u_pred.log() - u_target.log()).abs().mean()


def gradient_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean ``|d pred - d target|`` over forward differences along H and W (the gradient-difference loss of
    Mathieu et al., 2016, with the L1 norm).

    A per-pixel L1 does not ask for sharp edges: a network that draws a thin dark structure (a ligament two or three
    pixels wide between brighter tissue) a pixel too wide on each side pays little, and the structure's mean comes
    out too bright. This term charges the edge itself. The target's noise enters its differences too, but an L1 is
    minimized by their median, which noise that is symmetric about the true edge leaves in place. Measured on the
    phantom's interspinous ligament it does not sharpen that border (README, "Fourteenth session"): it raises SSIM
    and costs confounder contrast, so no shipped config uses it.

    Args:
        pred, target: ``(B, C, H, W)`` with H, W >= 2; computed in float32.

    Returns:
        Scalar >= 0: the mean over both directions of the mean absolute difference; 0 for identical images
        and for images that differ by a constant.
    """
    if pred.dtype != torch.float64:
        pred, target = pred.float(), target.float()
    d = pred - target
    return 0.5 * ((d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., :, 1:] - d[..., :, :-1]).abs().mean())


def ssim_loss(pred: Tensor, target: Tensor, data_range: float = 2.0, window_size: int = 11) -> Tensor:
    """``1 - mean SSIM`` with exactly the SSIM validation and evaluation report (:func:`synthseq.metrics.ssim`:
    Gaussian window, sigma 1.5, reflect padding), in [0, 2]; 0 for identical images.

    Args:
        pred, target: ``(B, C, H, W)`` in [-1, 1]; computed in float32 (float64 stays float64).
        data_range: dynamic range of the images (2.0 for [-1, 1]), sets SSIM's stabilising constants.
        window_size: odd Gaussian window size.
    """
    if pred.dtype != torch.float64:
        pred, target = pred.float(), target.float()
    return 1.0 - ssim(pred, target, data_range=data_range, window=window_size).mean()


# ----------------------------------------------------------------------------------------------- LPIPS
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
