"""The owner's watermark file (``owner.wm``): seal it, open it, turn it into a WatermarkSpec.

File format (version 1). The file holds a DSSE envelope (canonical JSON) whose payload is the
canonical JSON of a ``watermark-file-v1`` document and whose payload type is
:data:`PAYLOAD_TYPE`; it is signed with the owner's Ed25519 key, so that changing any byte of it
is detected. With a passphrase the envelope bytes are sealed in a
:mod:`protocols.secretbox` (scrypt + AES-256-GCM). The document carries, besides the fields the
schema requires:

- ``owner_public_key``: hex of the raw 32-byte Ed25519 public key, so that the file's signature
  can be checked without the ``.pub`` file (an arbiter checks it against the published key);
- ``model.num_classes``: the class count of the watermarked model;
- ``verification``: ``n_secrets``, ``null_keys_per_secret``, ``queries_per_key`` and ``test``, as
  in the commitment predicate;
- ``verification_set.inline``: the verification images and labels themselves (see
  :func:`encode_verification_set`), so an arbiter needs nothing but this file.

Verification-set digest (``verification_set.sha256``)::

    SHA256( b"mapguard/verification-set/v1\\x00" || u32be(n) || u32be(3) || u32be(H) || u32be(W)
            || images as uint8, C order [n, 3, H, W] || labels as int64 little-endian [n] )

Example:
    >>> import numpy as np
    >>> images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    >>> vs = encode_verification_set(images, np.array([3, 7]), reference="builtin:mnist#test")
    >>> x, y = decode_verification_set(vs)
    >>> x.shape, y.tolist()
    ((2, 3, 32, 32), [3, 7])
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols import canonical, dsse, keys, schemas, secretbox
from protocols.analysis import Analysis
from protocols.errors import InputError, SchemaError, SignatureError
from protocols.fileio import read_input
from verification._errors import VerificationError
from verification._inline import INLINE_FORMAT, images_from_inline, inline_images
from verification._verify.spec import (
    MAX_IMAGES_PER_KEY,
    MAX_NULL_KEYS_PER_SECRET,
    MAX_SECRETS,
    WatermarkSpec,
    check_count,
)

__all__ = [
    "INLINE_FORMAT",
    "MAX_FILE_BYTES",
    "PAYLOAD_TYPE",
    "SCHEMA",
    "WatermarkFile",
    "decode_verification_set",
    "encode_verification_set",
    "open_watermark",
    "read_watermark",
    "seal_watermark",
    "verification_set_digest",
    "watermark_spec",
]

PAYLOAD_TYPE = "application/vnd.mapguard.watermark+json"
SCHEMA = "watermark-file-v1"
_VS_TAG = b"mapguard/verification-set/v1\x00"

#: Size limit of a watermark file. The demo's ``owner.wm`` (3 secrets, 40 inline images of
#: 3x32x32) is about 220 KB (pixels are base64 inside a base64 DSSE payload, 16/9 bytes per
#: pixel); 64 inline images of 3x224x224 (a model at its own resolution) are about 17 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024


def verification_set_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Hex SHA-256 of a verification set (layout in the module docstring)."""
    x = np.ascontiguousarray(images, dtype=np.uint8)
    y = np.ascontiguousarray(labels, dtype="<i8")
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise VerificationError(
            f"verification set must be images [n, 3, H, W] and labels [n], got "
            f"{list(x.shape)} and {list(y.shape)}"
        )
    h = hashlib.sha256(_VS_TAG)
    for dim in x.shape:
        h.update(int(dim).to_bytes(4, "big"))
    h.update(x.tobytes())
    h.update(y.tobytes())
    return h.hexdigest()


def encode_verification_set(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    reference: str,
    indices: list[int] | None = None,
) -> dict[str, Any]:
    """The ``verification_set`` object of a watermark file, with the data inline.

    Args:
        images: uint8 ``[n, 3, H, W]``.
        labels: integer ``[n]``.
        reference: where the images came from, e.g. ``"builtin:mnist#test"`` (informative).
        indices: their indices in ``reference`` (informative).
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise VerificationError(f"verification images must be uint8, got {x.dtype}")
    y = np.asarray(labels).astype(np.int64)
    out: dict[str, Any] = {
        "reference": reference,
        "sha256": verification_set_digest(x, y),
        "inline": {**inline_images(x), "labels": [int(v) for v in y]},
    }
    if indices is not None:
        out["indices"] = [int(i) for i in indices]
    return out


def decode_verification_set(vs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``[n, 3, H, W]``) and labels (int64 ``[n]``) of an inline set.

    Raises:
        VerificationError: no inline data, a malformed one, or data that does not match the
            recorded ``sha256``.
    """
    inline = vs.get("inline") if isinstance(vs, Mapping) else None
    if not isinstance(inline, Mapping) or inline.get("format") != INLINE_FORMAT:
        raise VerificationError(
            f"the verification set has no inline data of format {INLINE_FORMAT!r}; "
            "this verifier needs the images in the watermark file"
        )
    images = images_from_inline(inline, "verification set")
    try:
        labels = np.asarray(inline["labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"malformed inline verification set: {exc}") from None
    if verification_set_digest(images, labels) != vs.get("sha256"):
        raise VerificationError("the inline verification set does not match its recorded sha256")
    return images, labels


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class WatermarkFile:
    """An opened, signature-checked and schema-valid watermark file.

    Attributes:
        document: The ``watermark-file-v1`` document (read-only view).
        signer: Fingerprint (``SHA256:...``) of the key whose signature verified; it is always
            the file's ``owner_key_fingerprint``. Anyone can re-sign a copy with their own key,
            so it identifies the owner only once compared with the owner key the published
            commitment names (:func:`verification.check.check` with ``watermark=`` does that).
        encrypted: Whether the file was passphrase-encrypted.
        authenticated: Whether the signature was checked with a public key the caller gave;
            false if only with the key the file names for itself (integrity, not authorship).
    """

    document: Mapping[str, Any]
    signer: str
    encrypted: bool
    authenticated: bool = False

    @property
    def commitment_digest(self) -> str:
        """Digest of the signed commitment statement this watermark belongs to."""
        return str(self.document["commitment_statement_sha256"])

    @property
    def model_sha256(self) -> str:
        """SHA-256 of the protected model file the watermark was embedded in."""
        return str(self.document["model"]["sha256"])

    @property
    def num_classes(self) -> int:
        """Class count of the watermarked model."""
        return int(self.document["model"]["num_classes"])

    @property
    def null_keys_per_secret(self) -> int:
        """``M`` committed at embedding."""
        return int(self.document["verification"]["null_keys_per_secret"])

    @property
    def analysis(self) -> Analysis:
        """The pre-registered analysis (the committed ``verification`` block); a malformed
        block or an unknown analysis version is a :class:`SchemaError`."""
        return Analysis.from_block(_thaw(self.document["verification"]))

    @property
    def n_secrets(self) -> int:
        """Number of secrets (``k``)."""
        return len(self.document["secrets"])

    def plain(self) -> dict[str, Any]:
        """A mutable deep copy of the document (plain dicts and lists)."""
        return canonical.loads(canonical.canonical_bytes(_thaw(self.document)))


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def seal_watermark(
    document: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    passphrase: bytes | None = None,
) -> bytes:
    """Schema-check ``document``, sign it into a DSSE envelope, optionally encrypt; file bytes.

    Raises:
        SchemaError: the document is not a valid ``watermark-file-v1`` document.
        InputError: the key's fingerprint differs from ``owner_key_fingerprint``.
    """
    schemas.validate(document, SCHEMA)
    own = keys.fingerprint(keys.public_key_of(private_key))
    if document["owner_key_fingerprint"] != own:
        raise InputError(
            f"watermark names owner key {document['owner_key_fingerprint']}, signing key is {own}"
        )
    envelope = dsse.sign_envelope(canonical.canonical_bytes(document), PAYLOAD_TYPE, private_key)
    data = canonical.canonical_bytes(envelope) + b"\n"
    return secretbox.encrypt(data, passphrase) if passphrase is not None else data


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed DSSE envelope: payload is not base64") from None


def _embedded_key(payload: bytes) -> Ed25519PublicKey:
    """The public key a watermark names for itself (integrity only; not authenticity)."""
    doc = canonical.loads(payload, source="watermark payload")
    raw = doc.get("owner_public_key") if isinstance(doc, dict) else None
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SignatureError(
            "the watermark carries no valid owner_public_key; pass the owner's public key"
        ) from None


def open_watermark(
    data: bytes,
    *,
    passphrase: bytes | None = None,
    public_key: Ed25519PublicKey | None = None,
    source: str = "watermark file",
) -> WatermarkFile:
    """Decrypt (if needed), check the signature, parse and schema-check watermark file bytes.

    Args:
        data: The file's bytes.
        passphrase: Needed if the file is encrypted.
        public_key: The owner's public key. Without it the signature is checked against the key
            the file names for itself, which proves integrity but not who wrote it.
        source: Name for error messages.

    Raises:
        InputError: larger than :data:`MAX_FILE_BYTES`, encrypted without passphrase / wrong
            passphrase / corrupt ciphertext.
        SignatureError: not an envelope, wrong payload type, or a signature that does not verify.
        SchemaError: the signed document is not a valid watermark file.
        VerificationError: more secrets, null keys or images than a verifier accepts
            (:data:`~verification.verify.MAX_SECRETS` and its siblings).
    """
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            f"{source} is too large: the limit is {MAX_FILE_BYTES:,} bytes, it has {len(data):,}"
        )
    encrypted = secretbox.is_encrypted(data)
    if encrypted:
        if passphrase is None:
            raise InputError(f"{source} is encrypted; a passphrase is required")
        data = secretbox.decrypt(data, passphrase)
    envelope = dsse.parse_envelope(data, source=source)
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(
            f"{source}: payloadType {envelope.get('payloadType')!r} is not {PAYLOAD_TYPE!r}"
        )
    key = public_key
    if key is None:
        key = _embedded_key(_b64(envelope["payload"]))
    payload = dsse.verify_envelope(envelope, key, expected_payload_type=PAYLOAD_TYPE)
    doc = canonical.loads(payload, source=f"{source} payload")
    schemas.validate(doc, SCHEMA)
    _check_self_consistency(doc, key)
    return WatermarkFile(
        document=_freeze(doc),
        signer=keys.fingerprint(key),
        encrypted=encrypted,
        authenticated=public_key is not None,
    )


def _check_self_consistency(doc: Mapping[str, Any], key: Ed25519PublicKey) -> None:
    fpr = keys.fingerprint(key)
    if doc["owner_key_fingerprint"] != fpr:
        raise SignatureError(
            f"watermark names owner key {doc['owner_key_fingerprint']} but is signed by {fpr}"
        )
    for field in ("num_classes",):
        if not isinstance(doc["model"].get(field), int):
            raise SchemaError(f"{SCHEMA}: $.model.{field}: required integer is missing")
    if not isinstance(doc.get("verification"), Mapping):
        raise SchemaError(f"{SCHEMA}: $.verification: required object is missing")
    _check_counts(doc)


def _check_counts(doc: Mapping[str, Any]) -> None:
    """Refuse counts that would make a verification endless (limits: ``_verify/spec.py``)."""
    ver = doc["verification"]
    check_count("the number of secrets in the watermark file", len(doc["secrets"]), hi=MAX_SECRETS)
    check_count("verification.n_secrets", ver.get("n_secrets"), hi=MAX_SECRETS)
    check_count(
        "verification.null_keys_per_secret",
        ver.get("null_keys_per_secret"),
        hi=MAX_NULL_KEYS_PER_SECRET,
    )
    check_count("verification.queries_per_key", ver.get("queries_per_key"), hi=MAX_IMAGES_PER_KEY)
    inline = doc["verification_set"].get("inline")
    shape = inline.get("shape") if isinstance(inline, Mapping) else None
    if isinstance(shape, list) and shape:
        check_count("verification_set.inline.shape[0]", shape[0], hi=MAX_IMAGES_PER_KEY)


def read_watermark(
    path: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> WatermarkFile:
    """Read and open a watermark file (see :func:`open_watermark`).

    Raises:
        InputError: the file is missing or unreadable, plus everything :func:`open_watermark`
            raises.
    """
    data = read_input(path, "watermark", max_bytes=MAX_FILE_BYTES)
    source = f"'{Path(path)}'"
    return open_watermark(data, passphrase=passphrase, public_key=public_key, source=source)


def watermark_spec(wm: WatermarkFile) -> WatermarkSpec:
    """The :class:`~verification.verify.WatermarkSpec` an arbiter verifies against.

    Raises:
        VerificationError: malformed secrets or verification set.
    """
    doc = wm.document
    images, labels = decode_verification_set(doc["verification_set"])
    try:
        secrets = tuple(bytes.fromhex(entry["secret"]) for entry in doc["secrets"])
    except ValueError:
        raise VerificationError("a watermark secret is not hex") from None
    return WatermarkSpec(
        family=doc["trigger_family"]["name"],
        family_params=_thaw(doc["trigger_family"]["parameters"]),
        secrets=secrets,
        images=images,
        labels=labels,
        num_classes=wm.num_classes,
        commitment_digest=wm.commitment_digest,
        owner_key=wm.signer,
    )
