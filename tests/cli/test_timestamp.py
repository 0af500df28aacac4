"""``mapguard timestamp`` end to end against a real TSA served on 127.0.0.1 (tests/_tsa.py),
then ``mapguard check --timestamp --tsa-cert``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from verification import timestamps


@pytest.fixture(scope="module")
def setup(tsa, tmp_path_factory):
    d = tmp_path_factory.mktemp("ts-cli")
    return tsa.Authority.create(d / "tsa"), tsa.write_commitment(d / "owner")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(res, code=2) -> str:
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapguard: error: "), res.output
    return lines[0]


def test_timestamp_then_check_end_to_end(tsa, setup, tmp_path):
    authority, commitment = setup
    out = tmp_path / "commitment.tsr"
    with tsa.serve(authority) as (url, seen):
        res = _run("timestamp", commitment.path, "--tsa", url, "--tsa-cert", authority.chain,
                   "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen == ["application/timestamp-query"]
    assert "token verified with its certificate" in res.output
    digest = timestamps.commitment_digest(commitment.statement)
    assert digest in res.output
    assert timestamps.read_token(out.read_bytes()).digest == digest  # the TSA's reply, as DER

    base = ("check", commitment.path, "--pubkey", commitment.pubkey, "--timestamp", out,
            "--tsa-cert", authority.chain)  # fmt: skip
    early = _run(*base, "--suspect-first-seen", "2099-01-01")
    assert early.exit_code == 0, early.output
    assert "ok    timestamp" in early.output
    assert f"order: The order is established: {timestamps.PREDATES}" in early.output
    late = _run(*base, "--suspect-first-seen", "2020-01-01T00:00:00Z", "--json")
    assert late.exit_code == 0, late.output
    doc = json.loads(late.output)
    assert doc["ok"] and doc["timestamp"]["digest"] == digest
    assert doc["order"]["established"] is False and "not before" in doc["order"]["sentence"]


def test_timestamp_without_tsa_cert_writes_an_unchecked_token(tsa, setup, tmp_path):
    authority, commitment = setup
    with tsa.serve(authority) as (url, _):
        res = _run("timestamp", commitment.path, "--tsa", url, "--out", tmp_path / "c.tsr")
    assert res.exit_code == 0, res.output
    assert "not checked (no --tsa-cert)" in res.output


def test_check_with_a_token_but_no_tsa_cert_is_one_line(tsa, setup, tmp_path):
    authority, commitment = setup
    token = tmp_path / "c.tsr"
    token.write_bytes(authority.token_for(b"x"))
    line = _one_line_error(_run("check", commitment.path, "--pubkey", commitment.pubkey,
                                "--timestamp", token))  # fmt: skip
    assert "needs the TSA's certificate (--tsa-cert" in line


def test_check_fails_with_another_tsa_certificate(tsa, setup, tmp_path):
    authority, commitment = setup
    other = tsa.Authority.create(tmp_path / "other", name="Other TSA")
    token = tmp_path / "c.tsr"
    with tsa.serve(authority) as (url, _):
        assert _run("timestamp", commitment.path, "--tsa", url, "--out", token).exit_code == 0
    res = _run("check", commitment.path, "--pubkey", commitment.pubkey, "--timestamp", token,
               "--tsa-cert", other.chain)  # fmt: skip
    assert res.exit_code == 1 and "FAIL  timestamp" in res.output
    # ... and mapguard timestamp refuses to write a reply that does not verify
    with tsa.serve(authority) as (url, _):
        res = _run("timestamp", commitment.path, "--tsa", url, "--tsa-cert", other.chain,
                   "--out", tmp_path / "new.tsr")  # fmt: skip
    assert "does not verify" in _one_line_error(res)
    assert not (tmp_path / "new.tsr").exists()


def test_tsa_errors_are_one_line(tsa, setup, tmp_path):
    authority, commitment = setup
    with tsa.serve(authority, status=503) as (url, _):
        res = _run("timestamp", commitment.path, "--tsa", url, "--out", tmp_path / "c.tsr")
    assert "answered HTTP 503" in _one_line_error(res)
    res = _run("timestamp", commitment.path, "--tsa", "ftp://x", "--out", tmp_path / "c.tsr")
    assert "not an http:// or https:// URL" in _one_line_error(res)
    res = _run("timestamp", commitment.path, "--tsa", "http://127.0.0.1:9/", "--out",
               tmp_path / "c.tsr")  # fmt: skip
    assert "cannot reach the TSA" in _one_line_error(res)
    assert not (tmp_path / "c.tsr").exists()


def test_bad_first_seen_is_one_line(setup):
    _, commitment = setup
    res = _run("check", commitment.path, "--pubkey", commitment.pubkey,
               "--suspect-first-seen", "May 2026")  # fmt: skip
    assert "--suspect-first-seen 'May 2026' is not an RFC 3339 time" in _one_line_error(res)
