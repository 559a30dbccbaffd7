"""GAN models for T2w -> STIR synthesis: networks (by registry name), pix2pix, CycleGAN.

``build_gan(cfg.model, cfg.loss, in_channels)`` turns the typed config into a ready :class:`GANModel`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import GANModel
from .cyclegan import CycleGAN
from .image_pool import ImagePool
from .pix2pix import Pix2Pix
from .registry import create_model, list_models, register_model

__all__ = ["GANModel", "Pix2Pix", "CycleGAN", "ImagePool", "create_model", "list_models", "register_model",
           "build_gan"]

_KINDS = ("pix2pix", "cyclegan")


def _network(name: str, kwargs: dict[str, Any], key: str, **channels: int):
    for reserved in channels:
        if reserved in kwargs:
            raise ConfigError(f"model.{key}_kwargs.{reserved}: set from the data and model kind; remove it")
    try:
        return create_model(name, **channels, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"model.{key}: {exc}") from exc


def build_gan(model_cfg: Any, loss_cfg: Any, in_channels: int) -> GANModel:
    """Build the GAN described by ``model_cfg`` / ``loss_cfg`` (``synthseq.config.ModelConfig`` /
    ``LossConfig`` or any objects with the same attributes).

    Args:
        model_cfg: ``kind`` ("pix2pix" | "cyclegan"), ``generator`` / ``discriminator`` (registry names),
            ``generator_kwargs`` / ``discriminator_kwargs`` (dicts, without channel counts).
        loss_cfg: ``gan_mode`` ("auto" = vanilla for pix2pix, lsgan for cyclegan), ``lambda_l1``,
            ``lambda_lesion`` (pix2pix only), ``lambda_ssim``, ``lambda_perceptual``, ``lambda_cycle``,
            ``lambda_identity``, ``pool_size``.
        in_channels: C_in of batch "A" (context slices x input sequences); B has 1 channel.

    Raises:
        ConfigError: unknown kind, network name, argument or GAN mode (message names the config key).
    """
    kind = model_cfg.kind
    if kind not in _KINDS:
        raise ConfigError(f"model.kind: unknown {kind!r} (expected one of {', '.join(_KINDS)})")
    if in_channels < 1:
        raise ConfigError(f"input channels must be >= 1, got {in_channels}")
    gan_mode = loss_cfg.gan_mode
    if gan_mode == "auto":
        gan_mode = "vanilla" if kind == "pix2pix" else "lsgan"
    g_name, g_kw = model_cfg.generator, dict(model_cfg.generator_kwargs or {})
    d_name, d_kw = model_cfg.discriminator, dict(model_cfg.discriminator_kwargs or {})
    if kind == "pix2pix":
        return Pix2Pix(
            _network(g_name, g_kw, "generator", in_channels=in_channels, out_channels=1),
            _network(d_name, d_kw, "discriminator", in_channels=in_channels + 1),
            gan_mode=gan_mode,
            lambda_l1=loss_cfg.lambda_l1,
            lambda_lesion=loss_cfg.lambda_lesion,
            lambda_ssim=loss_cfg.lambda_ssim,
            lambda_perceptual=loss_cfg.lambda_perceptual,
        )
    if loss_cfg.lambda_lesion > 0:
        raise ConfigError("loss.lambda_lesion: needs paired data (pix2pix); CycleGAN never sees a pixel's target")
    return CycleGAN(
        _network(g_name, g_kw, "generator", in_channels=in_channels, out_channels=1),
        _network(g_name, g_kw, "generator", in_channels=1, out_channels=in_channels),
        _network(d_name, d_kw, "discriminator", in_channels=in_channels),
        _network(d_name, d_kw, "discriminator", in_channels=1),
        gan_mode=gan_mode,
        lambda_cycle=loss_cfg.lambda_cycle,
        lambda_identity=loss_cfg.lambda_identity,
        pool_size=loss_cfg.pool_size,
    )
