"""``mapguard verify URL``: a suspect behind an Open Inference Protocol endpoint on 127.0.0.1.

The served model is the embedded fixture's protected checkpoint, so the remote p-value can be
compared with the local file's; the query log is checked by ``mapguard check``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.checkpoint import load_checkpoint
from protocols import statements

NONCE = "remote-claim-1"


def _verify(*args):
    return CliRunner().invoke(cli, ["verify", *map(str, args), "--claim-nonce", NONCE])


def _predicate(path) -> dict:
    envelope = json.loads(path.read_text())
    return statements.decode_unverified(envelope, source="result")["predicate"]


@pytest.fixture(scope="module")
def protected(embedded):
    module, _ = load_checkpoint(embedded.file("protected.pt"))
    return module.eval()


@pytest.fixture(scope="module")
def local(embedded, tmp_path_factory):
    """The local file's result under the same claim nonce (signed)."""
    out = tmp_path_factory.mktemp("local") / "local.json"
    res = _verify(embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"),
                  "--key", embedded.owner.private, "--out", out, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _remote(embedded, url, out, *extra):
    return _verify(url, "--watermark", embedded.file("owner.wm"), "--key",
                   embedded.owner.private, "--out", out, *extra)  # fmt: skip


def test_remote_pvalue_equals_local_and_check_binds_the_log(
    embedded, protected, local, oip_server, tmp_path
):
    out = tmp_path / "remote.json"
    with oip_server(protected, side=32, num_classes=10) as server:
        res = _remote(embedded, server.url, out, "--batch-size", 256)
    assert res.exit_code == 0, res.output
    assert "query log" in res.output and server.url in res.output
    pred = _predicate(out)
    assert pred["test"]["pvalue"] == local["test"]["pvalue"]
    assert pred["test"]["per_secret"] == local["test"]["per_secret"]
    assert pred["suspect"]["endpoint"] == server.url and "sha256" not in pred["suspect"]
    log = tmp_path / "remote.querylog.jsonl"
    block = pred["query_log"]
    assert block["name"] == log.name and block["failures"] == 0
    assert block["queries"] == server.state.images  # every image sent is in the log
    assert block["nondeterminism"]["deterministic"] is True
    ok = CliRunner().invoke(cli, ["check", str(out), "--pubkey", str(embedded.owner.public),
                                  "--watermark", str(embedded.file("owner.wm"))])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "query log" in ok.output
    kept = tmp_path / "elsewhere.jsonl"
    kept.write_bytes(log.read_bytes())
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"status":200', b'"status":201')
    log.write_bytes(b"".join(lines))
    bad = CliRunner().invoke(cli, ["check", str(out), "--pubkey", str(embedded.owner.public)])
    assert bad.exit_code == 1 and "FAIL  query log" in bad.output, bad.output
    moved = CliRunner().invoke(cli, ["check", str(out), "--pubkey", str(embedded.owner.public),
                                     "--query-log", str(kept)])  # fmt: skip
    assert moved.exit_code == 0, moved.output


def test_interrupted_run_resumes_without_requerying_to_the_same_result(
    embedded, protected, local, oip_server, tmp_path
):
    out = tmp_path / "r.json"
    with oip_server(protected, side=32, num_classes=10) as server:
        first = _remote(embedded, server.url, out, "--max-queries", 700)  # an API quota
        assert first.exit_code == 2, first.output
        assert "query budget exhausted" in first.output and "--resume" in first.output
        assert not out.exists()  # nothing half-written
        sent = server.state.images
        assert 0 < sent <= 700
        again = _remote(embedded, server.url, out)
        assert again.exit_code == 2 and "pass --resume" in again.output  # no silent overwrite
        done = _remote(embedded, server.url, out, "--resume", "--json")
        assert done.exit_code == 0, done.output
    pred = json.loads(done.output)
    assert pred["test"]["pvalue"] == local["test"]["pvalue"]
    assert pred["test"]["per_secret"] == local["test"]["per_secret"]
    assert pred["query_log"]["queries"] == server.state.images  # nothing asked twice
    assert pred["query_log"]["sessions"] == 2


def test_resume_refuses_a_log_of_another_claim(embedded, protected, oip_server, tmp_path):
    out = tmp_path / "r.json"
    with oip_server(protected, side=32, num_classes=10) as server:
        res = _remote(embedded, server.url, out, "--max-queries", 100)
        assert res.exit_code == 2
        other = CliRunner().invoke(cli, [
            "verify", server.url, "--watermark", str(embedded.file("owner.wm")), "--out",
            str(out), "--claim-nonce", "another-claim", "--resume"])  # fmt: skip
    assert other.exit_code == 2
    assert "belongs to another verification" in other.output
    assert "claim_nonce" in other.output


def test_remote_options_are_refused_for_a_file(embedded, tmp_path):
    res = _verify(embedded.file("protected.pt"), "--watermark", embedded.file("owner.wm"),
                  "--out", tmp_path / "r.json", "--resume")  # fmt: skip
    assert res.exit_code == 2 and "only for a suspect behind an http(s) URL" in res.output


def test_a_nondeterministic_endpoint_is_reported(embedded, protected, oip_server, tmp_path):
    out = tmp_path / "r.json"
    with oip_server(protected, side=32, num_classes=10, noise=0.05) as server:
        res = _verify(server.url, "--watermark", embedded.file("owner.wm"), "--out", out)
    assert res.exit_code in (0, 1), res.output
    assert "WARNING" in res.output and "not deterministic" in res.output
    same = json.loads(out.read_text())["query_log"]["nondeterminism"]
    assert same["deterministic"] is False and same["changed_answers"] >= 1
