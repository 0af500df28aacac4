"""Verification results of the robustness benchmark, kept so that a rerun does not verify again.

A row (both query modes, clean accuracy) is a deterministic function of the suspect file, the
watermark (its commitment, analysis and committed channel), the query-time transform, the claim
nonce, the code that loads and verifies, and torch; the key holds each of them. "The code" is
every Python file of the packages on the verification path (``VERIFY_CODE``: the ``verification``
and ``protocols`` packages, checkpoint loading, models, the accuracy helpers, the data, the
benchmark's own verification module), hashed by content, so any change there verifies again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from protocols.fileio import atomic_write_text

__all__ = ["VERIFY_CODE", "cached_row", "code_digest", "row_key"]

_ROOT = Path(__file__).resolve().parents[2]
#: Files and packages (relative to the repository) whose code determines a verification row.
VERIFY_CODE = (
    "verification", "protocols", "mapguard/checkpoint.py", "mapguard/models", "mapguard/data",
    "mapguard/training.py", "mapguard/_device.py", "benchmarks/robustness/run.py",
)  # fmt: skip


@functools.cache
def code_digest(root: Path = _ROOT, parts: tuple[str, ...] = VERIFY_CODE) -> str:
    """SHA-256 over the paths and contents of every ``.py`` file under ``parts`` of ``root``."""
    h = hashlib.sha256()
    for part in parts:
        base = root / part
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def row_key(**parts: Any) -> str:
    """The cache key of a row: SHA-256 of ``parts`` (JSON), the code digest and torch's version."""
    keyed = {**parts, "code": code_digest(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()


def cached_row(
    folder: Path | None, key: str, compute: Callable[[], Mapping[str, Any]]
) -> dict[str, Any]:
    """``compute()``, or the row it gave before under ``key`` in ``folder`` (None: no cache);
    a reused row says so (``"cached": True``)."""
    if folder is None:
        return dict(compute())
    path = folder / key[:2] / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text()) | {"cached": True}
    row = dict(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(row, sort_keys=True) + "\n", force=True)
    return row
