"""CycleGAN (Zhu et al. 2017): unpaired T2w (domain A) <-> STIR (domain B) translation.

Generator objective (LSGAN by default, ``lambda_cycle`` = 10, ``lambda_identity`` = 0.5)::

    GAN(D_B(G_AB(A)) -> real) + GAN(D_A(G_BA(B)) -> real)
    + lambda_cycle * (L1(G_BA(G_AB(A)), A) + L1(G_AB(G_BA(B)), B))
    + lambda_cycle * lambda_identity * (L1(G_AB(B), B) + L1(G_BA(A), A))

The identity term (scaled by ``lambda_cycle`` as in the original code) feeds a B image to G_AB and an
A image to G_BA, which only fits when both domains have the same channel count. With 2.5D or multi-input
A (C_in > 1) it is skipped (``self.use_identity`` is False) rather than faked by slicing channels.
Discriminators see fakes through an :class:`ImagePool` each; the pools' contents and RNG are part of this
module's ``state_dict`` (``_extra_state``) so a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import GANLoss, l1_loss
from .base import GANModel
from .image_pool import ImagePool
from .kinds import network, register_gan


def _channels(net: nn.Module, key: str) -> int | None:
    config = getattr(net, "config", None)
    return config.get(key) if isinstance(config, dict) else None


@register_gan("cyclegan", default_gan_mode="lsgan")
class CycleGAN(GANModel):
    """Two generators (``G_AB``: ``(B, C_in, H, W) -> (B, 1, H, W)``, ``G_BA``: the reverse) and two
    discriminators (``D_A`` on C_in-channel images, ``D_B`` on 1-channel images).

    Args:
        G_AB, G_BA, D_A, D_B: the networks (registry networks, so their channel counts are known).
        gan_mode: ``"lsgan"`` (CycleGAN), ``"vanilla"`` or ``"hinge"``.
        lambda_cycle: weight of each cycle-consistency L1 term.
        lambda_identity: identity weight relative to ``lambda_cycle`` (0 disables).
        pool_size: images per discriminator history pool (0 disables).
        pool_seed: seed of the pools' choices (pool B uses ``pool_seed + 1``).

    ``terms``: unweighted ``G_gan_AB, G_gan_BA, G_cycle_A, G_cycle_B[, G_idt_A, G_idt_B]`` and
    ``D_A_real, D_A_fake, D_B_real, D_B_fake``; ``fakes``: ``{"fake_B": G_AB(A), "fake_A": G_BA(B)}``.
    """

    def __init__(
        self,
        G_AB: nn.Module,
        G_BA: nn.Module,
        D_A: nn.Module,
        D_B: nn.Module,
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        pool_seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("lambda_cycle", lambda_cycle), ("lambda_identity", lambda_identity),
                           ("pool_size", pool_size)):
            if value < 0:
                raise ConfigError(f"loss.cyclegan.{key}: must be >= 0, got {value}")
        self.G_AB, self.G_BA, self.D_A, self.D_B = G_AB, G_BA, D_A, D_B
        self.criterion_gan = GANLoss(gan_mode)
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
        # identity needs G_AB: 1 -> 1 and G_BA: 1 -> 1 channel shapes, i.e. C_in == 1 (unknown: assume not)
        same = _channels(G_AB, "in_channels") == _channels(G_AB, "out_channels") == 1 == _channels(G_BA, "in_channels")
        self.use_identity = lambda_identity > 0 and same
        self.pool_A = ImagePool(pool_size, seed=pool_seed)
        self.pool_B = ImagePool(pool_size, seed=pool_seed + 1)

    @classmethod
    def from_config(cls, model_cfg, loss_cfg, in_channels: int, gan_mode: str) -> CycleGAN:
        """Two generators of ``model.generator`` (``C_in -> 1`` and back), two discriminators; weights from
        ``loss.cyclegan`` (lambda_cycle / lambda_identity / pool_size). pix2pix's lesion, lesion-reference, log-L1, gradient,
        tissue-balanced and lesion-crop adversarial terms are refused: they need a pixel's paired target, which
        CycleGAN never sees."""
        for key in ("lambda_lesion", "lambda_reference", "lambda_log_l1", "lambda_tissue", "lambda_gradient",
                    "lambda_lesion_gan"):
            if getattr(loss_cfg.pix2pix, key) > 0:
                raise ConfigError(f"loss.pix2pix.{key}: needs paired data (pix2pix); CycleGAN never sees a "
                                  f"pixel's target")
        w = loss_cfg.cyclegan
        g_name, g_kw = model_cfg.generator, dict(model_cfg.generator_kwargs or {})
        d_name, d_kw = model_cfg.discriminator, dict(model_cfg.discriminator_kwargs or {})
        return cls(
            network(g_name, g_kw, "generator", in_channels=in_channels, out_channels=1),
            network(g_name, g_kw, "generator", in_channels=1, out_channels=in_channels),
            network(d_name, d_kw, "discriminator", in_channels=in_channels),
            network(d_name, d_kw, "discriminator", in_channels=1),
            gan_mode=gan_mode, lambda_cycle=w.lambda_cycle, lambda_identity=w.lambda_identity,
            pool_size=w.pool_size,
        )

    def generator_modules(self) -> list[str]:
        return ["G_AB", "G_BA"]

    def discriminator_modules(self) -> list[str]:
        return ["D_A", "D_B"]

    def seed_pools(self, seed: int) -> None:
        """Reseed both pools (e.g. ``seed + rank`` under DDP) without changing their contents."""
        self.pool_A.seed(seed)
        self.pool_B.seed(seed + 1)

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.G_AB(real_a)
        fake_a = self.G_BA(real_b)
        terms = {
            "G_gan_AB": self.criterion_gan(self.D_B(fake_b), True, for_discriminator=False),
            "G_gan_BA": self.criterion_gan(self.D_A(fake_a), True, for_discriminator=False),
            "G_cycle_A": l1_loss(self.G_BA(fake_b), real_a),
            "G_cycle_B": l1_loss(self.G_AB(fake_a), real_b),
        }
        loss = terms["G_gan_AB"] + terms["G_gan_BA"] + self.lambda_cycle * (terms["G_cycle_A"] + terms["G_cycle_B"])
        if self.use_identity:
            terms["G_idt_A"] = l1_loss(self.G_BA(real_a), real_a)
            terms["G_idt_B"] = l1_loss(self.G_AB(real_b), real_b)
            loss = loss + self.lambda_cycle * self.lambda_identity * (terms["G_idt_A"] + terms["G_idt_B"])
        return loss, {k: v.detach() for k, v in terms.items()}, {"fake_B": fake_b, "fake_A": fake_a}

    def discriminator_loss(self, batch: dict[str, Tensor], fakes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        terms = {}
        for domain, disc, real, fake, pool in (
            ("A", self.D_A, batch["A"], fakes["fake_A"], self.pool_A),
            ("B", self.D_B, batch["B"], fakes["fake_B"], self.pool_B),
        ):
            terms[f"D_{domain}_real"] = self.criterion_gan(disc(real), True)
            terms[f"D_{domain}_fake"] = self.criterion_gan(disc(pool.query(fake.detach())), False)
        loss = 0.5 * (terms["D_A_real"] + terms["D_A_fake"]) + 0.5 * (terms["D_B_real"] + terms["D_B_fake"])
        return loss, {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def translate(self, a: Tensor) -> Tensor:
        return self.G_AB(a)

    # the pools travel inside state_dict() so checkpoints resume exactly
    def get_extra_state(self) -> dict[str, Any]:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_A.load_state_dict(state["pool_A"])
        self.pool_B.load_state_dict(state["pool_B"])
