"""ONNX suspects (issue 16): detected by content, run by onnxruntime in the isolated worker,
refused when they reference external data (a path: any file of the arbiter) or a custom domain.

The attack files are built in the tests (``MaliciousFiles.onnx_*`` in tests/_malicious.py); the
positive control proves that external data really reads the file it names.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from mapguard.export import export_onnx  # noqa: E402
from verification._errors import SuspectError  # noqa: E402
from verification.backends import (  # noqa: E402
    WorkerBackend,
    WorkerLimits,
    detect_suspect_format,
    load_suspect,
)

FAST = WorkerLimits(start_timeout=60, request_timeout=60)
#: 40 bytes: exactly the external bias (10 float32) the attack files ask for.
SECRET = b"ARBITER-PRIVATE-KEY-0123456789abcdefXYZ!"


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.lin = torch.nn.Linear(4 * 30 * 30, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> tuple[Net, Path]:
    net = Net().eval()
    path = tmp_path_factory.mktemp("onnx") / "model.bin"  # not .onnx: detected by content
    return net, export_onnx(net, path)


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    return path


def test_onnx_is_detected_by_content(onnx_file, tmp_path):
    assert detect_suspect_format(onnx_file[1]) == "onnx"
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(onnx_file[1].read_bytes()[:1000])
    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_bytes(b"\x08\x07 hello, not a model")
    for path in (truncated, not_onnx):
        with pytest.raises(SuspectError, match="not a model file this verifier reads"):
            detect_suspect_format(path)


def test_an_onnx_file_answers_like_the_module_in_the_worker(onnx_file):
    net, path = onnx_file
    x = torch.rand(7, 3, 32, 32)
    with load_suspect(path, num_classes=10, limits=FAST, batch_size=3) as backend:
        assert isinstance(backend, WorkerBackend)
        assert backend.isolation.startswith("isolated worker")
        got = backend.query(x)
    assert torch.allclose(got, torch.softmax(net(x), dim=1), atol=1e-6)
    assert torch.equal(got.argmax(1), net(x).argmax(1))


def test_onnxruntime_lives_in_the_python_installation():
    # The worker's Landlock read roots are sys.path and the prefixes: onnxruntime's native
    # libraries must be under them (they are, in site-packages), nothing else is opened up.
    spec = importlib.util.find_spec("onnxruntime")
    libs = Path(spec.origin).resolve().parent
    roots = [Path(p).resolve() for p in sys.path if p] + [Path(sys.prefix).resolve()]
    assert any(libs.is_relative_to(r) for r in roots)
    assert list(libs.rglob("*.so*")) and all(
        any(p.resolve().is_relative_to(r) for r in roots) for p in libs.rglob("*.so*")
    )


@pytest.mark.parametrize("where", ["absolute", "traversal", "beside", "nested"])
def test_external_data_is_refused_and_never_read(where, tmp_path, malicious):
    secret = _secret(tmp_path)
    location = {
        "absolute": str(secret),
        "traversal": "../" * 12 + str(secret).lstrip("/"),
        "beside": "secret.bin",
        "nested": str(secret),
    }[where]
    path = malicious.onnx_external_data(tmp_path / "evil.onnx", location, nested=where == "nested")
    with pytest.raises(SuspectError, match="references external data") as info:
        load_suspect(path, num_classes=10, limits=FAST)
    text = str(info.value)
    assert "\n" not in text and SECRET.decode() not in text


def test_positive_control_external_data_reads_the_file_it_names(tmp_path, malicious):
    # Loaded by onnxruntime from its own path, the attack file's bias is the secret's bytes.
    secret = _secret(tmp_path)
    path = malicious.onnx_external_data(tmp_path / "evil.onnx", secret.name)
    code = (
        "import sys, numpy as np, onnxruntime as ort; "
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']); "
        "sys.stdout.buffer.write(s.run(None, {'x': np.zeros((1, 3, 32, 32), np.float32)})[0]"
        ".tobytes())"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout == SECRET


def test_a_custom_op_domain_is_refused(tmp_path, malicious):
    path = malicious.onnx_custom_domain(tmp_path / "custom.onnx")
    with pytest.raises(SuspectError, match="operator domain 'evil.custom'"):
        load_suspect(path, num_classes=10, limits=FAST)


def test_without_onnxruntime_the_message_says_what_to_install(onnx_file, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(SuspectError, match=r"pip install 'mapguard\[onnx\]'") as info:
        load_suspect(onnx_file[1], limits=FAST)
    assert "\n" not in str(info.value)


def test_unsafe_load_runs_onnx_in_process(onnx_file):
    net, path = onnx_file
    x = torch.rand(3, 3, 32, 32)
    with load_suspect(path, allow_unsafe_load=True, num_classes=10) as backend:
        assert backend.isolation.startswith("UNSAFE LOAD")
        assert torch.allclose(backend.query(x), torch.softmax(net(x), dim=1), atol=1e-6)


def test_a_malformed_graph_is_refused_in_one_line(tmp_path):
    # Valid top-level fields (ir_version 10, a graph of 3 bytes) around a graph that is not one.
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x0a\x3a\x03\x0a\xff\xff")
    assert detect_suspect_format(path) == "onnx"
    with pytest.raises(SuspectError, match="not a valid ONNX model") as info:
        load_suspect(path, limits=FAST)
    assert "\n" not in str(info.value)
