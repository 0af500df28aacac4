"""Hash commitments: publish a digest now, reveal the value and nonce later.

The owner commits to the watermark secret, the trigger parameters and the verification set
before deployment, and publishes only the digests (in a signed commitment statement). When
ownership is disputed the values and nonces are revealed to an arbiter, who checks that they
open the published digests, so they cannot have been chosen after seeing the suspect model.

Construction (``sha256``, scheme ``mapguard-commitment-v1``)::

    digest = SHA256( TAG || kind || u64be(len(nonce)) || nonce || body )
    TAG    = b"mapguard/commitment/v1\\x00"
    kind   = b"B" and body = value           for a bytes value
             b"J" and body = RFC8785(value)  for a JSON object

The tag separates these digests from every other SHA-256 in the system, the kind byte keeps a
byte string from opening as the JSON object it happens to spell, and the length prefix keeps the
nonce/body boundary unambiguous. Binding rests on SHA-256 collision resistance; hiding on the
nonce being >= 128 bits of unpredictable randomness (default: 256 bits from the OS CSPRNG).

Example:
    >>> c = commit(b"watermark secret")
    >>> open_commitment(c.digest, b"watermark secret", c.nonce)
    True
    >>> open_commitment(c.digest, b"another secret", c.nonce)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.canonical import canonical_bytes
from protocols.errors import InputError

__all__ = [
    "ALGORITHM",
    "DOMAIN_TAG",
    "MIN_NONCE_BYTES",
    "NONCE_BYTES",
    "Commitment",
    "commit",
    "open_commitment",
]

ALGORITHM = "sha256"
DOMAIN_TAG = b"mapguard/commitment/v1\x00"
NONCE_BYTES = 32
MIN_NONCE_BYTES = 16
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Commitment:
    """A commitment and its opening nonce (hex). Publish only :meth:`public`."""

    digest: str
    nonce: str
    algorithm: str = ALGORITHM

    def public(self) -> dict[str, str]:
        """The publishable part, ``{"digest", "algorithm"}``: never includes the nonce."""
        return {"digest": self.digest, "algorithm": self.algorithm}


def _encode_value(value: bytes | Mapping[str, Any]) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return b"B" + bytes(value)
    if isinstance(value, Mapping):
        return b"J" + canonical_bytes(value)
    raise InputError(
        f"a commitment value must be bytes or a JSON object (dict), got {type(value).__name__}"
    )


def _digest(value: bytes | Mapping[str, Any], nonce: bytes) -> str:
    kind_and_body = _encode_value(value)
    h = hashlib.sha256(DOMAIN_TAG)
    h.update(kind_and_body[:1])
    h.update(len(nonce).to_bytes(8, "big"))
    h.update(nonce)
    h.update(kind_and_body[1:])
    return h.hexdigest()


def _draw_nonce(rng: Any) -> bytes:
    if rng is None:
        return secrets.token_bytes(NONCE_BYTES)
    if hasattr(rng, "randbytes"):  # random.Random
        return rng.randbytes(NONCE_BYTES)
    if hasattr(rng, "bytes"):  # numpy.random.Generator
        return rng.bytes(NONCE_BYTES)
    raise InputError(
        f"rng must be None, a random.Random or a numpy Generator, got {type(rng).__name__}"
    )


def _check_nonce(nonce: Any) -> bytes:
    if isinstance(nonce, str):
        try:
            nonce = bytes.fromhex(nonce)
        except ValueError:
            raise InputError(f"commitment nonce {nonce!r} is not hex") from None
    if not isinstance(nonce, bytes | bytearray):
        raise InputError(f"commitment nonce must be bytes or hex, got {type(nonce).__name__}")
    if len(nonce) < MIN_NONCE_BYTES:
        raise InputError(
            f"commitment nonce has {len(nonce)} bytes; at least {MIN_NONCE_BYTES} are required"
        )
    return bytes(nonce)


def commit(
    value: bytes | Mapping[str, Any], *, nonce: bytes | None = None, rng: Any = None
) -> Commitment:
    """Commit to ``value`` (bytes, or a JSON object hashed in canonical form).

    Args:
        value: what to commit to.
        nonce: the opening nonce (>= 16 bytes); drawn fresh when omitted.
        rng: source for the nonce when ``nonce`` is omitted: ``None`` (OS CSPRNG, the only
            hiding choice), or a seeded ``random.Random`` / ``numpy.random.Generator`` for
            reproducible tests. A seeded rng makes the commitment guessable: never in production.

    Raises:
        InputError: bad value type, short nonce, both ``nonce`` and ``rng`` given, bad rng.
    """
    if nonce is not None and rng is not None:
        raise InputError("pass either nonce= or rng=, not both")
    raw_nonce = _check_nonce(nonce) if nonce is not None else _draw_nonce(rng)
    return Commitment(digest=_digest(value, raw_nonce), nonce=raw_nonce.hex())


def open_commitment(
    commitment_digest: str, value: bytes | Mapping[str, Any], nonce: bytes | str
) -> bool:
    """True iff ``value`` with ``nonce`` (bytes or hex) opens ``commitment_digest``.

    Raises:
        InputError: the digest is not 64 lower-case hex digits, or the nonce/value is malformed.
    """
    if not isinstance(commitment_digest, str) or not _HEX64.fullmatch(commitment_digest):
        raise InputError(f"commitment digest {commitment_digest!r} is not 64 lower-case hex digits")
    actual = _digest(value, _check_nonce(nonce))
    return hmac.compare_digest(actual, commitment_digest)
