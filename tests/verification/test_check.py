"""``check``: signature first, schema, subject, and that the commitment opens to the watermark.

Tampering with any byte of a commitment, a signed result or a watermark file is detected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import canonical, dsse, statements
from verification.check import check
from verification.watermark_file import read_watermark

_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def signed_result(embedded, tmp_path_factory) -> Path:
    from mapguard.watermark import verify_suspect

    out = tmp_path_factory.mktemp("result") / "result.json"
    verify_suspect(
        embedded.file("protected.pt"),
        embedded.file("owner.wm"),
        claim_nonce="test-claim",
        key=embedded.owner.key(),
        out=out,
    )
    return out


def _names(res) -> list[str]:
    return [item.name for item in res.items if item.ok]


def test_commitment_checks_with_watermark_and_artifact(embedded):
    res = check(
        embedded.file("commitment.dsse.json"),
        embedded.owner.public,
        embedded.file("owner.wm"),
        artifact=embedded.file("protected.pt"),
    )
    assert res.ok and res.kind == "commitment", res.items
    assert _names(res) == [
        "signature",
        "schema",
        "signer",
        "subject",
        "watermark",
        "commitment",
        "triggers",
        "verification set",
    ]
    assert res.statement_digest == read_watermark(embedded.file("owner.wm")).commitment_digest
    assert {name for name, _ in res.subjects} == {"protected.pt", "protected.pt2"}
    export = check(
        embedded.file("commitment.dsse.json"),
        embedded.owner.public,
        artifact=embedded.file("protected.pt2"),
    )
    assert export.ok


def test_signed_result_checks(embedded, signed_result):
    res = check(signed_result, embedded.owner.public, embedded.file("owner.wm"))
    assert res.ok and res.kind == "result", res.items
    assert check(signed_result, embedded.owner.public, artifact=embedded.file("protected.pt")).ok


def test_wrong_public_key_fails_at_the_signature(embedded, other_owner, signed_result):
    for path in (embedded.file("commitment.dsse.json"), signed_result):
        res = check(path, other_owner.public)
        assert not res.ok and [i.name for i in res.items] == ["signature"]


def test_commitment_for_a_different_model_fails(embedded, tmp_path):
    """A validly signed commitment naming another model does not match this watermark."""
    key = embedded.owner.key()
    env = dsse.read_envelope(embedded.file("commitment.dsse.json"))
    stmt = canonical.loads(dsse.verify_envelope(env, key.public_key()))
    stmt["subject"] = [{"name": "other.pt", "digest": {"sha256": "ab" * 32}}]
    stmt["predicate"]["model"]["sha256"] = "ab" * 32
    forged = tmp_path / "other.dsse.json"
    dsse.write_envelope(forged, statements.sign_statement(stmt, key))
    alone = check(forged, embedded.owner.public)
    assert alone.ok  # a valid commitment in itself ...
    res = check(forged, embedded.owner.public, embedded.file("owner.wm"))
    assert not res.ok and res.items[-1].name == "commitment"  # ... but not to this watermark
    wrong_file = check(
        embedded.file("commitment.dsse.json"),
        embedded.owner.public,
        artifact=embedded.original,
    )
    assert not wrong_file.ok and wrong_file.items[-1].name == "subject"


def test_unsigned_plain_result_fails(embedded, tmp_path):
    from mapguard.watermark import verify_suspect

    out = tmp_path / "plain.json"
    verify_suspect(
        embedded.file("protected.pt"),
        embedded.file("owner.wm"),
        claim_nonce="test-claim",
        out=out,
    )
    res = check(out, embedded.owner.public)
    assert not res.ok and res.items[0].name == "signature"


def _flip(src: Path, dst: Path, index: int, bit: int) -> None:
    data = bytearray(src.read_bytes())
    data[index % len(data)] ^= 1 << bit
    dst.write_bytes(bytes(data))


@_SETTINGS
@given(index=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_commitment_is_detected(embedded, tmp_path, index, bit):
    bad = tmp_path / "c.json"
    _flip(embedded.file("commitment.dsse.json"), bad, index, bit)
    assert not check(bad, embedded.owner.public, embedded.file("owner.wm")).ok


@_SETTINGS
@given(index=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_result_is_detected(embedded, signed_result, tmp_path, index, bit):
    bad = tmp_path / "r.json"
    _flip(signed_result, bad, index, bit)
    assert not check(bad, embedded.owner.public, embedded.file("owner.wm")).ok


@_SETTINGS
@given(index=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_watermark_is_detected(embedded, tmp_path, index, bit):
    bad = tmp_path / "owner.wm"
    _flip(embedded.file("owner.wm"), bad, index, bit)
    res = check(embedded.file("commitment.dsse.json"), embedded.owner.public, bad)
    assert not res.ok and res.items[-1].name == "watermark"


def test_cli_check_exit_codes(embedded, other_owner, tmp_path):
    from click.testing import CliRunner

    from mapguard._cli import cli

    runner = CliRunner()
    commitment = str(embedded.file("commitment.dsse.json"))
    wm = str(embedded.file("owner.wm"))
    ok = runner.invoke(
        cli, ["check", commitment, "--pubkey", str(embedded.owner.public), "--watermark", wm]
    )
    assert ok.exit_code == 0, ok.output
    assert "all checks hold" in ok.output
    bad = runner.invoke(cli, ["check", commitment, "--pubkey", str(other_owner.public)])
    assert bad.exit_code == 1 and "FAIL" in bad.output
    missing = runner.invoke(
        cli, ["check", str(tmp_path / "nope.json"), "--pubkey", str(embedded.owner.public)]
    )
    assert missing.exit_code == 2
    copy = tmp_path / "copy.wm"
    shutil.copy(wm, copy)
    assert (
        runner.invoke(
            cli,
            ["check", commitment, "--pubkey", str(embedded.owner.public), "--watermark", str(copy)],
        ).exit_code
        == 0
    )
