"""Ed25519 signing keys: generate, load, fingerprint.

Key files are PEM: the private key as PKCS#8 (``PREFIX.key``, mode 0600, optionally encrypted
with a passphrase), the public key as SubjectPublicKeyInfo (``PREFIX.pub``). Both are written
atomically and never overwrite an existing file unless ``force=True``.

A key's **fingerprint** is ``"SHA256:"`` followed by the lower-case hex SHA-256 of the raw
32-byte Ed25519 public key (RFC 8032 encoding). It is the DSSE ``keyid`` of our signatures and
the ``owner_key_fingerprint`` of a watermark commitment. (Unlike OpenSSH fingerprints it is hex,
not base64, and hashes the raw key, not a wire-format blob.)

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> info = generate_keypair(d / "owner")
    >>> fingerprint(load_public_key(info.public_path)) == info.fingerprint
    True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.errors import InputError
from protocols.fileio import MAX_KEY_BYTES, atomic_write_bytes, check_writable, read_input

__all__ = [
    "FINGERPRINT_PREFIX",
    "KeyInfo",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_key_of",
]

FINGERPRINT_PREFIX = "SHA256:"
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """Where a generated key pair was written, and its fingerprint."""

    private_path: Path
    public_path: Path
    fingerprint: str
    encrypted: bool


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``"SHA256:" + hex(sha256(raw 32-byte public key))``.

    Raises:
        InputError: ``public_key`` is not an Ed25519 public key.
    """
    if not isinstance(public_key, Ed25519PublicKey):
        raise InputError(
            f"expected an Ed25519 public key, got {type(public_key).__name__}"
            " (use public_key_of(private_key) for a private key)"
        )
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return FINGERPRINT_PREFIX + hashlib.sha256(raw).hexdigest()


def public_key_of(private_key: Ed25519PrivateKey) -> Ed25519PublicKey:
    """The public half of an Ed25519 private key."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise InputError(f"expected an Ed25519 private key, got {type(private_key).__name__}")
    return private_key.public_key()


def _encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    if passphrase is None:
        return serialization.NoEncryption()
    if not isinstance(passphrase, bytes) or not passphrase:
        raise InputError("passphrase must be non-empty bytes (or None for an unencrypted key)")
    return serialization.BestAvailableEncryption(passphrase)


def generate_keypair(
    out_prefix: str | os.PathLike[str], *, passphrase: bytes | None = None, force: bool = False
) -> KeyInfo:
    """Generate an Ed25519 key pair and write ``PREFIX.key`` (0600) and ``PREFIX.pub``.

    Both outputs are checked before either is written, so a refused overwrite writes nothing.

    Args:
        out_prefix: path prefix; ``.key`` and ``.pub`` are appended.
        passphrase: encrypt the private key with it (PKCS#8, best available encryption).
        force: overwrite existing files.

    Raises:
        OutputExistsError: an output exists and ``force`` is false.
        InputError: bad passphrase or unwritable directory.
    """
    prefix = Path(out_prefix)
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    encryption = _encryption(passphrase)
    for path in (private_path, public_path):
        check_writable(path, force=force)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write_bytes(private_path, private_pem, force=force, mode=_PRIVATE_MODE)
    atomic_write_bytes(public_path, public_pem, force=force, mode=_PUBLIC_MODE)
    return KeyInfo(
        private_path=private_path,
        public_path=public_path,
        fingerprint=fingerprint(key.public_key()),
        encrypted=passphrase is not None,
    )


def load_private_key(
    path: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    """Load a PEM (PKCS#8) Ed25519 private key.

    Raises:
        InputError: missing/unreadable file, not a PEM private key, not Ed25519, a passphrase
            needed but not given (or given for an unencrypted key), or a wrong passphrase.
    """
    p = Path(path)
    data = read_input(p, "private key", max_bytes=MAX_KEY_BYTES)
    if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
        raise InputError("passphrase must be non-empty bytes")
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise InputError(f"private key '{p}' is encrypted; a passphrase is required")
    if not encrypted and passphrase is not None:
        raise InputError(f"private key '{p}' is not encrypted; do not pass a passphrase")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        reason = "wrong passphrase or corrupt key" if encrypted else "not a PEM private key"
        raise InputError(f"cannot load private key '{p}': {reason}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"private key '{p}' is {type(key).__name__}, expected Ed25519")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load a PEM (SubjectPublicKeyInfo) Ed25519 public key.

    Raises:
        InputError: missing/unreadable file, not a PEM public key, or not Ed25519.
    """
    p = Path(path)
    data = read_input(p, "public key", max_bytes=MAX_KEY_BYTES)
    if b"PRIVATE KEY-----" in data:
        raise InputError(f"'{p}' holds a private key; pass the public key (.pub) file")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"cannot load public key '{p}': not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"public key '{p}' is {type(key).__name__}, expected Ed25519")
    return key
