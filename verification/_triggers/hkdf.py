"""HKDF-SHA256 (RFC 5869) and the byte helpers shared by the trigger specs.

These four helpers are the whole cryptographic vocabulary of ``docs/TRIGGERS.md``; an
independent arbiter re-implements them with any HKDF library (or 20 lines of ``hmac``).
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["HKDF_MAX_LENGTH", "bit", "colour_bits", "hkdf_sha256", "uniform_int"]

HKDF_MAX_LENGTH = 255 * 32


def hkdf_sha256(ikm: bytes, *, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 with an absent salt (RFC 5869: 32 zero bytes), the given ``info``.

    The output of length ``L`` is a prefix of the output of any longer length, so a spec may
    say "bytes ``a`` to ``b`` of the stream" without fixing the total length.
    """
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def uniform_int(chunk: bytes, lo: int, hi: int) -> int:
    """Map 8 bytes to an integer in ``[lo, hi]``: ``lo + (big-endian u64 mod (hi - lo + 1))``.

    The modulo bias is below ``(hi - lo + 1) / 2**64``, negligible for the small ranges used.
    """
    if len(chunk) != 8:
        raise ValueError(f"uniform_int needs 8 bytes, got {len(chunk)}")
    return lo + int.from_bytes(chunk, "big") % (hi - lo + 1)


def bit(stream: bytes, index: int) -> int:
    """Bit ``index`` of ``stream``, most significant bit of each byte first."""
    return (stream[index // 8] >> (7 - index % 8)) & 1


def colour_bits(stream: bytes, offset: int, pixels: int) -> np.ndarray:
    """``3 * pixels`` bits from ``stream[offset:]``, MSB first, shaped ``[pixels, 3]``."""
    nbytes = math.ceil(3 * pixels / 8)
    raw = np.frombuffer(stream, dtype=np.uint8, count=nbytes, offset=offset)
    return np.unpackbits(raw, bitorder="big")[: 3 * pixels].reshape(pixels, 3)
