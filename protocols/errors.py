"""Typed errors shared by all three packages.

Every error a user can cause by bad input derives from :class:`InputError`. The CLI maps it to a
single line on stderr and exit code 2; nothing else is caught that way, so real bugs still show a
traceback.
"""

from __future__ import annotations

__all__ = [
    "CommitmentError",
    "InputError",
    "OutputExistsError",
    "SchemaError",
    "SignatureError",
]


class InputError(ValueError):
    """Bad user input (file, option, data). The message names the bad value."""


class SchemaError(InputError):
    """A document does not match its JSON Schema."""


class SignatureError(InputError):
    """A signature is missing, malformed, or does not verify."""


class OutputExistsError(InputError):
    """An output path exists and overwriting was not requested."""


class CommitmentError(InputError):
    """Revealed values do not open a published commitment, or contradict it."""
