from __future__ import annotations

import copy

import pytest

from protocols import canonical, dsse, statements
from protocols.errors import InputError, SchemaError, SignatureError


@pytest.fixture(scope="module")
def commitment_statement(data_dir, golden_public_key):
    env = dsse.read_envelope(data_dir / "commitment-v1.dsse.json")
    return statements.verify_statement(env, golden_public_key)


def test_golden_result_envelope_still_verifies(data_dir, golden_public_key):
    env = dsse.read_envelope(data_dir / "result-v1.dsse.json")
    stmt = statements.verify_statement(
        env, golden_public_key, expected_predicate_type=statements.RESULT_PREDICATE_TYPE
    )
    assert stmt["predicate"]["verdict"] == "evidenced"
    assert stmt["_type"] == statements.STATEMENT_TYPE


def test_make_sign_verify_round_trip(commitment_statement, private_key):
    stmt = statements.make_statement(
        subjects=[("model.safetensors", "ab" * 32)],
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=commitment_statement["predicate"],
    )
    assert stmt["subject"] == [{"name": "model.safetensors", "digest": {"sha256": "ab" * 32}}]
    env = statements.sign_statement(stmt, private_key)
    assert env["payloadType"] == statements.PAYLOAD_TYPE
    assert dsse.verify_envelope(env, private_key.public_key()) == canonical.canonical_bytes(stmt)
    assert statements.verify_statement(env, private_key.public_key()) == stmt
    assert statements.statement_digest(stmt) == canonical.sha256_hex(
        canonical.canonical_bytes(stmt)
    )


@pytest.mark.parametrize(
    ("subjects", "fragment"),
    [
        ([], "$.subject: [] should be non-empty"),
        ([("m", "AB" * 32)], "$.subject[0].digest.sha256"),
        ([("m", "ab" * 31)], "$.subject[0].digest.sha256"),
        ([("", "ab" * 32)], "$.subject[0].name"),
    ],
)
def test_bad_subjects(commitment_statement, subjects, fragment):
    with pytest.raises(SchemaError) as info:
        statements.make_statement(
            subjects=subjects,
            predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
            predicate=commitment_statement["predicate"],
        )
    assert fragment in str(info.value)


def test_subject_must_be_a_pair():
    with pytest.raises(InputError, match="pair"):
        statements.make_statement(
            subjects=["model"], predicate_type="x", predicate={}, allow_unknown_predicate=True
        )


def test_predicate_is_validated_by_type(commitment_statement):
    predicate = copy.deepcopy(commitment_statement["predicate"])
    predicate["commitments"]["secret"]["nonce"] = "00" * 32
    with pytest.raises(SchemaError, match=r"^predicate: commitment-predicate-v1: "):
        statements.make_statement(
            subjects=[("m", "ab" * 32)],
            predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
            predicate=predicate,
        )


def test_unknown_predicate_type_is_refused_unless_allowed():
    kwargs = {"subjects": [("m", "ab" * 32)], "predicate_type": "https://x/y", "predicate": {}}
    with pytest.raises(SchemaError, match="unknown predicateType 'https://x/y'; known: "):
        statements.make_statement(**kwargs)
    assert statements.make_statement(**kwargs, allow_unknown_predicate=True)["predicate"] == {}


def test_expected_predicate_type(data_dir, golden_public_key):
    env = dsse.read_envelope(data_dir / "commitment-v1.dsse.json")
    with pytest.raises(SchemaError, match="expected 'https://mapguard.dev/verification-result/v1'"):
        statements.verify_statement(
            env, golden_public_key, expected_predicate_type=statements.RESULT_PREDICATE_TYPE
        )


def test_signed_garbage_is_refused_after_the_signature(private_key):
    not_json = dsse.sign_envelope(b"\xff not json", statements.PAYLOAD_TYPE, private_key)
    with pytest.raises(InputError, match="signed statement: not valid UTF-8"):
        statements.verify_statement(not_json, private_key.public_key())
    dup = dsse.sign_envelope(b'{"_type": 1, "_type": 2}', statements.PAYLOAD_TYPE, private_key)
    with pytest.raises(InputError, match="duplicate JSON object key '_type'"):
        statements.verify_statement(dup, private_key.public_key())
    bad_schema = dsse.sign_envelope(b'{"_type": "x"}', statements.PAYLOAD_TYPE, private_key)
    with pytest.raises(SchemaError, match="statement-v1"):
        statements.verify_statement(bad_schema, private_key.public_key())


def test_signature_is_checked_before_the_payload_is_parsed(private_key, other_private_key):
    # An invalid payload signed by the wrong key must fail on the signature, not on parsing.
    env = dsse.sign_envelope(b"\xff not json", statements.PAYLOAD_TYPE, other_private_key)
    with pytest.raises(SignatureError):
        statements.verify_statement(env, private_key.public_key())


def test_payload_type_must_be_in_toto(private_key, commitment_statement):
    env = dsse.sign_envelope(
        canonical.canonical_bytes(commitment_statement), "application/json", private_key
    )
    with pytest.raises(SignatureError, match="application/vnd.in-toto\\+json"):
        statements.verify_statement(env, private_key.public_key())


def test_register_predicate_type():
    assert statements.COMMITMENT_PREDICATE_TYPE in statements.list_predicate_types()
    with pytest.raises(InputError, match="already registered"):
        statements.register_predicate_type(
            statements.COMMITMENT_PREDICATE_TYPE, "result-predicate-v1"
        )
    with pytest.raises(InputError, match="unknown schema 'nope'"):
        statements.register_predicate_type("https://x/z", "nope")
    statements.register_predicate_type(
        statements.RESULT_PREDICATE_TYPE, "result-predicate-v1"
    )  # idempotent
