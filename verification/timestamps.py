"""Trusted timestamps on a commitment (RFC 3161): check a token, and what it shows about order.

A time-stamp authority (TSA) certifies that a digest existed at a time. For a commitment the
digest is the SHA-256 of the commitment statement's canonical JSON (the commitment digest; see
docs/FORMATS.md), so a verified token shows that the owner's secrets were committed by then. The
token is checked against the TSA certificate the arbiter supplies (:func:`load_tsa_trust`),
never against a certificate found in the token alone. :func:`time_order` then says whether the
certified time precedes the suspect's first known date.

Example (the order sentence needs no token; see tests/verification/test_timestamps.py for a
real TSA):
    >>> first = parse_time("2026-05-01T00:00:00Z", what="--suspect-first-seen")
    >>> order = time_order(None, first, stated="2026-04-01T10:00:00Z")
    >>> order.established
    False
    >>> order.sentence.startswith("The order of the commitment and the suspect is not established")
    True
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

from protocols.errors import InputError
from protocols.fileio import read_input
from verification._rfc3161 import (
    MAX_TOKEN_BYTES,
    CertifiedTime,
    TimestampError,
    TimestampRequest,
    TokenInfo,
    TsaTrust,
    check_reply,
    commitment_digest,
    ensure_available,
    load_tsa_trust,
    read_token,
    timestamp_request,
    verify_timestamp,
    verify_timestamp_digest,
)

__all__ = [
    "commitment_time_order",
    "read_token_inputs",
    "MAX_TOKEN_BYTES",
    "PREDATES",
    "CertifiedTime",
    "TimeOrder",
    "TimestampError",
    "TimestampRequest",
    "TokenInfo",
    "TsaTrust",
    "check_reply",
    "commitment_digest",
    "ensure_available",
    "load_tsa_trust",
    "parse_time",
    "read_token",
    "time_order",
    "timestamp_request",
    "verify_timestamp",
    "verify_timestamp_digest",
]

#: The words of an established order.
PREDATES = "the commitment is certified to predate the suspect's first known date"
_NOT = "The order of the commitment and the suspect is not established"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimeOrder:
    """Whether the commitment is certified to predate the suspect, in one sentence.

    Attributes:
        established: A verified token's time (plus its accuracy) is before the first known date.
        sentence: The finding in words, naming the source of each time.
        certified: The certified time (RFC 3339), if a token verified.
        first_seen: The suspect's first known date (RFC 3339), if given.
    """

    established: bool
    sentence: str
    certified: str | None
    first_seen: str | None


def parse_time(text: str, *, what: str = "time") -> dt.datetime:
    """An RFC 3339 time (``2026-05-01T00:00:00Z``, ``...+02:00``) or a date (``2026-05-01``,
    read as 00:00 UTC: the start of that day, the earliest it can mean).

    Raises:
        TimestampError: anything else, or a time without a UTC offset.
    """
    value = text.strip()
    try:
        if len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise TimestampError(
            f"{what} {text!r} is not an RFC 3339 time with a UTC offset "
            "(e.g. 2026-05-01T00:00:00Z) or a date (2026-05-01)"
        )
    return parsed


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _certified_text(c: CertifiedTime) -> str:
    accuracy = "" if c.accuracy_seconds is None else f" (accuracy ±{c.accuracy_seconds:g} s)"
    return f"{c.time}{accuracy} by the time-stamp authority '{c.tsa}'"


def time_order(
    certified: CertifiedTime | None,
    first_seen: dt.datetime | None,
    *,
    stated: str | None = None,
) -> TimeOrder:
    """Compare a verified token's time with the suspect's first known date.

    The order is established only if ``certified`` (plus its stated accuracy) is strictly before
    ``first_seen``; a time the owner states (``stated``, the commitment's ``created``) never
    establishes it.

    Args:
        certified: The result of :func:`verify_timestamp`, or None (no token checked).
        first_seen: The suspect's first known date (given by the arbiter), or None.
        stated: The commitment's own ``created`` field, for the sentence.
    """
    seen = None if first_seen is None else _rfc3339(first_seen)
    known = "" if seen is None else f"; the suspect's first known date is {seen} (as given)"
    if certified is None:
        own = f" ({stated})" if stated else ""
        sentence = (f"{_NOT}: no trusted timestamp was checked, so the commitment's time{own} "
                    f"is the owner's own clock{known}.")  # fmt: skip
        return TimeOrder(established=False, sentence=sentence, certified=None, first_seen=seen)
    at = _certified_text(certified)
    if first_seen is None:
        established = False
        sentence = (f"{_NOT}: the commitment is certified at {at}, but no first known date of "
                    "the suspect was given.")  # fmt: skip
    elif certified.latest < first_seen:
        established = True
        sentence = (f"The order is established: {PREDATES} (certified at {at}; the suspect's "
                    f"first known date, as given, is {seen}).")  # fmt: skip
    else:
        established = False
        sentence = (f"{_NOT}: the commitment is certified at {at}, which is not before the "
                    f"suspect's first known date {seen} (as given).")  # fmt: skip
    return TimeOrder(
        established=established, sentence=sentence, certified=certified.time, first_seen=seen
    )


def read_token_inputs(
    timestamp: str | os.PathLike[str] | None, tsa_cert: str | os.PathLike[str] | None
) -> tuple[Path, bytes, TsaTrust] | None:
    """The token's bytes and the user's TSA certificate (both or neither), read before any check
    runs; a token is never checked without the user's certificate."""
    if timestamp is None and tsa_cert is None:
        return None
    if tsa_cert is None:
        raise InputError(
            f"the time-stamp token '{timestamp}' needs the TSA's certificate (--tsa-cert, PEM: "
            "the TSA certificate and its CA chain); a certificate inside the token is never "
            "trusted on its own"
        )
    if timestamp is None:
        raise InputError(f"--tsa-cert '{tsa_cert}' is given without a time-stamp token to check")
    ensure_available()
    data = read_input(timestamp, "time-stamp token", max_bytes=MAX_TOKEN_BYTES)
    return Path(timestamp), data, load_tsa_trust(tsa_cert)


def commitment_time_order(
    timestamp: str | os.PathLike[str] | None,
    tsa_cert: str | os.PathLike[str] | None,
    *,
    digest: str,
    first_seen: str | None,
) -> dict[str, Any] | None:
    """The ``time_order`` block of a verification result: the RFC 3161 token on the commitment
    ``digest`` (the watermark file's commitment digest) checked with the user's TSA certificate,
    compared with the suspect's first known date. None when neither a token nor a date is given.

    The verdict does not depend on it (one pre-registered analysis); it records, signed with the
    result, whether the commitment is certified to predate the suspect, which is what tells an
    owner from someone who chose keys after seeing the suspect (docs/METHOD.md, section 4).

    Raises:
        InputError: a token without a certificate (or the reverse), an unreadable file, a date
            that is not RFC 3339. TimestampError: the token does not verify on this commitment.
    """
    inputs = read_token_inputs(timestamp, tsa_cert)
    if inputs is None and first_seen is None:
        return None
    seen = None if first_seen is None else parse_time(first_seen, what="the suspect's first seen")
    if inputs is None:
        order = time_order(None, seen)
        return {"established": False, "sentence": order.sentence, "first_seen": order.first_seen}
    path, data, trust = inputs
    certified = verify_timestamp_digest(data, digest, trust, source=f"token '{path}'")
    order = time_order(certified, seen)
    block = {
        "established": order.established,
        "sentence": order.sentence,
        "certified": order.certified,
        "first_seen": order.first_seen,
        "token_sha256": hashlib.sha256(data).hexdigest(),
        "tsa": certified.tsa,
        "tsa_certificate_sha256": certified.tsa_certificate_sha256,
    }
    return {k: v for k, v in block.items() if v is not None}
