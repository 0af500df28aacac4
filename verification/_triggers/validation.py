"""Validation of trigger inputs: the secret, and the parameters of the built-in families."""

from __future__ import annotations

from verification._errors import TriggerError

__all__ = ["SECRET_BYTES", "check_grid", "check_int", "check_secret", "check_unit"]

SECRET_BYTES = 32


def check_secret(secret: object) -> bytes:
    """Return ``secret`` as bytes if it is exactly 32 bytes, else raise :class:`TriggerError`."""
    if not isinstance(secret, bytes | bytearray):
        raise TriggerError(f"a secret must be {SECRET_BYTES} bytes, got {type(secret).__name__}")
    if len(secret) != SECRET_BYTES:
        raise TriggerError(f"a secret must be {SECRET_BYTES} bytes, got {len(secret)} bytes")
    return bytes(secret)


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    """Raise :class:`TriggerError` unless the parameter ``value`` is an integer in ``[lo, hi]``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise TriggerError(f"trigger parameter {name} must be an integer {bound}, got {value!r}")


def check_unit(name: str, value: object) -> None:
    """Raise :class:`TriggerError` unless the parameter ``value`` is a number in ``(0, 1]``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) <= 1.0:
        raise TriggerError(f"trigger parameter {name} must be a number in (0, 1], got {value!r}")


def check_grid(params: object) -> None:
    """Validate a family's ``grid`` against its ``image_size``, and its geometry in cells.

    ``grid = 0`` (the default) lays the trigger out on the pixels themselves (geometry v1);
    ``1 <= grid <= image_size`` lays it out on a ``grid x grid`` lattice of cells (every size,
    position and colour bit is in cells) which is then mapped onto the pixels (geometry v2,
    docs/TRIGGERS.md): the parameters are validated as if the image had ``grid`` pixels.
    """
    import dataclasses

    grid, size = params.grid, params.image_size  # type: ignore[attr-defined]
    check_int("grid", grid, 0, size)
    if grid:
        dataclasses.replace(params, image_size=grid, grid=0)  # type: ignore[type-var]
