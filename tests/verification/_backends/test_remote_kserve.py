"""RemoteBackend against KServe's own ``ModelServer`` (kserve 0.21) on 127.0.0.1.

kserve cannot be installed into the project's environment (it pins protobuf 6 and psutil 5; the
ONNX stack needs protobuf 7), so this test runs only when ``MAPGUARD_TEST_KSERVE_PYTHON`` names
a Python that has it (e.g. ``python -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install
kserve``); the server is ``benchmarks/remote_kserve_server.py`` serving the tiny checkpoint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from mapguard.checkpoint import load_checkpoint
from verification.backends import ModuleBackend, open_endpoint

KSERVE_PYTHON = os.environ.get("MAPGUARD_TEST_KSERVE_PYTHON")
SCRIPT = Path(__file__).parents[3] / "benchmarks" / "remote_kserve_server.py"

pytestmark = pytest.mark.skipif(
    not KSERVE_PYTHON, reason="MAPGUARD_TEST_KSERVE_PYTHON (a Python with kserve) is not set"
)


@pytest.fixture
def kserve_url(tiny_checkpoint):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = sysconfig.get_paths()["purelib"]
    proc = subprocess.Popen([KSERVE_PYTHON, str(SCRIPT), str(tiny_checkpoint), str(port), site],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # bounded: 60 s to start
            try:
                urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        yield f"{base}/v2/models/suspect/infer"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_kserve_model_server_answers_like_the_local_file(kserve_url, tiny_checkpoint, tmp_path):
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with open_endpoint(kserve_url, input_shape=(3, 32, 32), num_classes=10, budget=100,
                       log_path=tmp_path / "q.jsonl", binding={}) as backend:  # fmt: skip
        got = backend.query(x)
        assert backend.wire.name == "open-inference-protocol"
    module, _ = load_checkpoint(tiny_checkpoint)
    assert torch.equal(got, ModuleBackend(module).query(x))
