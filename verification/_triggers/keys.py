"""Secret and null-key generation."""

from __future__ import annotations

import os

import numpy as np

from verification._errors import TriggerError
from verification._triggers.hkdf import hkdf_sha256
from verification._triggers.validation import SECRET_BYTES

__all__ = ["NULL_KEY_INFO", "null_secrets", "random_secret"]

NULL_KEY_INFO = b"mapguard/null-key/v1"


def random_secret(rng: np.random.Generator | None = None) -> bytes:
    """Draw a 32-byte secret: from ``os.urandom`` when ``rng`` is None, else ``rng.bytes(32)``.

    Production secrets must use ``rng=None``; a seeded ``rng`` is for tests and simulations.
    """
    if rng is None:
        return os.urandom(SECRET_BYTES)
    if not isinstance(rng, np.random.Generator):
        raise TriggerError(f"rng must be a numpy Generator or None, got {type(rng).__name__}")
    return rng.bytes(SECRET_BYTES)


def null_secrets(seed: bytes, m: int) -> list[bytes]:
    """Derive ``m`` null keys from a public ``seed``, reproducibly.

    Key ``j`` (0-based) is ``HKDF-SHA256(ikm=seed, salt=None,
    info=b"mapguard/null-key/v1" || u32be(j), length=32)``. Anyone holding the seed gets the same
    keys; the keys depend on nothing else, in particular not on the owner's secret, and modelling
    HKDF as a random oracle they are iid uniform 32-byte strings, i.e. draws from the same
    distribution as an honestly drawn secret.

    Args:
        seed: Public seed bytes (non-empty).
        m: Number of keys, ``0 <= m < 2**32``.
    """
    if not isinstance(seed, bytes | bytearray) or len(seed) == 0:
        raise TriggerError(f"null-key seed must be non-empty bytes, got {seed!r}")
    if not isinstance(m, int) or isinstance(m, bool) or not 0 <= m < 2**32:
        raise TriggerError(f"number of null keys must be an integer in [0, 2**32), got {m!r}")
    return [
        hkdf_sha256(bytes(seed), info=NULL_KEY_INFO + j.to_bytes(4, "big"), length=SECRET_BYTES)
        for j in range(m)
    ]
