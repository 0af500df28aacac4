"""Shared by the channel families' tests: HKDF written out independently of the library."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable

import pytest


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with an absent salt, written out with hmac (not the library under test)."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(math.ceil(length / 32)):
        block = hmac.new(prk, block + info + bytes([i + 1]), hashlib.sha256).digest()
        out += block
    return out[:length]


@pytest.fixture()
def hkdf() -> Callable[[bytes, bytes, int], bytes]:
    return _hkdf
