"""Typed errors of the arbiter side; all are :class:`protocols.errors.InputError`."""

from __future__ import annotations

from protocols.errors import InputError

__all__ = ["SuspectError", "TriggerError", "UnsafeFormatError", "VerificationError"]


class VerificationError(InputError):
    """Base class of verification's user-facing errors."""


class SuspectError(VerificationError):
    """The suspect model cannot be loaded or does not fit the watermark (input size, classes)."""


class UnsafeFormatError(SuspectError):
    """The suspect file needs unpickling, which is refused without the explicit unsafe flag."""


class TriggerError(VerificationError):
    """An unknown trigger family, bad family parameters, or a malformed secret."""
