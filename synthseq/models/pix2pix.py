"""pix2pix (Isola et al. 2017): paired T2w -> STIR translation with a conditional PatchGAN.

Generator objective: ``GAN(D(A, G(A)) -> real) + lambda_l1 * L1(G(A), B) + lambda_log_l1 * L1_log``
``+ lambda_lesion * L1_lesion + lambda_reference * L1_reference + lambda_tissue * L1_tissue``
``+ lambda_ssim * (1 - SSIM) + lambda_gradient * L1_gradient + lambda_perceptual * LPIPS + lambda_lesion_gan * GAN(D_lesion(crop(A, G(A))) -> real)``
(all but the first two optional, off by default). ``L1_log`` is the L1 of log intensities
(:func:`synthseq.losses.log_l1_loss`): relative error, so the dark tissue STIR's contrasts are measured against is
not rendered a little too bright for the sake of the bright tissue. ``L1_lesion`` is the L1 averaged over lesion
pixels only (``batch["lesion"]``): lesions are a fraction of a percent of the pixels, so the plain L1 barely sees
them, and lesion contrast is what downstream readers and models need from pseudo-STIR. ``L1_reference`` is the L1
averaged over the normal tissue each lesion's contrast is measured against (``batch["reference"]``; e.g. the
interspinous ligaments for a PLC injury, :data:`synthseq.codes.REFERENCE_TISSUES`): contrast has two ends, and a
thin dark reference rendered too bright flattens it as much as a faint lesion. Both maps are training-time
annotations; inference needs none. ``D_lesion`` is a second conditional discriminator (same architecture as ``D``)
that sees only square crops centred on a random lesion pixel of each slice that has one (:func:`lesion_boxes`): the
full-image PatchGAN spends almost none of its patches on lesions, so it can leave a lesion and the dark tissue
around it blurred or flattened without being caught.
Discriminator objective: ``0.5 * (GAN(D(A, B) -> real) + GAN(D(A, G(A)) -> fake))``, plus the same on the lesion
crops for ``D_lesion``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import GANLoss, PerceptualLoss, gradient_l1_loss, l1_loss, log_l1_loss, ssim_loss
from .base import GANModel
from .kinds import network, register_gan


def lesion_boxes(lesion: Tensor, size: int) -> Tensor:
    """One ``size`` x ``size`` crop per slice with a lesion, centred on one of its lesion pixels drawn at random
    (torch's global RNG) and shifted inwards where it would leave the image.

    Args:
        lesion: ``(B, 1, H, W)`` lesion map (> 0 = lesion), ``H, W >= size``.
        size: crop side in pixels.

    Returns:
        ``(N, 3)`` int64 rows ``(batch index, top, left)``, one per slice with a lesion pixel (``N`` may be 0).
    """
    b, _, h, w = lesion.shape
    if size > h or size > w:
        raise ValueError(f"lesion crop of {size} px does not fit a {h}x{w} slice")
    flat = (lesion.reshape(b, -1) > 0).float()
    rows = torch.nonzero(flat.sum(1) > 0).flatten()
    if rows.numel() == 0:
        return torch.zeros((0, 3), dtype=torch.long, device=lesion.device)
    pick = torch.multinomial(flat[rows], 1).flatten()
    top = (pick // w - size // 2).clamp(0, h - size)
    left = (pick % w - size // 2).clamp(0, w - size)
    return torch.stack([rows, top, left], 1)


def take_crops(x: Tensor, boxes: Tensor, size: int) -> Tensor:
    """The crops ``boxes`` (from :func:`lesion_boxes`) of ``x`` ``(B, C, H, W)``: ``(N, C, size, size)``."""
    offs = torch.arange(size, device=x.device)
    iy = (boxes[:, 1, None] + offs)[:, :, None]  # (N, size, 1)
    ix = (boxes[:, 2, None] + offs)[:, None, :]  # (N, 1, size)
    return x[boxes[:, 0, None, None], :, iy, ix].permute(0, 3, 1, 2)  # advanced indexing puts C last


@register_gan("pix2pix", default_gan_mode="vanilla")
class Pix2Pix(GANModel):
    """Paired conditional GAN.

    Args:
        generator: ``(B, C_in, H, W) -> (B, 1, H, W)`` network, stored as ``self.G``.
        discriminator: network on ``concat(A, B)`` ``(B, C_in + 1, H, W)`` returning logits (or a list of
            logit maps), stored as ``self.D``.
        gan_mode: ``"vanilla"`` (pix2pix), ``"lsgan"`` or ``"hinge"``.
        lambda_l1: weight of the L1 term (100 in pix2pix).
        lambda_log_l1: weight of the L1 of log intensities (:func:`synthseq.losses.log_l1_loss`).
        lambda_lesion: weight of the L1 over lesion pixels (batches then need ``"lesion"`` ``(B, 1, H, W)`` {0, 1};
            a batch without lesion pixels adds 0).
        lambda_reference: weight of the L1 over lesion reference tissue (batches then need ``"reference"``
            ``(B, 1, H, W)`` {0, 1}; an empty map adds 0).
        lambda_tissue: weight of the tissue-balanced L1 (batches then need ``"tissue_weight"`` ``(B, 1, H, W)``
            >= 0, :func:`synthseq.codes.tissue_balance_weights`): the per-pixel error averaged with those weights.
        lambda_ssim: weight of ``1 - SSIM`` (data_range 2).
        lambda_gradient: weight of the L1 of gradient differences (:func:`synthseq.losses.gradient_l1_loss`).
        lambda_perceptual: weight of LPIPS (backbone weights from the torch cache; loaded on first use).
        perceptual_net: LPIPS backbone (``"alex" | "vgg" | "squeeze"``).
        lesion_discriminator: network on lesion crops ``(N, C_in + 1, lesion_crop, lesion_crop)``, stored as
            ``self.D_lesion``; required when ``lambda_lesion_gan > 0`` (batches then need ``"lesion"``).
        lambda_lesion_gan: weight of its adversarial term in the generator objective.
        lesion_crop: side of the lesion crops in pixels.

    The returned ``terms`` are the unweighted values ``G_gan, G_l1[, G_l1_log, G_l1_lesion, G_l1_reference,
    G_l1_tissue, G_ssim, G_gradient, G_perceptual, G_gan_lesion]`` and ``D_real, D_fake[, D_lesion_real, D_lesion_fake]``;
    ``fakes`` is ``{"fake_B": G(A)}`` plus, with the lesion discriminator, ``"lesion_boxes"`` (the crops its step reuses).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        gan_mode: str = "vanilla",
        lambda_l1: float = 100.0,
        lambda_log_l1: float = 0.0,
        lambda_lesion: float = 0.0,
        lambda_reference: float = 0.0,
        lambda_tissue: float = 0.0,
        lambda_ssim: float = 0.0,
        lambda_gradient: float = 0.0,
        lambda_perceptual: float = 0.0,
        perceptual_net: str = "alex",
        lesion_discriminator: nn.Module | None = None,
        lambda_lesion_gan: float = 0.0,
        lesion_crop: int = 32,
    ) -> None:
        super().__init__()
        for key, value in (("lambda_l1", lambda_l1), ("lambda_log_l1", lambda_log_l1),
                           ("lambda_lesion", lambda_lesion), ("lambda_reference", lambda_reference),
                           ("lambda_tissue", lambda_tissue),
                           ("lambda_ssim", lambda_ssim), ("lambda_gradient", lambda_gradient),
                           ("lambda_perceptual", lambda_perceptual),
                           ("lambda_lesion_gan", lambda_lesion_gan)):
            if value < 0:
                raise ConfigError(f"loss.pix2pix.{key}: must be >= 0, got {value}")
        if lambda_lesion_gan > 0 and lesion_discriminator is None:
            raise ConfigError("loss.pix2pix.lambda_lesion_gan > 0 needs a lesion discriminator")
        self.G = generator
        self.D = discriminator
        self.criterion_gan = GANLoss(gan_mode)
        self.lambda_l1 = lambda_l1
        self.lambda_log_l1 = lambda_log_l1
        self.lambda_lesion = lambda_lesion
        self.lambda_reference = lambda_reference
        self.lambda_tissue = lambda_tissue
        self.lambda_ssim = lambda_ssim
        self.lambda_gradient = lambda_gradient
        self.lambda_perceptual = lambda_perceptual
        self.perceptual = PerceptualLoss(perceptual_net) if lambda_perceptual > 0 else None
        self.lambda_lesion_gan = lambda_lesion_gan
        self.lesion_crop = lesion_crop
        if lambda_lesion_gan > 0:
            self.D_lesion = lesion_discriminator

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, in_channels: int, gan_mode: str) -> Pix2Pix:
        """G: ``C_in -> 1``; D on ``C_in + 1`` channels; weights from ``loss.pix2pix`` (lambda_l1 / lambda_log_l1 /
        lambda_lesion / lambda_reference / lambda_tissue / lambda_ssim / lambda_perceptual); with ``lambda_lesion_gan > 0`` a
        second ``model.discriminator`` (same kwargs) for the ``lesion_crop`` crops."""
        w = loss_cfg.pix2pix
        d_lesion = None
        if w.lambda_lesion_gan > 0:
            d_lesion = network(model_cfg.discriminator, dict(model_cfg.discriminator_kwargs or {}), "discriminator",
                               in_channels=in_channels + 1)
            try:  # a crop too small for the discriminator's depth fails here, not at the first step
                with torch.no_grad():
                    d_lesion.eval()(torch.zeros(1, in_channels + 1, w.lesion_crop, w.lesion_crop))
            except RuntimeError as exc:
                raise ConfigError(f"loss.pix2pix.lesion_crop: {w.lesion_crop} px is too small for "
                                  f"model.discriminator ({model_cfg.discriminator}); use larger crops or fewer "
                                  f"discriminator layers") from exc
            d_lesion.train()
        return cls(
            network(model_cfg.generator, dict(model_cfg.generator_kwargs or {}), "generator",
                    in_channels=in_channels, out_channels=1),
            network(model_cfg.discriminator, dict(model_cfg.discriminator_kwargs or {}), "discriminator",
                    in_channels=in_channels + 1),
            gan_mode=gan_mode, lambda_l1=w.lambda_l1, lambda_log_l1=w.lambda_log_l1, lambda_lesion=w.lambda_lesion,
            lambda_reference=w.lambda_reference, lambda_tissue=w.lambda_tissue, lambda_ssim=w.lambda_ssim,
            lambda_gradient=w.lambda_gradient, lambda_perceptual=w.lambda_perceptual,
            lesion_discriminator=d_lesion, lambda_lesion_gan=w.lambda_lesion_gan, lesion_crop=w.lesion_crop,
        )

    def generator_modules(self) -> list[str]:
        return ["G"]

    def discriminator_modules(self) -> list[str]:
        return ["D", "D_lesion"] if self.lambda_lesion_gan > 0 else ["D"]

    def _lesion_pairs(self, pairs: Tensor, boxes: Tensor) -> tuple[Tensor, bool]:
        """The ``concat(A, image)`` batch ``pairs`` (what ``D`` judges) cropped to ``boxes`` for ``D_lesion``, and
        whether any crop is real. A batch without lesions gets one crop of the first slice, weighted 0 by the caller,
        so that ``D_lesion`` takes part in every step (DDP needs every parameter in every backward)."""
        if boxes.numel():
            return take_crops(pairs, boxes, self.lesion_crop), True
        return pairs[:1, :, :self.lesion_crop, :self.lesion_crop], False

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.G(real_a)
        fake_pairs = torch.cat([real_a, fake_b], 1)
        g_gan = self.criterion_gan(self.D(fake_pairs), True, for_discriminator=False)
        g_l1 = l1_loss(fake_b, real_b)
        loss = g_gan + self.lambda_l1 * g_l1
        terms = {"G_gan": g_gan, "G_l1": g_l1}
        if self.lambda_log_l1 > 0:
            terms["G_l1_log"] = log_l1_loss(fake_b, real_b)
            loss = loss + self.lambda_log_l1 * terms["G_l1_log"]
        # L1 terms restricted to / weighted by a batch map: (batch key, weight, term, the map, what provides it)
        for key, weight, term, what, config in (
                ("lesion", self.lambda_lesion, "lesion", "lesion map", "data.lesion_key"),
                ("reference", self.lambda_reference, "reference", "lesion reference map",
                 "data.lesion_key and data.label_key"),
                ("tissue_weight", self.lambda_tissue, "tissue", "tissue weight map", "data.label_key")):
            if weight > 0:
                if key not in batch:
                    raise ConfigError(f"loss.pix2pix.lambda_{term} > 0 but the batch has no {what}: set {config}")
                terms[f"G_l1_{term}"] = l1_loss(fake_b, real_b, batch[key])
                loss = loss + weight * terms[f"G_l1_{term}"]
        if self.lambda_ssim > 0:
            terms["G_ssim"] = ssim_loss(fake_b, real_b)
            loss = loss + self.lambda_ssim * terms["G_ssim"]
        if self.lambda_gradient > 0:
            terms["G_gradient"] = gradient_l1_loss(fake_b, real_b)
            loss = loss + self.lambda_gradient * terms["G_gradient"]
        if self.perceptual is not None:
            terms["G_perceptual"] = self.perceptual(fake_b, real_b)
            loss = loss + self.lambda_perceptual * terms["G_perceptual"]
        fakes = {"fake_B": fake_b}
        if self.lambda_lesion_gan > 0:
            if "lesion" not in batch:
                raise ConfigError("loss.pix2pix.lambda_lesion_gan > 0 but the batch has no lesion map: set "
                                  "data.lesion_key")
            fakes["lesion_boxes"] = boxes = lesion_boxes(batch["lesion"], self.lesion_crop)
            crops, any_lesion = self._lesion_pairs(fake_pairs, boxes)
            terms["G_gan_lesion"] = self.criterion_gan(self.D_lesion(crops), True, for_discriminator=False) \
                * float(any_lesion)
            loss = loss + self.lambda_lesion_gan * terms["G_gan_lesion"]
        return loss, {k: v.detach() for k, v in terms.items()}, fakes

    def discriminator_loss(self, batch: dict[str, Tensor], fakes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = fakes["fake_B"].detach()
        fake_pairs, real_pairs = torch.cat([real_a, fake_b], 1), torch.cat([real_a, real_b], 1)
        d_fake = self.criterion_gan(self.D(fake_pairs), False)
        d_real = self.criterion_gan(self.D(real_pairs), True)
        loss = 0.5 * (d_real + d_fake)
        terms = {"D_real": d_real.detach(), "D_fake": d_fake.detach()}
        if self.lambda_lesion_gan > 0:
            boxes = fakes["lesion_boxes"]
            fake_c, any_lesion = self._lesion_pairs(fake_pairs, boxes)
            real_c, _ = self._lesion_pairs(real_pairs, boxes)
            w = float(any_lesion)
            terms["D_lesion_fake"] = self.criterion_gan(self.D_lesion(fake_c), False) * w
            terms["D_lesion_real"] = self.criterion_gan(self.D_lesion(real_c), True) * w
            loss = loss + 0.5 * (terms["D_lesion_real"] + terms["D_lesion_fake"])
            terms = {k: v.detach() for k, v in terms.items()}
        return loss, terms

    @torch.no_grad()
    def translate(self, a: Tensor) -> Tensor:
        return self.G(a)
