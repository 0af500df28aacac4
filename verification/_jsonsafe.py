"""Turn result dataclasses into JSON-safe values (no NaN/inf, no numpy types)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["INTERNAL", "jsonsafe"]

#: dataclass field metadata that keeps a field out of ``to_dict()`` (bulky or private arrays).
INTERNAL = {"jsonsafe": False}


def jsonsafe(value: Any) -> Any:
    """Recursively convert ``value`` to JSON types; non-finite floats become ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonsafe(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("jsonsafe", True)
        }
    if isinstance(value, Mapping):
        return {str(k): jsonsafe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonsafe(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [jsonsafe(v) for v in value]
    if isinstance(value, np.generic):
        return jsonsafe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot make {type(value).__name__} JSON-safe")
