"""Option checks shared by the config dataclasses: one clear ConfigError per bad value."""

from __future__ import annotations

import math

from mapguard._errors import ConfigError

__all__ = ["check_int", "check_number"]


def check_int(name: str, value: object, *, low: int) -> None:
    """``value`` must be an ``int`` (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(name: str, value: object, *, positive: bool) -> None:
    """``value`` must be a finite real number, ``> 0`` (``positive``) or ``>= 0``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
