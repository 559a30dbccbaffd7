"""GAN models for T2w -> STIR synthesis: networks and GAN kinds, each by registry name.

Networks register with ``@register_model(name)`` (:mod:`.registry`), GAN kinds with ``@register_gan(name)``
(:mod:`.kinds`); ``build_gan(cfg.model, cfg.loss, in_channels)`` turns the typed config into a ready
:class:`GANModel`. Importing this package registers every built-in network and kind.
"""

from __future__ import annotations

from . import discriminators, generators  # noqa: F401  (register the built-in networks)
from .base import GANModel
from .cyclegan import CycleGAN
from .image_pool import ImagePool
from .kinds import build_gan, list_gans, register_gan
from .pix2pix import Pix2Pix
from .registry import create_model, list_models, register_model

__all__ = ["GANModel", "Pix2Pix", "CycleGAN", "ImagePool", "create_model", "list_models", "register_model",
           "build_gan", "list_gans", "register_gan"]
