"""RemoteBackend against real servers on 127.0.0.1: answers, faults, the log, resume, templates.

The model is a small fixed linear classifier (answers in milliseconds); the servers are
tests/_oip_server.py (Open Inference Protocol, faults on purpose) in a thread.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from verification._errors import SuspectError
from verification.backends import (
    HttpOptions,
    ModuleBackend,
    load_suspect,
    open_endpoint,
    read_query_log,
)

FAST = HttpOptions(timeout=5, retries=2, backoff=0.01, max_wait=2)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()


def _open(url, log, *, budget=500, options=FAST, **kwargs):
    kwargs.setdefault("num_classes", 10)
    return open_endpoint(url, input_shape=(3, 32, 32), log_path=log, budget=budget,
                         binding={"claim_nonce": "c"}, options=options, **kwargs)  # fmt: skip


def _entries(log):
    return [e for e in read_query_log(log)[1] if e["type"] == "exchange"]


def test_answers_are_the_local_models_and_every_exchange_is_logged(net, oip_server, tmp_path):
    x = torch.rand(70, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with oip_server(net, side=32, num_classes=10) as server:
        with _open(server.url, tmp_path / "q.jsonl", options=HttpOptions(batch_size=32)) as b:
            got = b.query(x)
            summary = b.log.summary()
    assert torch.equal(got, ModuleBackend(net).query(x))  # FP32 logits round-trip exactly
    kinds = [(e["kind"], e["index"], e["images"]) for e in _entries(tmp_path / "q.jsonl")]
    assert kinds == [("metadata", None, 0), ("probe", 0, 2), ("query", 1, 32),
                     ("query", 2, 32), ("query", 3, 6)]  # fmt: skip
    assert (summary.requests, summary.queries, summary.failures) == (4, 72, 0)
    assert server.state.images == 72


@pytest.mark.parametrize(
    ("faults", "statuses"),
    [
        (["", "500", "503"], [500, 503, 200]),
        (["", "429:1"], [429, 200]),
        (["", "close"], [None, 200]),
    ],
)
def test_transient_failures_are_retried_and_logged(net, oip_server, tmp_path, faults, statuses):
    with oip_server(net, side=32, num_classes=10, faults=faults) as server:
        with _open(server.url, tmp_path / "q.jsonl") as backend:
            t0 = time.monotonic()
            backend.query(torch.rand(3, 3, 32, 32))
            waited = time.monotonic() - t0
            summary = backend.log.summary()
    queried = [e for e in _entries(tmp_path / "q.jsonl") if e["kind"] == "query"]
    assert [e["status"] for e in queried] == statuses
    assert [e["attempt"] for e in queried] == list(range(len(statuses)))
    assert summary.retries == summary.failures == len(statuses) - 1
    if "429:1" in faults:
        assert waited >= 1.0  # Retry-After honoured


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("truncated", "is not valid JSON"),
        ("wrong-rows", "for 3 images"),
        ("429:30", "more than --max-retry-wait"),
        ("sleep:3", "no answer within 1 s"),
    ],
)
def test_faults_end_the_run_in_one_line_and_stay_in_the_log(
    net, oip_server, tmp_path, fault, message
):
    options = HttpOptions(timeout=1, retries=0, backoff=0.01, max_wait=2)
    with oip_server(net, side=32, num_classes=10, faults=["", fault]) as server:
        backend = _open(server.url, tmp_path / "q.jsonl", options=options)
        with pytest.raises(SuspectError, match=message) as info:
            backend.query(torch.rand(3, 3, 32, 32))
        backend.close()
    assert "\n" not in str(info.value)
    last = _entries(tmp_path / "q.jsonl")[-1]
    assert last["kind"] == "query" and last["error"] and last["response"] is None


def test_probe_checks_the_class_count_and_the_credentials(net, oip_server, tmp_path, monkeypatch):
    with oip_server(net, side=32, num_classes=10, faults=["wrong-classes"]) as server:
        with pytest.raises(SuspectError, match="outputs 9 classes, the watermark has 10"):
            _open(server.url, tmp_path / "a.jsonl")
    with oip_server(net, side=32, num_classes=10, token="s3cret") as server:
        with pytest.raises(SuspectError, match="refused the credentials \\(HTTP 401\\)"):
            _open(server.url, tmp_path / "b.jsonl")
        monkeypatch.setenv("SUSPECT_TOKEN", "s3cret")
        _open(server.url, tmp_path / "c.jsonl", auth_env="SUSPECT_TOKEN").close()
        (tmp_path / "token").write_text("Authorization: Bearer s3cret\n")
        _open(server.url, tmp_path / "d.jsonl", auth_file=tmp_path / "token").close()
    assert b"s3cret" not in (tmp_path / "c.jsonl").read_bytes()


def test_unreachable_tls_and_bad_urls_fail_in_one_line(oip_server, net, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    once = HttpOptions(retries=0, timeout=2)
    with pytest.raises(SuspectError, match="cannot reach 127.0.0.1"):
        _open(f"http://127.0.0.1:{port}/v2/models/m/infer", tmp_path / "a.jsonl", options=once)
    with oip_server(net, side=32, num_classes=10) as server:
        tls = server.url.replace("http://", "https://")
        with pytest.raises(SuspectError, match="TLS failure talking to 127.0.0.1"):
            _open(tls, tmp_path / "b.jsonl", options=once)
    with pytest.raises(SuspectError, match="credentials"):
        _open("http://user:pw@127.0.0.1:1/v2/models/m", tmp_path / "c.jsonl")
    with pytest.raises(SuspectError, match="not an Open Inference Protocol model URL"):
        _open("http://127.0.0.1:1/predict", tmp_path / "d.jsonl")


def test_budget_is_hard_and_resume_replays_without_asking(net, oip_server, tmp_path):
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    log = tmp_path / "q.jsonl"
    opts = HttpOptions(batch_size=10)
    with oip_server(net, side=32, num_classes=10) as server:
        backend = _open(server.url, log, budget=25, options=opts)
        with pytest.raises(SuspectError, match="query budget exhausted: 22 of 25"):
            backend.query(x)
        backend.close()
        asked = server.state.images
        with pytest.raises(SuspectError, match="pass --resume"):
            _open(server.url, log, options=opts)
        with _open(server.url, log, options=opts, resume=True) as again:
            got = again.query(x)
            assert again.replayed == 3 and again.sent == 2  # probe + 2 batches from the log
        assert server.state.images == asked + 20
        with _open(server.url, log, options=opts, resume=True) as third:
            with pytest.raises(SuspectError, match="does not match this verification at request"):
                third.query(x.flip(0))
    assert torch.equal(got, ModuleBackend(net).query(x))


def test_nondeterministic_answers_are_reported(net, oip_server, tmp_path):
    with oip_server(net, side=32, num_classes=10, noise=0.5) as server:
        with _open(server.url, tmp_path / "q.jsonl") as backend:
            backend.query(torch.rand(8, 3, 32, 32))
            report = backend.recheck()
    assert report["deterministic"] is False and report["changed_answers"] >= 1
    assert report["max_abs_difference"] > 1e-4


def test_request_template_reaches_another_json_api(net, oip_server, tmp_path):
    template = tmp_path / "api.json"
    template.write_text(json.dumps({
        "schema": "mapguard-request-template-v1", "body": {"instances": "$images"},
        "images": {"encoding": "nested", "layout": "NCHW"},
        "answer": {"pointer": "/predictions", "kind": "probabilities"}}))  # fmt: skip
    x = torch.rand(5, 3, 32, 32)
    with oip_server(net, side=32, num_classes=10) as server:
        backend = load_suspect(f"{server.base}/predict", input_shape=(3, 32, 32), num_classes=10,
                               log_path=tmp_path / "q.jsonl", budget=50, binding={},
                               request_template=template)  # fmt: skip
        with backend:
            got = backend.query(x)
    assert backend.wire.name == "request-template"
    assert torch.allclose(got, ModuleBackend(net).query(x), atol=1e-6)


def test_max_qps_paces_the_requests(net, oip_server, tmp_path):
    paced = HttpOptions(batch_size=10, max_qps=100.0)
    with oip_server(net, side=32, num_classes=10) as server:
        with _open(server.url, tmp_path / "q.jsonl", options=paced) as backend:
            t0 = time.monotonic()
            backend.query(torch.rand(40, 3, 32, 32))  # 4 requests of 10 images at 100 images/s
            elapsed = time.monotonic() - t0
    assert elapsed >= 0.3  # the probe's and three requests' shares of a second, at least


def test_an_answer_beyond_the_size_bound_ends_the_run(net, oip_server, tmp_path, monkeypatch):
    """The endpoint is the accused's: an answer is read in chunks and never past the bound."""
    from verification._backends import _remote_http

    monkeypatch.setattr(_remote_http, "MAX_RESPONSE_BYTES", 2_000)  # a real answer is larger
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with oip_server(net, side=32, num_classes=10) as server:
        with pytest.raises(SuspectError, match="exceeds 2,000 bytes"):
            with _open(server.url, tmp_path / "q.jsonl") as b:
                b.query(x)
    assert "exceeds" in _entries(tmp_path / "q.jsonl")[-1]["error"]
