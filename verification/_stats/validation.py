"""Validation helpers shared by the statistical tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from verification._errors import VerificationError

__all__ = ["ALTERNATIVES", "TIES", "as_rng", "check_choice", "finite_scalar", "finite_vector"]

ALTERNATIVES = ("greater", "less", "two-sided")
TIES = ("conservative", "randomized")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if value not in choices:
        raise VerificationError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def finite_scalar(name: str, value: object) -> float:
    """Return ``value`` as a finite float."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VerificationError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise VerificationError(f"{name} must be finite, got {out}")
    return out


def finite_vector(name: str, values: object, *, min_len: int = 1) -> np.ndarray:
    """Return ``values`` as a finite 1-D float64 array of length ``>= min_len``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < min_len:
        raise VerificationError(
            f"{name} must be a 1-D array with at least {min_len} values, got shape {arr.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise VerificationError(f"{name} must be finite; index {bad[0]} is {arr[bad[0]]}")
    return arr


def as_rng(rng: object) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh OS entropy), like ``scipy.stats``."""
    if rng is None or isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(rng)  # type: ignore[arg-type]
    if isinstance(rng, np.random.Generator):
        return rng
    raise VerificationError(f"rng must be a numpy Generator, an int or None; got {rng!r}")
