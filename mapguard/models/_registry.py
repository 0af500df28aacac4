"""The model registry: ``@register_model`` factories looked up by name.

The built-in architectures register themselves in :mod:`mapguard.models._zoo`, which
:mod:`mapguard.models` imports, so the registry is complete whenever it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from mapguard._errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a factory ``fn(*, num_classes) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build an untrained model ``name`` with its input normalisation in front.

    Raises:
        ConfigError: unknown architecture name or a bad class count.
    """
    from mapguard.models._zoo import DEFAULT_MEAN, DEFAULT_STD, Normalize

    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown architecture '{name}'; choose one of: {', '.join(list_models())}"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    body = _REGISTRY[name](num_classes=num_classes)
    norm = Normalize(mean or DEFAULT_MEAN, std or DEFAULT_STD)
    return nn.Sequential(norm, body)
