"""The protection-method registry: what a method receives, what it returns, and the lookup."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mapguard._errors import ConfigError

if TYPE_CHECKING:
    from mapguard.checkpoint import ModelMeta
    from mapguard.data import FolderDataset, ImageSet
    from mapguard.masking import Mask


@dataclass(frozen=True, kw_only=True, eq=False)
class MethodInputs:
    """What a protection method receives (data are the *train* splits).

    A method registered with ``streams=True`` gets a folder as a
    :class:`~mapguard.data.FolderDataset` (decoded as batches need it, ``workers`` processes) and
    a built-in domain as an :class:`~mapguard.data.ImageSet`; any other method gets ImageSets.
    """

    model: nn.Module
    meta: ModelMeta
    source: ImageSet | FolderDataset | None
    targets: tuple[ImageSet | FolderDataset, ...]
    keep: tuple[ImageSet | FolderDataset, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: torch.device = torch.device("cpu")
    progress: bool = True
    workers: int = 0


@dataclass(frozen=True, kw_only=True, eq=False)
class MethodOutput:
    """What a protection method returns."""

    model: nn.Module
    config: Mapping[str, Any]
    seconds: float
    images_per_second: float = float("nan")
    mask: Mask | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A registered protection method (see :func:`register_method`)."""

    name: str
    run: Callable[[MethodInputs], MethodOutput]
    description: str
    learns_mask: bool
    validate: Callable[[Mapping[str, Any], int], object] | None
    needs_target: bool = True
    streams: bool = False
    needs_source: bool = True


_METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    *,
    description: str = "",
    learns_mask: bool = True,
    validate: Callable[[Mapping[str, Any], int], object] | None = None,
    needs_target: bool = True,
    streams: bool = False,
    needs_source: bool = True,
) -> Callable[[Callable[[MethodInputs], MethodOutput]], Callable[[MethodInputs], MethodOutput]]:
    """Register a protection method ``fn(MethodInputs) -> MethodOutput`` under ``name``.

    ``learns_mask`` says whether its output carries a :class:`~mapguard.masking.Mask` (and whether
    the model must have Conv/Linear weights to mask); ``validate(options, seed)`` checks the
    method's options before any data is loaded (raise :class:`ConfigError`); ``needs_target=False``
    lets it run without ``--target`` (data-free methods; given targets are then only evaluated);
    ``streams=True`` says it takes folder data as a streamed ``Dataset`` (:class:`MethodInputs`);
    ``needs_source=False`` says it never reads the source's training data (source-free methods:
    ``MethodInputs.source`` is then None, and a given source is only evaluated on its test split).
    """

    def deco(fn: Callable[[MethodInputs], MethodOutput]) -> Callable[[MethodInputs], MethodOutput]:
        if name in _METHODS:
            raise ValueError(f"protection method '{name}' is already registered")
        _METHODS[name] = Method(
            name=name,
            run=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            learns_mask=learns_mask,
            validate=validate,
            needs_target=needs_target,
            streams=streams,
            needs_source=needs_source,
        )
        return fn

    return deco


def list_methods() -> dict[str, str]:
    """Registered protection methods and their one-line descriptions."""
    return {n: _METHODS[n].description for n in sorted(_METHODS)}


def get_method(name: str) -> Method:
    """The registered method ``name`` (ConfigError listing the valid names otherwise)."""
    if name not in _METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]
