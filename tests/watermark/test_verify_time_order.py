"""``mapguard verify --timestamp --tsa-cert --suspect-first-seen``: the signed result records
whether an RFC 3161 token (from a real TSA on 127.0.0.1, tests/_tsa.py) certifies that the
commitment predates the suspect; the verdict itself does not change."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from verification import timestamps


@pytest.fixture(scope="module")
def stamped(tsa, embedded, tmp_path_factory):
    """The tiny watermark's commitment time-stamped by a TSA made here; a token on another
    commitment of the same TSA."""
    d = tmp_path_factory.mktemp("verify-ts")
    authority = tsa.Authority.create(d / "tsa")
    token, other = d / "commitment.tsr", d / "other.tsr"
    with tsa.serve(authority) as (url, _):
        for commitment, out in ((embedded.file("commitment.dsse.json"), token),
                                (tsa.write_commitment(d / "x").path, other)):  # fmt: skip
            res = CliRunner().invoke(
                cli,
                [
                    "timestamp",
                    str(commitment),
                    "--tsa",
                    url,
                    "--tsa-cert",
                    str(authority.chain),
                    "--out",
                    str(out),
                ],
            )
            assert res.exit_code == 0, res.output
    return authority, token, other


def _verify(embedded, tmp_path, *extra):
    out = tmp_path / "result.json"
    args = ["verify", embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"),
            "--claim-nonce", "arbiter-nonce-1", "--out", out, *extra]  # fmt: skip
    return CliRunner().invoke(cli, [str(a) for a in args]), out


@pytest.mark.parametrize(
    ("first_seen", "established"), [("2099-01-01", True), ("2020-01-01T00:00:00Z", False)]
)
def test_the_result_records_the_certified_order(stamped, embedded, tmp_path, first_seen,
                                                established):  # fmt: skip
    authority, token, _ = stamped
    res, out = _verify(embedded, tmp_path, "--timestamp", token, "--tsa-cert", authority.chain,
                       "--suspect-first-seen", first_seen)  # fmt: skip
    assert res.exit_code == 0, res.output  # evidenced either way: the order is beside the verdict
    order = json.loads(out.read_text())["time_order"]
    assert order["established"] is established
    assert (timestamps.PREDATES in order["sentence"]) is established
    assert order["token_sha256"] and order["tsa_certificate_sha256"].startswith("SHA256:")
    assert f"time order   {order['sentence']}" in res.output


def test_a_token_on_another_commitment_stops_before_any_query(stamped, embedded, tmp_path):
    authority, _, other = stamped
    res, out = _verify(embedded, tmp_path, "--timestamp", other, "--tsa-cert", authority.chain)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "imprint" in res.output or "digest" in res.output
    assert not out.exists()


def test_without_a_token_the_order_is_not_established(embedded, tmp_path):
    res, out = _verify(embedded, tmp_path, "--suspect-first-seen", "2099-01-01")
    assert res.exit_code == 0, res.output
    order = json.loads(out.read_text())["time_order"]
    assert order == {"established": False, "sentence": order["sentence"],
                     "first_seen": "2099-01-01T00:00:00Z"}  # fmt: skip
    assert "owner's own clock" in order["sentence"]
