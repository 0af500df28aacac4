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
        images: uint8 ``[N, S, S, 3]`` (HWC, as PIL and numpy produce them); ``S`` is the side
            asked for (any-side builders) or 32.
        labels: int64 ``[N]`` in ``0..9``.
        is_test: bool ``[N]``: the fixed held-out split.
    """

    images: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray


#: ``build(rng, advance) -> Built`` (32x32 images), or ``build(rng, advance, side) -> Built`` for
#: a domain registered with ``any_side=True``; ``advance(k)`` reports k more images done.
Builder = Callable[..., Built]


@dataclass(frozen=True, kw_only=True)
class Domain:
    """A registered domain: its builder and how the seed applies to it.

    Attributes:
        name: registry key (``builtin:<name>``).
        build: the builder.
        seeded: False for fixed real data sets (the seed is then ignored).
        size: number of images the builder makes (progress bar total), if known.
        any_side: the builder takes the image side as a third argument; otherwise it draws
            32x32 images and :func:`~mapguard.data.load_data` resizes them.
    """

    name: str
    build: Builder
    seeded: bool = True
    size: int | None = None
    any_side: bool = False


_REGISTRY: dict[str, Domain] = {}


def register_domain(
    name: str, *, seeded: bool = True, size: int | None = None, any_side: bool = False
) -> Callable[[Builder], Builder]:
    """Register a builder ``fn(rng, advance) -> Built`` as domain ``name``.

    Args:
        name: lower-case identifier, used as ``builtin:<name>``.
        seeded: whether the images depend on the seed (False for fixed real data sets).
        size: number of images built, for the progress bar.
        any_side: the builder is ``fn(rng, advance, side)`` and draws ``side x side`` images;
            without it other sides are the 32x32 images resized (bilinear, antialiased).
    """
    if not _NAME.match(name):
        raise ValueError(f"domain name must match {_NAME.pattern}, got {name!r}")

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"domain '{name}' is already registered")
        _REGISTRY[name] = Domain(name=name, build=fn, seeded=seeded, size=size, any_side=any_side)
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
