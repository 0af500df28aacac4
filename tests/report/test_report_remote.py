"""The report of a remote verification: the endpoint and the query log in the chain of custody,
the log file checked against the digest the signed result records."""

from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def remote(report_inputs, oip_server, tmp_path_factory):
    """``(result path, endpoint URL)``: the carrier suspect served on 127.0.0.1, verified."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(report_inputs.dir / "suspect.ts")).eval()
    out = tmp_path_factory.mktemp("remote-report") / "remote.json"
    with oip_server(model, side=32, num_classes=10) as server:
        res = _run("verify", server.url, "--watermark", report_inputs.watermark, "--key",
                   report_inputs.private_key_path, "--out", out, "--claim-nonce",
                   "report-claim")  # fmt: skip
    assert res.exit_code == 0, res.output
    return out, server.url


def _report(inputs, result, out):
    return _run("report", result, "--commitment", inputs.commitment, "--watermark",
                inputs.watermark, "--pubkey", inputs.pubkey, "--out", out, "--json")  # fmt: skip


def test_report_shows_the_endpoint_and_the_checked_query_log(
    report_inputs, remote, html_tools, tmp_path
):
    result, url = remote
    out = tmp_path / "r.html"
    res = _report(report_inputs, result, out)
    assert res.exit_code == 0, res.output
    text = " ".join(html_tools.parse_report(out.read_text()).text.split())
    assert "Query log (the suspect is a remote endpoint)" in text
    assert url in text and "remote.querylog.jsonl" in text
    assert "holds the" in text and "queries of" in text  # the log file matched its digest
    assert "Exchanges / failures / retries" in text and "the same answers to re-asked" in text
    assert "It concerns only the answers the endpoint" in text
    log = result.with_name("remote.querylog.jsonl")
    log.write_bytes(log.read_bytes().replace(b'"kind":"probe"', b'"kind":"query"', 1))
    tampered = _report(report_inputs, result, tmp_path / "t.html")
    text = " ".join(html_tools.parse_report((tmp_path / "t.html").read_text()).text.split())
    assert tampered.exit_code == 0, tampered.output
    assert "NOT CHECKED OR NOT MATCHING" in text and "sha256" in text
