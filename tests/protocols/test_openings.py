from __future__ import annotations

import copy
import random

import pytest

from protocols import canonical, dsse, openings, statements
from protocols.errors import CommitmentError, InputError, SchemaError


@pytest.fixture(scope="module")
def golden(data_dir, golden_public_key):
    env = dsse.read_envelope(data_dir / "commitment-v1.dsse.json")
    stmt = statements.verify_statement(env, golden_public_key)
    watermark = canonical.read_json(data_dir / "watermark-v1.json")
    return stmt, watermark


def test_golden_watermark_opens_golden_commitment(golden):
    stmt, watermark = golden
    openings.check_openings(stmt["predicate"], watermark)
    assert watermark["commitment_statement_sha256"] == statements.statement_digest(stmt)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda w: w["secrets"][1].update(secret="00" * 32), "secret does not open"),
        (lambda w: w["secrets"][0]["trigger"].update(size=5), "trigger does not open"),
        (lambda w: w["verification_set"]["indices"].append(7), "verification_set does not open"),
        (lambda w: w["openings"]["secret"].update(nonce="11" * 32), "secret does not open"),
        (lambda w: w["model"].update(sha256="ef" * 32), "model sha256: committed"),
    ],
)
def test_any_revealed_change_is_caught(golden, edit, fragment):
    stmt, watermark = golden
    changed = copy.deepcopy(watermark)
    edit(changed)
    with pytest.raises(CommitmentError) as info:
        openings.check_openings(stmt["predicate"], changed)
    assert fragment in str(info.value)


def test_all_problems_are_listed(golden):
    stmt, watermark = golden
    changed = copy.deepcopy(watermark)
    changed["trigger_family"]["parameters"]["size"] = 8
    changed["method"]["name"] = "other"
    with pytest.raises(CommitmentError) as info:
        openings.check_openings(stmt["predicate"], changed)
    message = str(info.value)
    assert "trigger does not open" in message
    assert "trigger family: committed" in message
    assert "method: committed 'map-watermark', revealed 'other'" in message


def test_malformed_documents_are_schema_errors(golden):
    stmt, watermark = golden
    broken = copy.deepcopy(watermark)
    del broken["openings"]
    with pytest.raises(SchemaError, match="watermark-file-v1: \\$: 'openings' is a required"):
        openings.check_openings(stmt["predicate"], broken)


def test_make_commitments_round_trip(golden):
    _, watermark = golden
    public, opened = openings.make_commitments(watermark, rng=random.Random(1))
    assert all(set(v) == {"digest", "algorithm"} for v in public.values())
    assert {p: o["digest"] for p, o in opened.items()} == {
        p: v["digest"] for p, v in public.items()
    }
    assert public != openings.make_commitments(watermark)[0]  # fresh nonces by default


def test_committed_values_need_core_fields():
    with pytest.raises(InputError, match="'trigger_family'"):
        openings.committed_values({"secrets": [], "verification_set": {}})
