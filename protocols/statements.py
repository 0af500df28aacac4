"""in-toto Statement v1, signed in DSSE envelopes.

A statement names its subjects by digest and carries a typed predicate
(https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md). Statements are plain
dicts validated against ``statement-v1``, and the predicate against the schema registered for
its ``predicateType``:

==============================================  ===========================
predicateType                                   schema
==============================================  ===========================
``https://mapguard.dev/watermark-commitment/v1``  ``commitment-predicate-v1``
``https://mapguard.dev/verification-result/v1``   ``result-predicate-v1``
==============================================  ===========================

The envelope payload is the statement's RFC 8785 canonical JSON, with payload type
``application/vnd.in-toto+json``. :func:`verify_statement` checks the signature *before* parsing
the payload, so no unauthenticated byte is ever interpreted.

Example:
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> key = Ed25519PrivateKey.generate()
    >>> stmt = make_statement(subjects=[("a.txt", "00" * 32)],
    ...                       predicate_type="https://example.com/p/v1", predicate={},
    ...                       allow_unknown_predicate=True)
    >>> env = sign_statement(stmt, key, allow_unknown_predicate=True)
    >>> verify_statement(env, key.public_key(), allow_unknown_predicate=True)["subject"][0]["name"]
    'a.txt'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols import canonical, dsse, schemas
from protocols.errors import InputError, SchemaError, SignatureError

__all__ = [
    "COMMITMENT_PREDICATE_TYPE",
    "PAYLOAD_TYPE",
    "RESULT_PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "decode_unverified",
    "list_predicate_types",
    "make_statement",
    "register_predicate_type",
    "sign_statement",
    "statement_digest",
    "validate_statement",
    "verify_statement",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
COMMITMENT_PREDICATE_TYPE = "https://mapguard.dev/watermark-commitment/v1"
RESULT_PREDICATE_TYPE = "https://mapguard.dev/verification-result/v1"

_PREDICATE_SCHEMAS: dict[str, str] = {
    COMMITMENT_PREDICATE_TYPE: "commitment-predicate-v1",
    RESULT_PREDICATE_TYPE: "result-predicate-v1",
}


def register_predicate_type(predicate_type: str, schema_name: str) -> None:
    """Register the bundled schema that validates predicates of ``predicate_type``.

    Raises:
        InputError: unknown schema, or the type is already registered to another schema.
    """
    schemas.load_schema(schema_name)  # unknown names fail here, listing the known ones
    current = _PREDICATE_SCHEMAS.get(predicate_type)
    if current is not None and current != schema_name:
        raise InputError(f"predicate type {predicate_type!r} is already registered to {current!r}")
    _PREDICATE_SCHEMAS[predicate_type] = schema_name


def list_predicate_types() -> list[str]:
    """The predicate types with a registered schema."""
    return sorted(_PREDICATE_SCHEMAS)


def validate_statement(statement: Any, *, allow_unknown_predicate: bool = False) -> None:
    """Validate a statement and its predicate (by ``predicateType``).

    Raises:
        SchemaError: the statement or predicate does not match its schema, or the predicate
            type has no registered schema and ``allow_unknown_predicate`` is false.
    """
    schemas.validate(statement, "statement-v1")
    predicate_type = statement["predicateType"]
    schema_name = _PREDICATE_SCHEMAS.get(predicate_type)
    if schema_name is None:
        if allow_unknown_predicate:
            return
        raise SchemaError(
            f"unknown predicateType {predicate_type!r}; known: {', '.join(list_predicate_types())}"
        )
    try:
        schemas.validate(statement["predicate"], schema_name)
    except SchemaError as exc:
        raise SchemaError(f"predicate: {exc}") from None


def make_statement(
    *,
    subjects: Sequence[tuple[str, str]],
    predicate_type: str,
    predicate: Mapping[str, Any],
    allow_unknown_predicate: bool = False,
) -> dict[str, Any]:
    """Build and validate an in-toto Statement v1.

    Args:
        subjects: ``(name, sha256 hex)`` pairs, at least one.
        predicate_type: a registered predicate type URI (see :func:`list_predicate_types`).
        predicate: the predicate object.
        allow_unknown_predicate: accept an unregistered predicate type (no predicate schema).

    Raises:
        SchemaError: the result does not validate.
    """
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [_subject(item) for item in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    validate_statement(statement, allow_unknown_predicate=allow_unknown_predicate)
    return statement


def _subject(item: Any) -> dict[str, Any]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise InputError(f"a subject must be a (name, sha256 hex) pair, got {item!r}")
    name, digest = item
    return {"name": name, "digest": {"sha256": digest}}


def statement_digest(statement: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the statement's canonical JSON, i.e. of the signed envelope payload."""
    return canonical.digest_json(statement)


def sign_statement(
    statement: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    allow_unknown_predicate: bool = False,
) -> dict[str, Any]:
    """Validate ``statement`` and sign its canonical JSON into a DSSE envelope."""
    validate_statement(statement, allow_unknown_predicate=allow_unknown_predicate)
    return dsse.sign_envelope(canonical.canonical_bytes(statement), PAYLOAD_TYPE, private_key)


def verify_statement(
    envelope: Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    expected_predicate_type: str | None = None,
    allow_unknown_predicate: bool = False,
) -> dict[str, Any]:
    """Verify the envelope signature, then parse and validate the statement it carries.

    Raises:
        SignatureError: bad/missing signature or payload type (checked first).
        InputError: the signed payload is not strict JSON.
        SchemaError: the statement/predicate is invalid, or its predicate type is not
            ``expected_predicate_type``.
    """
    payload = dsse.verify_envelope(envelope, public_key, expected_payload_type=PAYLOAD_TYPE)
    statement = canonical.loads(payload, source="signed statement")
    validate_statement(statement, allow_unknown_predicate=allow_unknown_predicate)
    if (
        expected_predicate_type is not None
        and statement["predicateType"] != expected_predicate_type
    ):
        raise SchemaError(
            f"statement predicateType is {statement['predicateType']!r}, "
            f"expected {expected_predicate_type!r}"
        )
    return statement


def decode_unverified(envelope: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """The statement an envelope carries, parsed and validated WITHOUT checking its signature:
    only for callers that mark what they do with it as unverified (an UNVERIFIED report) or that
    need no authenticity (a time-stamp request on the bytes as published).

    Raises:
        SignatureError: the payload is not base64. InputError / SchemaError: not a valid
            statement.
    """
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise SignatureError(f"{source}: envelope payload is not valid base64") from None
    statement = canonical.loads(payload, source=f"{source} payload")
    validate_statement(statement)
    return statement
