"""Passphrase encryption for the owner's private files (scrypt + AES-256-GCM).

Format (version 1), all integers big-endian::

    magic   b"MGSBOX"      6 bytes
    version 0x01           1 byte
    log2_n  scrypt N=2**log2_n, r=8, p=1   1 byte
    salt    16 bytes
    nonce   12 bytes (AES-GCM)
    ciphertext || 16-byte GCM tag

The 36-byte header is authenticated as GCM associated data, so it cannot be altered without
detection. A wrong passphrase and a corrupted file are indistinguishable by design; both raise
one :class:`~protocols.errors.InputError`.

Example:
    >>> box = encrypt(b"secret", b"correct horse", log2_n=10)
    >>> is_encrypted(box), decrypt(box, b"correct horse")
    (True, b'secret')
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocols.errors import InputError

__all__ = ["DEFAULT_LOG2_N", "decrypt", "encrypt", "is_encrypted"]

MAGIC = b"MGSBOX"
VERSION = 1
DEFAULT_LOG2_N = 15  # N = 32768: ~32 MiB and ~0.1 s per derivation
_MIN_LOG2_N, _MAX_LOG2_N = 10, 20  # bound the work a crafted header can demand (<= 1 GiB)
_R, _P = 8, 1
_SALT_BYTES, _NONCE_BYTES, _TAG_BYTES = 16, 12, 16
_HEADER_BYTES = len(MAGIC) + 2 + _SALT_BYTES + _NONCE_BYTES


def _derive(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=_R, p=_P).derive(passphrase)


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise InputError("passphrase must be non-empty bytes")


def is_encrypted(data: bytes) -> bool:
    """True if ``data`` starts with the secretbox magic."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def encrypt(data: bytes, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    """Encrypt ``data`` under ``passphrase``.

    Args:
        data: plaintext.
        passphrase: non-empty bytes.
        log2_n: scrypt cost, ``N = 2**log2_n`` (10..20; lower only for tests).

    Raises:
        InputError: empty passphrase or ``log2_n`` out of range.
    """
    _check_passphrase(passphrase)
    if not isinstance(log2_n, int) or not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
        raise InputError(f"log2_n={log2_n!r} is out of range {_MIN_LOG2_N}..{_MAX_LOG2_N}")
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    header = MAGIC + bytes([VERSION, log2_n]) + salt + nonce
    key = _derive(passphrase, salt, log2_n)
    return header + AESGCM(key).encrypt(nonce, bytes(data), header)


def decrypt(data: bytes, passphrase: bytes) -> bytes:
    """Decrypt a secretbox.

    Raises:
        InputError: not a secretbox, unsupported version or cost, truncated, wrong passphrase
            or corrupted data.
    """
    _check_passphrase(passphrase)
    data = bytes(data)
    if not is_encrypted(data):
        raise InputError("data is not a mapguard secretbox (bad magic)")
    if len(data) < _HEADER_BYTES + _TAG_BYTES:
        raise InputError(f"secretbox is truncated ({len(data)} bytes)")
    version, log2_n = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version != VERSION:
        raise InputError(f"secretbox version {version} is not supported (expected {VERSION})")
    if not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
        raise InputError(f"secretbox scrypt cost log2_n={log2_n} is out of range")
    header = data[:_HEADER_BYTES]
    salt = header[len(MAGIC) + 2 : len(MAGIC) + 2 + _SALT_BYTES]
    nonce = header[-_NONCE_BYTES:]
    key = _derive(passphrase, salt, log2_n)
    try:
        return AESGCM(key).decrypt(nonce, data[_HEADER_BYTES:], header)
    except InvalidTag:
        raise InputError("cannot decrypt: wrong passphrase or corrupted file") from None
