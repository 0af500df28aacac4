"""Typed errors of the evidence report (all are :class:`protocols.errors.InputError`)."""

from __future__ import annotations

from mapguard._errors import MapguardError
from protocols.errors import SignatureError

__all__ = ["ReportError", "UnverifiedInputError"]


class ReportError(MapguardError):
    """The inputs of a report contradict each other, or the report cannot be rendered."""


class UnverifiedInputError(ReportError, SignatureError):
    """A signature failed or could not be checked and ``allow_unverified`` was not given."""
