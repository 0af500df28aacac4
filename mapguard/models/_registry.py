"""The model registry: ``@register_model`` factories looked up by name.

The built-in architectures register themselves in :mod:`mapguard.models._zoo`, which
:mod:`mapguard.models` imports, so the registry is complete whenever it is used. Besides those
names, :func:`create_model` takes the specs of :mod:`mapguard.models._external`
(``torchvision:NAME``, ``timm:NAME``, ``module:pkg.mod:factory``).
"""

from __future__ import annotations

import difflib
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
    """Names of all registered architectures (the zoo), sorted."""
    return sorted(_REGISTRY)


def list_model_specs(*, include_timm: bool = True) -> list[str]:
    """Every name :func:`create_model` takes without running user code: the zoo, then the
    ``torchvision:`` specs and (when timm is installed and ``include_timm``) the ``timm:`` ones.
    ``module:pkg.mod:factory`` is open-ended and not listed."""
    from mapguard.models._external import spec_names

    return list_models() + spec_names(include_timm=include_timm)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build an untrained model ``name`` with its input normalisation in front.

    ``name`` is a zoo name (:func:`list_models`) or a spec ``torchvision:NAME``, ``timm:NAME`` or
    ``module:pkg.mod:factory`` (the last imports and runs that code; see
    :mod:`mapguard.models._external`). The result is ``nn.Sequential(Normalize(mean, std), body)``
    and takes pixels in ``[0, 1]``.

    Raises:
        ConfigError: unknown architecture name or spec, or a bad class count.
    """
    from mapguard.models._external import PREFIXES, build_spec, is_spec
    from mapguard.models._zoo import DEFAULT_MEAN, DEFAULT_STD, Normalize

    if not isinstance(name, str) or not (name in _REGISTRY or is_spec(name)):
        close = difflib.get_close_matches(str(name), list_models(), n=1)
        raise ConfigError(
            f"unknown architecture '{name}'"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + f"; choose one of: {', '.join(list_models())}, or a spec "
            + ", ".join(f"{p}:..." for p in PREFIXES)
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if is_spec(name):
        body = build_spec(name, num_classes=num_classes)
    else:
        body = _REGISTRY[name](num_classes=num_classes)
    norm = Normalize(mean or DEFAULT_MEAN, std or DEFAULT_STD)
    return nn.Sequential(norm, body)
