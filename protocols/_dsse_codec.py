"""Private: DSSE pre-authentication encoding, strict base64 and envelope shape checks.

Reference: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md (DSSE v1.0).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from protocols.errors import SignatureError

ED25519_SIG_BYTES = 64
_ENVELOPE_FIELDS = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_REQUIRED = frozenset({"sig"})
_SIGNATURE_ALLOWED = frozenset({"keyid", "sig"})  # keyid is optional in DSSE


def pae(payload_type: str, payload: bytes) -> bytes:
    """``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``; LEN is the decimal byte count."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4)."""
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: Any, *, field: str) -> bytes:
    """Decode standard padded base64, refusing any other spelling of the same bytes.

    DSSE readers may accept URL-safe or unpadded base64; we accept only what we write, and only
    its canonical spelling (unused trailing bits must be zero), so that every byte of an envelope
    file is bound by the signature or by this check.
    """
    if not isinstance(text, str):
        raise SignatureError(f"malformed DSSE envelope: {field} must be a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SignatureError(f"malformed DSSE envelope: {field} is not valid base64") from None
    if b64encode(data) != text:
        raise SignatureError(f"malformed DSSE envelope: {field} is not canonical base64")
    return data


def check_envelope_shape(envelope: Any) -> None:
    """Raise :class:`SignatureError` unless ``envelope`` has exactly the DSSE fields and types."""
    if not isinstance(envelope, Mapping):
        raise SignatureError(
            f"malformed DSSE envelope: expected a JSON object, got {type(envelope).__name__}"
        )
    _check_fields(envelope, _ENVELOPE_FIELDS, _ENVELOPE_FIELDS, "envelope")
    if not isinstance(envelope["payloadType"], str) or not envelope["payloadType"]:
        raise SignatureError("malformed DSSE envelope: payloadType must be a non-empty string")
    if not isinstance(envelope["payload"], str):
        raise SignatureError("malformed DSSE envelope: payload must be a base64 string")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError("malformed DSSE envelope: signatures must be a non-empty list")
    for i, signature in enumerate(signatures):
        if not isinstance(signature, Mapping):
            raise SignatureError(f"malformed DSSE envelope: signatures[{i}] is not an object")
        _check_fields(signature, _SIGNATURE_REQUIRED, _SIGNATURE_ALLOWED, f"signatures[{i}]")
        if not isinstance(signature.get("keyid", ""), str):
            raise SignatureError(f"malformed DSSE envelope: signatures[{i}].keyid is not a string")


def _check_fields(
    obj: Mapping[str, Any], required: frozenset[str], allowed: frozenset[str], where: str
) -> None:
    keys = set(obj)
    missing = sorted(required - keys)
    if missing:
        raise SignatureError(f"malformed DSSE envelope: {where} lacks field(s) {missing}")
    extra = sorted(keys - allowed)
    if extra:
        raise SignatureError(
            f"malformed DSSE envelope: {where} has unknown field(s) {extra}; "
            f"allowed: {sorted(allowed)}"
        )
