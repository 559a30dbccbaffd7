"""A name -> GAN-kind registry: ``@register_gan("pix2pix")`` on a :class:`~synthseq.models.base.GANModel` subclass.

A kind builds itself from the typed config with a ``from_config(model_cfg, loss_cfg, in_channels, gan_mode)``
classmethod (its networks by registry name, its own loss settings), so the training loop, checkpoints and
synthesis never name a kind: :func:`build_gan` dispatches on ``model.kind``.

>>> sorted(list_gans())[:2]
['cyclegan', 'pix2pix']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError
from .base import GANModel
from .registry import create_model

_KINDS: dict[str, type[GANModel]] = {}

K = TypeVar("K", bound=type[GANModel])


def register_gan(name: str, default_gan_mode: str = "vanilla") -> Callable[[K], K]:
    """Class decorator: register a GANModel subclass as GAN kind ``name`` (``model.kind`` in configs).

    ``default_gan_mode`` is what ``loss.gan_mode=auto`` means for this kind. The class needs a
    ``from_config(model_cfg, loss_cfg, in_channels, gan_mode)`` classmethod returning an instance.
    """

    def decorator(cls: K) -> K:
        if not callable(getattr(cls, "from_config", None)):
            raise TypeError(f"{cls.__qualname__}: a GAN kind needs a from_config classmethod")
        if name in _KINDS and _KINDS[name] is not cls:
            raise ValueError(f"GAN kind {name!r} is already registered by {_KINDS[name].__qualname__}")
        cls.kind = name
        cls.default_gan_mode = default_gan_mode  # type: ignore[attr-defined]
        _KINDS[name] = cls
        return cls

    return decorator


def list_gans() -> list[str]:
    """Sorted names of every registered GAN kind."""
    return sorted(_KINDS)


def network(name: str, kwargs: dict[str, Any], key: str, **channels: int):
    """Registry network ``name`` for config section ``model.<key>``; channel counts come from the kind, never
    from ``<key>_kwargs`` (ConfigError naming the key)."""
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
        model_cfg: ``kind`` (a registered GAN kind), ``generator`` / ``discriminator`` (registry names),
            ``generator_kwargs`` / ``discriminator_kwargs`` (dicts, without channel counts).
        loss_cfg: ``gan_mode`` ("auto" = the kind's default: vanilla for pix2pix, lsgan for cyclegan) and the
            kind's own weights (see each kind's ``from_config``).
        in_channels: C_in of batch "A" (context slices x input sequences); B has 1 channel.

    Raises:
        ConfigError: unknown kind, network name, argument or GAN mode (message names the config key).
    """
    kind = model_cfg.kind
    if kind not in _KINDS:
        raise ConfigError(f"model.kind: unknown {kind!r} (expected one of {', '.join(list_gans())})")
    if in_channels < 1:
        raise ConfigError(f"input channels must be >= 1, got {in_channels}")
    cls = _KINDS[kind]
    gan_mode = cls.default_gan_mode if loss_cfg.gan_mode == "auto" else loss_cfg.gan_mode  # type: ignore[attr-defined]
    return cls.from_config(model_cfg, loss_cfg, in_channels, gan_mode)


__all__ = ["build_gan", "list_gans", "network", "register_gan"]
