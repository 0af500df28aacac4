"""Typed errors of the owner-side toolkit; all are :class:`protocols.errors.InputError`."""

from __future__ import annotations

from protocols.errors import InputError, OutputExistsError

__all__ = [
    "ConfigError",
    "DataError",
    "InputError",
    "MapguardError",
    "ModelFileError",
    "OutputExistsError",
    "TrainingError",
]


class MapguardError(InputError):
    """Base class of mapguard's user-facing errors."""


class DataError(MapguardError):
    """A data set spec, folder or file is unknown, empty or unreadable."""


class ModelFileError(MapguardError):
    """A model file is missing, corrupt, unsafe or does not match the data."""


class ConfigError(MapguardError):
    """An option value is out of range or options contradict each other."""


class TrainingError(MapguardError):
    """Optimisation failed (e.g. a NaN loss)."""
