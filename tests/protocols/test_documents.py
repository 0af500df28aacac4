"""``protocols.documents``: the commitment and the watermark file, built from plain values."""

from __future__ import annotations

import doctest

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import documents, openings, schemas, statements
from protocols.analysis import Analysis
from protocols.errors import SchemaError

TOOL = {"name": "mapguard", "version": "0.1.0"}
CORE = {
    "trigger_family": {"name": "targeted_patch", "parameters": {"min_size": 8, "max_size": 10}},
    "secrets": [
        {"secret": f"{i:02x}" * 32, "trigger": {"details": {"row": i}, "fingerprint": "cd" * 32}}
        for i in range(3)
    ],
    "verification_set": {
        "reference": "builtin:mnist#test",
        "sha256": "00" * 32,
        "indices": [1, 2, 3],
    },
}


def _documents(key: Ed25519PrivateKey, **changes):
    public, opened = openings.make_commitments(CORE)
    args = {
        "core": CORE,
        "public": public,
        "owner_key": key.public_key(),
        "tool": TOOL,
        "model": {"sha256": "11" * 32, "name": "protected.pt", "format": "mapguard-checkpoint"},
        "subjects": [("protected.pt", "11" * 32)],
        "method": {"name": "map-watermark", "parameters": {"target_weight": 5.0}},
        "analysis": Analysis(n_secrets=3, null_keys_per_secret=99, images_per_key=40).to_block(),
        "created": "2025-01-01T00:00:00Z",
    } | changes
    statement = documents.commitment_statement(**args)
    doc = documents.watermark_document(
        core=CORE, opened=opened, statement=statement, owner_key=key.public_key(),
        calibration={"clean_accuracy_after": 0.98},
    )  # fmt: skip
    return statement, doc


def test_the_example_runs():
    result = doctest.testmod(documents, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_watermark_file_opens_the_commitment_and_both_are_schema_valid():
    key = Ed25519PrivateKey.generate()
    statement, doc = _documents(key)
    schemas.validate(doc, "watermark-file-v1")
    openings.check_openings(statement["predicate"], doc)  # raises on any mismatch
    assert doc["commitment_statement_sha256"] == statements.statement_digest(statement)
    assert doc["verification"] == statement["predicate"]["verification"]
    block = statement["predicate"]["verification"]
    assert Analysis.from_block(block) == Analysis(
        n_secrets=3, null_keys_per_secret=99, images_per_key=40
    )


def test_the_commitment_publishes_no_secret():
    statement, _ = _documents(Ed25519PrivateKey.generate())
    text = str(statement)
    assert all(entry["secret"] not in text for entry in CORE["secrets"])
    assert "'row'" not in text and "fingerprint': 'cd" not in text


def test_a_malformed_block_is_refused_by_the_schema():
    with pytest.raises(SchemaError):
        _documents(Ed25519PrivateKey.generate(), model={"name": "protected.pt"})
