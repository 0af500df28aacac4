"""The domain registry: ``@register_domain`` builders looked up by name (timm-style).

The built-in domains register themselves in :mod:`mapguard.data._builtin`, which
:mod:`mapguard.data` imports, so the registry is complete whenever it is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mapguard._errors import DataError

__all__ = ["Built", "Builder", "Domain", "get_domain", "list_domains", "register_domain"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class Built:
    """What a domain builder returns.

    Attributes:
        images: uint8 ``[N, 32, 32, 3]`` (HWC, as PIL and numpy produce them).
        labels: int64 ``[N]`` in ``0..9``.
        is_test: bool ``[N]``: the fixed held-out split.
    """

    images: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray


#: ``build(rng, advance) -> Built``; ``advance(k)`` reports k more images done.
Builder = Callable[[np.random.Generator, Callable[[int], None]], Built]


@dataclass(frozen=True, kw_only=True)
class Domain:
    """A registered domain: its builder and how the seed applies to it.

    Attributes:
        name: registry key (``builtin:<name>``).
        build: the builder.
        seeded: False for fixed real data sets (the seed is then ignored).
        size: number of images the builder makes (progress bar total), if known.
    """

    name: str
    build: Builder
    seeded: bool = True
    size: int | None = None


_REGISTRY: dict[str, Domain] = {}


def register_domain(
    name: str, *, seeded: bool = True, size: int | None = None
) -> Callable[[Builder], Builder]:
    """Register a builder ``fn(rng, advance) -> Built`` as domain ``name``.

    Args:
        name: lower-case identifier, used as ``builtin:<name>``.
        seeded: whether the images depend on the seed (False for fixed real data sets).
        size: number of images built, for the progress bar.
    """
    if not _NAME.match(name):
        raise ValueError(f"domain name must match {_NAME.pattern}, got {name!r}")

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"domain '{name}' is already registered")
        _REGISTRY[name] = Domain(name=name, build=fn, seeded=seeded, size=size)
        return fn

    return deco


def list_domains() -> list[str]:
    """Names of all registered domains, sorted."""
    return sorted(_REGISTRY)


def get_domain(name: str) -> Domain:
    """The registered domain ``name``.

    Raises:
        DataError: unknown name; the message lists the valid ones.
    """
    if name not in _REGISTRY:
        raise DataError(
            f"unknown data 'builtin:{name}'; choose builtin:NAME with NAME one of: "
            f"{', '.join(list_domains())}"
        )
    return _REGISTRY[name]
