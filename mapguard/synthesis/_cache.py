"""On-disk cache of synthesized pseudo-source sets, keyed by model weights and options."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from mapguard._errors import DataError
from mapguard.data import data_cache_dir
from mapguard.synthesis._result import SynthesisResult, load_result, save_result

__all__ = ["cache_key", "cache_path", "read_cached", "write_cached"]


def cache_key(
    *, weights_sha256: str, config: dict[str, Any], n: int, seed: int, size: int = 32
) -> str:
    """SHA-256 over the canonical JSON of everything that determines the images.

    ``size`` (the image side) enters the key only when it is not 32, so the keys of 32-pixel
    syntheses are those of the code before image sides other than 32 existed.
    """
    fields = {"weights_sha256": weights_sha256, "config": config, "n": n, "seed": seed, "v": 1}
    if size != 32:
        fields["size"] = size
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(key: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root or $MAPGUARD_CACHE_DIR/synthesis>/<key>.npz``."""
    base = Path(root) if root is not None else data_cache_dir().parent / "synthesis"
    return base / f"{key}.npz"


def read_cached(path: Path) -> SynthesisResult | None:
    """The cached result at ``path``, or None when missing or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        return load_result(path)
    except DataError:
        return None


def write_cached(path: Path, result: SynthesisResult) -> None:
    """Store ``result``; warn (do not fail) when the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_result(result, path, force=True)
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"could not cache synthesized images at '{path}': {exc}", RuntimeWarning, stacklevel=3
        )
