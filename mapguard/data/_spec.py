"""Parsing of data specs: ``builtin:NAME`` or a path to an ImageFolder directory."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path

from mapguard._errors import DataError
from mapguard.data._registry import get_domain, list_domains

__all__ = [
    "BUILTIN_PREFIX",
    "MAX_SIZE",
    "MIN_SIZE",
    "SPLITS",
    "DataSpec",
    "check_seed",
    "check_size",
    "check_split",
    "parse_data_spec",
]

BUILTIN_PREFIX = "builtin:"
SPLITS = ("train", "test", "all")
#: Image sides ``load_data`` / ``open_data`` accept (pixels).
MIN_SIZE, MAX_SIZE = 8, 1024


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """A validated data spec.

    Attributes:
        kind: ``"builtin"`` or ``"folder"``.
        name: the domain name (builtin) or the folder path as given (folder).
        path: the folder (``None`` for builtins).
    """

    kind: str
    name: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"{BUILTIN_PREFIX}{self.name}" if self.kind == "builtin" else self.name


def parse_data_spec(spec: str | os.PathLike[str]) -> DataSpec:
    """Validate ``spec`` and say what it names.

    Raises:
        DataError: unknown built-in name, missing path, or a path that is not a directory.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec must be builtin:NAME or a folder path, got {spec!r}")
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        get_domain(name)  # raises with the list of valid names
        return DataSpec(kind="builtin", name=name)
    path = Path(spec).expanduser()
    if path.is_dir():
        return DataSpec(kind="folder", name=spec, path=path)
    if path.exists():
        raise DataError(f"data path '{spec}' is not a directory; expected an ImageFolder directory")
    if os.sep in spec or (os.altsep and os.altsep in spec) or spec.startswith("."):
        raise DataError(f"data folder '{spec}' does not exist")
    raise DataError(
        f"unknown data '{spec}'; use builtin:NAME with NAME one of: "
        f"{', '.join(list_domains())} or a path to an ImageFolder directory"
    )


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def check_seed(seed: int) -> int:
    """``seed`` if it is a non-negative integer."""
    try:
        value = operator.index(seed)  # int or numpy integer, not float or bool-as-typo
    except TypeError:
        value = -1
    if isinstance(seed, bool) or value < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    return value


def check_size(size: int) -> int:
    """``size`` if it is an integer image side in ``MIN_SIZE..MAX_SIZE``."""
    try:
        value = operator.index(size)
    except TypeError:
        value = -1
    if isinstance(size, bool) or not MIN_SIZE <= value <= MAX_SIZE:
        raise DataError(
            f"image size must be an integer from {MIN_SIZE} to {MAX_SIZE} (pixels), got {size!r}"
        )
    return value
