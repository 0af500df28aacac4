"""verification/_backends/worker.py: code-format suspects run in an isolated worker process.

The files here are real attack files (see ``MaliciousFiles`` in tests/_malicious.py) and real
misbehaving models; nothing of the worker is mocked.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import pytest
import torch

from verification._errors import SuspectError
from verification.backends import WorkerBackend, WorkerLimits, load_suspect

FAST = WorkerLimits(start_timeout=60, request_timeout=60)


def _landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


class Misbehaving(torch.nn.Module):
    """``mode``: "nan" answers NaN, "short" answers one row, "flat" answers [N], "spin" loops."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.lin = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x.flatten(1))
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "short":
            return y[:1]
        if self.mode == "flat":
            return y[:, 0]
        if self.mode == "spin":
            i = 0
            while i >= 0:
                i = (i + 1) % 1000
        return y


def _script(module: torch.nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


def _pickle_running(code: str, path) -> str:
    """A pickle that runs ``code`` (Python statements) when it is unpickled."""

    class Payload:
        def __reduce__(self):
            return (exec, (code,))

    torch.save(Payload(), path)
    return str(path)


@pytest.fixture(scope="module")
def net() -> Net:
    return Net().eval()


def test_benign_files_answer_exactly_like_the_module(net, tmp_path, malicious):
    x = torch.rand(7, 3, 32, 32)
    expected = torch.softmax(net(x), dim=1)
    files = [malicious.export(net, tmp_path / "m.pt2"), _script(net, tmp_path / "m.ts")]
    for path in files:
        with load_suspect(path, num_classes=10, limits=FAST) as backend:
            assert isinstance(backend, WorkerBackend)
            assert torch.equal(backend.query(x), expected)
            assert backend.isolation.startswith("isolated worker")
            if _landlock_abi() >= 1:
                assert "landlock" in backend.isolation


ATTACKS = ["pt2_sample_inputs", "pt2_weights", "torchscript_setstate", "torchscript_forward"]


def _attack_file(malicious, name, net, tmp_path):
    marker = tmp_path / f"{name}.marker"
    ext = ".pt2" if name.startswith("pt2") else ".ts"
    return getattr(malicious, name)(net, tmp_path / f"{name}{ext}", marker), marker


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_files_never_write_and_answer_correctly_or_are_refused(
    name, net, tmp_path, malicious
):
    path, marker = _attack_file(malicious, name, net, tmp_path)
    x = torch.rand(5, 3, 32, 32)
    try:
        with load_suspect(path, num_classes=10, limits=FAST) as backend:
            assert torch.allclose(backend.query(x), torch.softmax(net(x), dim=1), atol=1e-5)
    except SuspectError as exc:  # the file's own code failed in the sandbox: one clear line
        assert "\n" not in str(exc) and "Permission denied" in str(exc)
    assert not marker.exists()


@pytest.mark.parametrize("name", ATTACKS)
def test_positive_control_each_attack_file_writes_when_loaded_unsafely(
    name, net, tmp_path, malicious
):
    # Proves the files above are real attacks: loaded in-process (in a child python, so this
    # test process stays clean) the same file writes its marker.
    path, marker = _attack_file(malicious, name, net, tmp_path)
    code = (
        "import sys, torch; from verification.backends import load_suspect; "
        "b = load_suspect(sys.argv[1], allow_unsafe_load=True, num_classes=10); "
        "b.query(torch.rand(2, 3, 32, 32))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert marker.exists()


@pytest.mark.skipif(_landlock_abi() < 1, reason="needs Landlock to block writes to open dirs")
def test_code_in_a_pickle_cannot_write_anywhere(tmp_path):
    marker = tmp_path / "pickle.marker"
    code = f"open({str(marker)!r}, 'w').write('x')"
    with pytest.raises(SuspectError, match="PermissionError"):
        load_suspect(_pickle_running(code, tmp_path / "w.pt"), limits=FAST)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("nan", "non-finite"),
        ("short", r"answered shape \[1, 10\] for 2 images"),
        ("flat", r"float logits \[N, C\]"),
    ],
)
def test_misbehaving_answers_are_refused(mode, message, tmp_path):
    path = _script(Misbehaving(mode), tmp_path / f"{mode}.ts")
    with pytest.raises(SuspectError, match=message):
        load_suspect(path, limits=FAST)


def test_a_spinning_model_hits_the_time_limit(tmp_path):
    path = _script(Misbehaving("spin"), tmp_path / "spin.ts")
    start = time.monotonic()
    with pytest.raises(SuspectError, match=r"no answer within the time limit \(3"):
        load_suspect(path, limits=WorkerLimits(start_timeout=60, request_timeout=3))
    assert time.monotonic() - start < 30


def test_a_sleeping_loader_hits_the_start_limit(tmp_path):
    path = _pickle_running("import time; time.sleep(600)", tmp_path / "sleep.pt")
    start = time.monotonic()
    with pytest.raises(SuspectError, match="while loading the model: no answer"):
        load_suspect(path, limits=WorkerLimits(start_timeout=4))
    assert time.monotonic() - start < 30


def test_a_crashing_worker_is_reported(tmp_path):
    path = _pickle_running("import os; os._exit(3)", tmp_path / "crash.pt")
    with pytest.raises(SuspectError, match="exited with code 3"):
        load_suspect(path, limits=FAST)


def test_a_worker_flooding_every_descriptor_is_refused(tmp_path):
    code = (
        "import os\n"
        "for fd in range(1, 12):\n"
        "    try: os.write(fd, b'\\xff' * 200000)\n"
        "    except OSError: pass\n"
    )
    start = time.monotonic()
    with pytest.raises(SuspectError, match="not the protocol|malformed|announced"):
        load_suspect(_pickle_running(code, tmp_path / "flood.pt"), limits=FAST)
    assert time.monotonic() - start < 60


def test_a_memory_hog_hits_the_memory_limit(tmp_path):
    code = "x = bytearray(4 << 30)"
    limits = WorkerLimits(start_timeout=60, memory_bytes=2 << 30)
    with pytest.raises(SuspectError, match="MemoryError"):
        load_suspect(_pickle_running(code, tmp_path / "hog.pt"), limits=limits)


def test_the_worker_gets_no_environment_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("MAPGUARD_TEST_SECRET", "hunter2")
    code = (
        "import os, socket\n"
        "assert 'MAPGUARD_TEST_SECRET' not in os.environ, 'environment leaked'\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.settimeout(2)\n"
        "s.connect(('127.0.0.1', 9))\n"
    )
    with pytest.raises(SuspectError) as info:
        load_suspect(_pickle_running(code, tmp_path / "net.pt"), limits=FAST)
    text = str(info.value)
    assert "environment leaked" not in text
    assert any(e in text for e in ("PermissionError", "ConnectionRefused", "OSError", "unreach"))


def test_worker_processes_and_folders_are_gone_after_close(net, tmp_path, malicious):
    backend = load_suspect(malicious.export(net, tmp_path / "m.pt2"), limits=FAST)
    proc, workdir = backend._proc, backend._workdir
    backend.close()
    assert proc.poll() is not None
    assert not os.path.exists(workdir)
