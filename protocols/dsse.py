"""DSSE envelopes signed with Ed25519.

An envelope is the standard DSSE v1 JSON object
(https://github.com/secure-systems-lab/dsse/blob/master/envelope.md)::

    {"payloadType": "...", "payload": "<base64>",
     "signatures": [{"keyid": "...", "sig": "<base64>"}]}

The signature is Ed25519 over the pre-authentication encoding
``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (see :func:`pae`), so the
payload type is authenticated with the payload. ``keyid`` is the signer's
:func:`protocols.keys.fingerprint`.

:func:`verify_envelope` is the only way to get a payload out of an envelope: it returns the bytes
only after a signature by the given key has verified.

Example:
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> key = Ed25519PrivateKey.generate()
    >>> env = sign_envelope(b"hello", "text/plain", key)
    >>> verify_envelope(env, key.public_key())
    b'hello'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols import canonical
from protocols._dsse_codec import (
    ED25519_SIG_BYTES,
    b64decode_strict,
    b64encode,
    check_envelope_shape,
    pae,
)
from protocols.errors import InputError, SignatureError
from protocols.keys import fingerprint, public_key_of

__all__ = [
    "envelope_digest",
    "pae",
    "parse_envelope",
    "read_envelope",
    "sign_envelope",
    "verify_envelope",
    "write_envelope",
]


def sign_envelope(
    payload: bytes, payload_type: str, private_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """Wrap ``payload`` in a DSSE envelope with one Ed25519 signature.

    Raises:
        InputError: ``payload`` is not bytes, ``payload_type`` is empty, or the key is not an
            Ed25519 private key.
    """
    if not isinstance(payload, bytes | bytearray):
        raise InputError(f"payload must be bytes, got {type(payload).__name__}")
    if not isinstance(payload_type, str) or not payload_type:
        raise InputError(f"payload_type must be a non-empty string, got {payload_type!r}")
    keyid = fingerprint(public_key_of(private_key))
    sig = private_key.sign(pae(payload_type, bytes(payload)))
    return {
        "payload": b64encode(bytes(payload)),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": b64encode(sig)}],
    }


def verify_envelope(
    envelope: Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    expected_payload_type: str | None = None,
) -> bytes:
    """Return the payload of ``envelope`` if a signature by ``public_key`` verifies.

    Signatures whose ``keyid`` is empty/absent or equals the key's fingerprint are tried; one
    valid signature suffices.

    Raises:
        SignatureError: malformed envelope, unexpected payload type, no signature by this key,
            or the signature does not verify (wrong key, tampered payload/type/signature).
    """
    keyid = fingerprint(public_key)
    check_envelope_shape(envelope)
    payload_type = envelope["payloadType"]
    if expected_payload_type is not None and payload_type != expected_payload_type:
        raise SignatureError(
            f"envelope payloadType is {payload_type!r}, expected {expected_payload_type!r}"
        )
    payload = b64decode_strict(envelope["payload"], field="payload")
    candidates = [
        (i, s) for i, s in enumerate(envelope["signatures"]) if s.get("keyid", "") in ("", keyid)
    ]
    if not candidates:
        signers = sorted({s.get("keyid", "") for s in envelope["signatures"]})
        raise SignatureError(f"envelope has no signature by key {keyid} (signed by: {signers})")
    message = pae(payload_type, payload)
    if not any(_verifies(public_key, message, s, i) for i, s in candidates):
        raise SignatureError(f"envelope signature does not verify with key {keyid}")
    return payload


def _verifies(
    public_key: Ed25519PublicKey, message: bytes, signature: Mapping[str, Any], index: int
) -> bool:
    sig = b64decode_strict(signature["sig"], field=f"signatures[{index}].sig")
    if len(sig) != ED25519_SIG_BYTES:
        return False
    try:
        public_key.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def envelope_digest(envelope: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the envelope's canonical JSON (independent of file whitespace)."""
    check_envelope_shape(envelope)
    return canonical.digest_json(envelope)


def parse_envelope(data: bytes, *, source: str = "envelope") -> dict[str, Any]:
    """Parse envelope bytes (strict JSON) and check their shape; does NOT verify them.

    Raises:
        InputError: invalid JSON.
        SignatureError: the JSON is not a well-formed DSSE envelope.
    """
    envelope = canonical.loads(data, source=source)
    try:
        check_envelope_shape(envelope)
    except SignatureError as exc:
        raise SignatureError(f"{source}: {exc}") from None
    return envelope


def read_envelope(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a DSSE envelope file (see :func:`parse_envelope`); does NOT verify it.

    Raises:
        InputError: missing file or invalid JSON.
        SignatureError: the JSON is not a well-formed DSSE envelope.
    """
    p = Path(path)
    envelope = canonical.read_json(p)
    try:
        check_envelope_shape(envelope)
    except SignatureError as exc:
        raise SignatureError(f"'{p}': {exc}") from None
    return envelope


def write_envelope(
    path: str | os.PathLike[str], envelope: Mapping[str, Any], *, force: bool = False
) -> Path:
    """Write ``envelope`` atomically as canonical JSON plus a newline.

    Raises:
        SignatureError: ``envelope`` is not a well-formed DSSE envelope.
        OutputExistsError: ``path`` exists and ``force`` is false.
    """
    check_envelope_shape(envelope)
    return canonical.write_json(path, envelope, force=force)
