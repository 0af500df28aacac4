"""The owner's two documents: the public commitment and the private watermark file.

An embedding ends in two JSON documents that any party can rebuild and check from their parts:

- the **commitment** (``commitment-predicate-v1``, in an in-toto Statement naming the protected
  model files by digest): the owner key, the model, the method, the trigger family, the digests
  of what stays secret (:mod:`protocols.openings`) and the **pre-registered analysis**
  (:meth:`protocols.analysis.Analysis.to_block`: the test and every size it depends on), all
  fixed before any suspect is seen;
- the **watermark file** (``watermark-file-v1``, kept private until it is revealed to an
  arbiter): the committed values themselves, the openings and the digest of the signed statement
  they open.

Plain values in, plain values out (no torch, no statistics): the side that built the model says
what the ``tool`` is and supplies the committed ``core`` (``trigger_family``, ``secrets``,
``verification_set``).

Example:
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> from protocols import openings
    >>> from protocols.analysis import Analysis
    >>> key = Ed25519PrivateKey.generate().public_key()
    >>> core = {"trigger_family": {"name": "patch", "parameters": {"size": 4}},
    ...         "secrets": [{"secret": "ab" * 32, "trigger": {"fingerprint": "cd" * 32}}],
    ...         "verification_set": {"reference": "builtin:mnist#test", "sha256": "00" * 32}}
    >>> public, opened = openings.make_commitments(core)
    >>> stmt = commitment_statement(
    ...     core=core, public=public, owner_key=key, tool={"name": "demo", "version": "1"},
    ...     model={"sha256": "11" * 32, "name": "model.pt", "format": "demo"},
    ...     subjects=[("model.pt", "11" * 32)], method={"name": "demo", "parameters": {}},
    ...     analysis=Analysis(n_secrets=1, null_keys_per_secret=99, images_per_key=40).to_block(),
    ...     created="2025-01-01T00:00:00Z")
    >>> stmt["predicate"]["verification"]["test"]
    'pooled-min'
    >>> doc = watermark_document(core=core, opened=opened, statement=stmt, owner_key=key,
    ...                          calibration={})
    >>> doc["commitment_statement_sha256"] == statements.statement_digest(stmt)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import keys, statements

__all__ = ["SCHEMA_VERSION", "commitment_statement", "watermark_document"]

#: ``schema_version`` of both documents.
SCHEMA_VERSION = "1"
#: The parts of the committed core that the watermark file carries in the clear.
_CORE_PARTS = ("trigger_family", "secrets", "verification_set")


def commitment_statement(
    *,
    core: Mapping[str, Any],
    public: Mapping[str, Any],
    owner_key: Ed25519PublicKey,
    tool: Mapping[str, str],
    model: Mapping[str, Any],
    subjects: Sequence[tuple[str, str]],
    method: Mapping[str, Any],
    analysis: Mapping[str, Any],
    created: str,
) -> dict[str, Any]:
    """The in-toto Statement of the commitment (digests only; validated against its schema).

    Args:
        core: The committed values (only ``trigger_family`` is published).
        public: The public commitments block (:func:`protocols.openings.make_commitments`).
        owner_key: The owner's public key (its fingerprint is published).
        tool: ``{"name", "version"}`` of the program that built the model.
        model: ``{"sha256", "name", "format", ...}`` of the protected model.
        subjects: ``(file name, sha256 hex)`` of every published model file.
        method: ``{"name", "parameters"}`` of the embedding method.
        analysis: The pre-registered analysis (``Analysis.to_block()``).
        created: RFC 3339 time (:func:`protocols.canonical.now_rfc3339`).
    """
    predicate = {
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "tool": dict(tool),
        "owner_key_fingerprint": keys.fingerprint(owner_key),
        "model": dict(model),
        "method": dict(method),
        "trigger_family": dict(core["trigger_family"]),
        "commitments": dict(public),
        "verification": dict(analysis),
    }
    return statements.make_statement(
        subjects=list(subjects),
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )


def watermark_document(
    *,
    core: Mapping[str, Any],
    opened: Mapping[str, Any],
    statement: Mapping[str, Any],
    owner_key: Ed25519PublicKey,
    calibration: Mapping[str, Any],
    channel: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The private ``watermark-file-v1`` document that opens ``statement``.

    Args:
        core: The committed values (carried in the clear).
        opened: The private openings (:func:`protocols.openings.make_commitments`).
        statement: The commitment statement it opens (:func:`commitment_statement`).
        owner_key: The owner's public key (written raw, so a reader can check the signature).
        calibration: Figures measured at embedding time (public numbers, no secret).
        channel: The committed second channel's secret, opening nonce and query set
            (``verification.channel.encode_channel``), when the analysis has one.
    """
    predicate = statement["predicate"]
    return {
        "schema_version": SCHEMA_VERSION,
        "created": predicate["created"],
        "tool": dict(predicate["tool"]),
        "owner_key_fingerprint": predicate["owner_key_fingerprint"],
        "owner_public_key": owner_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "model": dict(predicate["model"]),
        "method": dict(predicate["method"]),
        **{part: core[part] for part in _CORE_PARTS},
        "verification": dict(predicate["verification"]),
        "calibration": dict(calibration),
        "openings": dict(opened),
        **({"channel": dict(channel)} if channel is not None else {}),
        "commitment_statement_sha256": statements.statement_digest(statement),
    }
