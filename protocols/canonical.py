"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme), SHA-256 digests and timestamps.

Everything that is hashed or signed is first serialised with :func:`canonical_bytes`, so two
parties who hold the same JSON *value* compute the same bytes: keys sorted by UTF-16 code units,
no whitespace, numbers in their shortest ECMAScript form, UTF-8 output.

RFC 8785 treats every number as an IEEE-754 double, so integers beyond +-(2**53 - 1) and
non-finite floats are refused with a :class:`~protocols.errors.SchemaError` naming the value's
path. Encode seeds, large ids and digests as strings. Every document's ``created`` time is
written by :func:`now_rfc3339` (UTC, whole seconds, ``Z``).

Example:
    >>> canonical_bytes({"b": 1, "a": [True, None, 0.5]})
    b'{"a":[true,null,0.5],"b":1}'
    >>> digest_json({"a": 1}) == sha256_hex(b'{"a":1}')
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import rfc8785

from protocols._jsonvalue import check_jsonable, loads_strict
from protocols.errors import InputError, SchemaError
from protocols.fileio import MAX_JSON_BYTES, atomic_write_bytes, read_input

__all__ = [
    "canonical_bytes",
    "digest_json",
    "loads",
    "now_rfc3339",
    "read_json",
    "sha256_hex",
    "write_json",
]


def canonical_bytes(obj: Any) -> bytes:
    """Serialise a JSON value to its RFC 8785 canonical UTF-8 bytes.

    Raises:
        SchemaError: ``obj`` holds something JSON cannot carry exactly (an integer beyond
            +-(2**53 - 1), NaN/Infinity, a non-string key, a non-JSON type); the message names
            the path, e.g. ``$.secrets[0].seed``.
    """
    check_jsonable(obj)
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:  # defensive: check_jsonable should catch all
        raise SchemaError(f"cannot canonicalise JSON value: {exc}") from None


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"sha256_hex expects bytes, got {type(data).__name__}")
    return hashlib.sha256(data).hexdigest()


def digest_json(obj: Any) -> str:
    """Lower-case hex SHA-256 of the canonical bytes of ``obj``."""
    return sha256_hex(canonical_bytes(obj))


def now_rfc3339() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (RFC 3339, whole seconds)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def loads(data: bytes | str, *, source: str = "JSON document") -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity and unsafe integers are refused.

    Raises:
        InputError: with ``source`` and the reason in the message.
    """
    return loads_strict(data, source=source)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read and strictly parse a JSON file of at most 1 MiB (see :func:`loads`)."""
    data = read_input(path, "JSON", max_bytes=MAX_JSON_BYTES)
    return loads_strict(data, source=f"'{Path(path)}'")


def write_json(
    path: str | os.PathLike[str], obj: Any, *, force: bool = False, mode: int | None = None
) -> Path:
    """Write ``obj`` atomically as canonical JSON followed by one newline.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false.
        SchemaError: ``obj`` cannot be canonicalised.
    """
    return atomic_write_bytes(path, canonical_bytes(obj) + b"\n", force=force, mode=mode)
