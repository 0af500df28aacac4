"""On-disk cache of built domains: one ``.npz`` of uint8 pixels per (domain, seed, size, format).

The cache lives in ``$MAPGUARD_CACHE_DIR/data`` when that variable is set, else in the user
cache directory (``platformdirs.user_cache_dir("mapguard")/data``). Files are written atomically,
so concurrent builders at worst do the same work twice; a corrupt or foreign file is rebuilt.
The default side, 32, keeps the file names it had before sizes existed (``mnist-v1.npz``,
``syn-v1-seed0.npz``); any other side is part of the name (``syn-v1-seed0-64px.npz``).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import platformdirs

from mapguard.data._imageset import SIDE as _DEFAULT_SIDE
from mapguard.data._registry import Built
from protocols.fileio import atomic_path

__all__ = ["CACHE_ENV", "DATA_FORMAT_VERSION", "cache_file", "data_cache_dir", "read", "write"]

#: Bump whenever a recipe or a stored array changes: old cache files are then ignored.
DATA_FORMAT_VERSION = 1
CACHE_ENV = "MAPGUARD_CACHE_DIR"
_KEYS = ("images", "labels", "is_test")


def data_cache_dir() -> Path:
    """Directory holding the cached domains (read from the environment at every call)."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("mapguard")
    return Path(root).expanduser() / "data"


def cache_file(name: str, seed: int | None, size: int = _DEFAULT_SIDE) -> Path:
    """Cache path of domain ``name`` at side ``size``; ``seed=None`` when it does not matter."""
    suffix = "" if seed is None else f"-seed{seed}"
    if size != _DEFAULT_SIDE:
        suffix += f"-{size}px"
    return data_cache_dir() / f"{name}-v{DATA_FORMAT_VERSION}{suffix}.npz"


def read(path: Path, size: int = _DEFAULT_SIDE) -> Built | None:
    """The cached arrays at ``path``, or None when missing, unreadable, malformed or not
    ``size x size``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            built = Built(**{k: npz[k] for k in _KEYS})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n = len(built.labels)
    ok = (
        built.images.dtype == np.uint8
        and built.images.shape == (n, size, size, 3)
        and built.labels.dtype == np.int64
        and built.is_test.dtype == np.bool_
        and built.is_test.shape == (n,)
    )
    return built if ok else None


def write(path: Path, built: Built) -> None:
    """Store ``built`` at ``path`` atomically; warn (do not fail) when the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, force=True) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: getattr(built, k) for k in _KEYS})
    except (OSError, ValueError) as exc:  # protocols' InputError is a ValueError
        warnings.warn(f"could not cache data at '{path}': {exc}", RuntimeWarning, stacklevel=3)
