"""A name -> network registry (timm / diffusers style).

``@register_model("unet")`` on an ``nn.Module`` class makes ``create_model("unet", **kwargs)`` build it,
and records every constructor argument (defaults filled in) on the instance as ``net.config`` (a plain
dict), so ``create_model(net.registry_name, **net.config)`` rebuilds the same architecture.

>>> net = create_model("patchgan", in_channels=2, base_channels=8)
>>> twin = create_model(net.registry_name, **net.config)
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

_REGISTRY: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: register an ``nn.Module`` under ``name`` and record its constructor kwargs."""

    def decorator(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        init = cls.__init__
        signature = inspect.signature(init)
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
            raise TypeError(f"{cls.__qualname__}: registered models need explicit constructor arguments")

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if type(self) is cls:  # a subclass records its own arguments
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                self.config = {k: copy.deepcopy(v) for k, v in list(bound.arguments.items())[1:]}

        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.registry_name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Sorted names of every registered network (importing :mod:`synthseq.models` registers the built-in ones)."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with constructor ``kwargs``.

    Raises:
        ConfigError: unknown name (the message lists the known ones), unknown or missing argument.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    cls = _REGISTRY[name]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    allowed = [p.name for p in params]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"model {name!r}: unknown argument {key!r} (accepted: {', '.join(allowed)})")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
        raise ConfigError(f"model {name!r}: missing argument(s) {', '.join(missing)}")
    return cls(**kwargs)
