"""The report with a trusted timestamp: the certified time and its source, and the order with the
suspect's first known date; without a token the commitment's time stays the owner's own clock.
The TSA is real (``openssl ts -reply``, tests/_tsa.py) and the token comes from
``mapguard timestamp`` over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from protocols import canonical, dsse, statements
from verification import timestamps


@pytest.fixture(scope="module")
def stamped(tsa, report_inputs, tmp_path_factory):
    """``(authority, token path)``: the report inputs' commitment, time-stamped over HTTP."""
    authority = tsa.Authority.create(tmp_path_factory.mktemp("report-tsa"))
    token = report_inputs.dir / "commitment.tsr"
    with tsa.serve(authority) as (url, _):
        res = _run("timestamp", report_inputs.commitment, "--tsa", url, "--tsa-cert",
                   authority.chain, "--out", token, "--force")  # fmt: skip
    assert res.exit_code == 0, res.output
    return authority, token


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _report(inputs, out, *extra):
    return _run("report", inputs.result, "--commitment", inputs.commitment, "--watermark",
                inputs.watermark, "--pubkey", inputs.pubkey, "--out", out, *extra)  # fmt: skip


def _text(html_tools, out: Path) -> str:
    return " ".join(html_tools.parse_report(out.read_text()).text.split())


def test_certified_time_predates_the_first_known_date(report_inputs, stamped, html_tools, tmp_path):
    authority, token = stamped
    out = tmp_path / "r.html"
    res = _report(report_inputs, out, "--timestamp", token, "--tsa-cert", authority.chain,
                  "--suspect-first-seen", "2099-01-01", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    checks = json.loads(res.output)["signatures"]
    assert [(c["role"], c["status"]) for c in checks][:3] == [
        ("verification result", "verified"),
        ("commitment", "verified"),
        ("commitment timestamp", "verified"),
    ]
    certified = timestamps.read_token(token.read_bytes()).time
    text = _text(html_tools, out)
    assert f"The order is established: {timestamps.PREDATES}" in text
    assert f"Certified time (RFC 3161 time-stamp, checked at report time) {certified} ±1 s" in text
    assert "Commitment certified (RFC 3161 time-stamp authority 'CN=Test TSA')" in text
    assert "Commitment created (the owner's own clock, as signed)" in text
    assert "Suspect first known (as given by the arbiter) 2099-01-01T00:00:00Z" in text
    for path in (token, authority.chain):  # both in the chain of custody and the commands
        assert str(path) in out.read_text()
    assert "--suspect-first-seen 2099-01-01" in text


def test_certified_time_after_the_first_known_date_is_not_an_order(
    report_inputs, stamped, html_tools, tmp_path
):
    authority, token = stamped
    out = tmp_path / "r.html"
    res = _report(report_inputs, out, "--timestamp", token, "--tsa-cert", authority.chain,
                  "--suspect-first-seen", "2020-01-01T00:00:00Z")  # fmt: skip
    assert res.exit_code == 0, res.output
    text = _text(html_tools, out)
    assert timestamps.PREDATES not in text
    assert "not established: the commitment is certified at" in text and "not before" in text


def test_without_a_token_the_time_is_the_owners_clock(report_inputs, html_tools, tmp_path):
    out = tmp_path / "r.html"
    res = _report(report_inputs, out, "--suspect-first-seen", "2099-01-01")
    assert res.exit_code == 0, res.output
    text = _text(html_tools, out)
    assert timestamps.PREDATES not in text
    assert "no trusted timestamp was checked, so the commitment's time" in text
    assert "is the owner's own clock" in text
    assert "The commitment's time is the signer's own statement" in text
    assert "Created (as stated by the signer)" in text


def test_token_on_another_commitment_is_refused_or_marked(
    tsa, report_inputs, stamped, html_tools, tmp_path
):
    authority, _ = stamped
    bad = tmp_path / "other.tsr"
    bad.write_bytes(authority.token_for(canonical.canonical_bytes({"other": 1})))
    args = ("--timestamp", bad, "--tsa-cert", authority.chain, "--suspect-first-seen", "2099-01-01")
    res = _report(report_inputs, tmp_path / "r.html", *args)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "commitment timestamp" in res.output and "not this commitment's digest" in res.output
    out = tmp_path / "marked.html"
    assert _report(report_inputs, out, *args, "--allow-unverified").exit_code == 0
    parsed = html_tools.parse_report(out.read_text())
    assert any("UNVERIFIED: the commitment timestamp" in b for _, b in parsed.banners)
    assert timestamps.PREDATES not in " ".join(parsed.text.split())


def test_token_without_tsa_cert_is_one_line(report_inputs, stamped, tmp_path):
    _, token = stamped
    res = _report(report_inputs, tmp_path / "r.html", "--timestamp", token)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "needs the TSA's certificate (--tsa-cert" in res.output
    assert not (tmp_path / "r.html").exists()


def test_the_token_certifies_the_digest_results_refer_to(report_inputs, stamped):
    _, token = stamped
    envelope = dsse.read_envelope(report_inputs.commitment)
    statement = canonical.loads(dsse.verify_envelope(envelope, _public(report_inputs)))
    digest = timestamps.read_token(token.read_bytes()).digest
    assert digest == statements.statement_digest(statement)
    assert digest == report_inputs.result_predicate["watermark"]["commitment_digest"]


def _public(inputs):
    from protocols import keys

    return keys.load_public_key(inputs.pubkey)
