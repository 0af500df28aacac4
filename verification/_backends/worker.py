"""Query backend over an isolated worker process, for model files whose loading runs code.

``.pt2`` archives (their graph may call any ATen operator, and their weights or sample inputs may
be pickles), TorchScript (code), pickles and ONNX models (onnxruntime: a native parser; external
data would read files) are never loaded in the verifier's process. The
worker (``worker_main.py`` next to this file, a standalone script run by path) runs:

- as a new process with an empty environment (only ``OMP_NUM_THREADS``, ``LC_ALL``, ``PATH``),
  ``python -I -B``, no inherited file descriptors except the suspect opened read-only, a private
  empty working directory, its own session (the whole group is killed at the end);
- with resource limits: CPU seconds, data segment (memory), file size 0, no core dumps;
- in a new network namespace (``unshare --net``) where the platform permits it;
- under Landlock (Linux >= 5.13): no file-system writes anywhere, reads limited to the Python
  installation and system libraries, no TCP (ABI >= 4);
- talking only through a pipe of raw tensors with JSON headers (no pickle; see the worker's
  docstring). Every answer is treated as untrusted: header size, dtype, shape, byte count and
  the value checks of :meth:`QueryBackend.query`; every read has a wall-clock deadline.

:attr:`WorkerBackend.isolation` says which of these held; it is recorded in the result.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from verification._backends.base import DEFAULT_INPUT_SHAPE, QueryBackend
from verification._errors import SuspectError

__all__ = ["WorkerBackend", "WorkerLimits", "isolation_available"]

_MAGIC = b"MGW1"
_MAX_HEADER = 1 << 16
_DTYPES = {
    "<f4": np.float32,
    "<f8": np.float64,
    "<f2": np.float16,
    "<i8": np.int64,
    "<i4": np.int32,
    "|u1": np.uint8,
    "|i1": np.int8,
    "|b1": np.bool_,
}
_MAX_CLASSES = 1_000_000
_SCRIPT = Path(__file__).with_name("worker_main.py")


@dataclass(frozen=True, kw_only=True)
class WorkerLimits:
    """Limits of the worker process.

    Attributes:
        cpu_seconds: CPU time for the whole life of the worker (RLIMIT_CPU).
        memory_bytes: Data segment limit (RLIMIT_DATA; heap and anonymous mappings).
        start_timeout: Wall-clock seconds for starting and loading the model.
        request_timeout: Wall-clock seconds for one batch.
        max_answer_bytes: Largest answer accepted for one batch.
        threads: torch threads in the worker.
    """

    cpu_seconds: int = 3600
    memory_bytes: int = 16 << 30
    start_timeout: float = 300.0
    request_timeout: float = 300.0
    max_answer_bytes: int = 256 << 20
    threads: int = 1


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """The ``unshare`` command line that gives a new network namespace here, or ``()``."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return ()
    for prefix in ((exe, "--net"), (exe, "--map-root-user", "--net")):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [*prefix, "--", "/bin/true"], env={}, capture_output=True, timeout=10
            )
            if done.returncode == 0:
                return prefix
    return ()


@functools.lru_cache(maxsize=1)
def _package_dirs() -> list[str]:
    """Source folders of this project's packages, readable in the worker so that a pickle of a
    mapguard model can import its classes (found, not imported: verification never imports
    mapguard). Everything else readable there is the Python installation itself."""
    dirs = []
    for name in ("mapguard", "verification", "protocols"):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                dirs.extend(str(Path(p).resolve()) for p in spec.submodule_search_locations)
    return dirs


def isolation_available() -> bool:
    """True where the worker can run with resource limits (POSIX with ``resource``)."""
    return os.name == "posix" and hasattr(resource, "RLIMIT_DATA")


def _limit(which: int, value: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(which)
        cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (cap, cap))


def _apply_limits(limits: WorkerLimits) -> None:  # runs in the child before exec
    _limit(resource.RLIMIT_CPU, limits.cpu_seconds)
    _limit(resource.RLIMIT_DATA, limits.memory_bytes)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_CORE, 0)


class _Stderr(threading.Thread):
    """Drains the worker's stderr, keeping only its last few kilobytes (a flood cannot block)."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.stream, self.tail = stream, b""

    def run(self) -> None:
        for block in iter(lambda: self.stream.read1(1 << 16), b""):
            self.tail = (self.tail + block)[-4096:]

    def last_line(self) -> str:
        lines = self.tail.decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:200] if lines else ""


def _kill(proc: subprocess.Popen, workdir: str) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, 9)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


class WorkerBackend(QueryBackend):
    """Query a code-format model file (``torch.export``, TorchScript, pickle) in a sandbox.

    Args:
        path: The model file.
        fmt: Its format, as :func:`detect_suspect_format` names it.
        labels_only: Answer labels instead of probabilities.
        batch_size: Largest batch per request.
        limits: Resource and time limits.
        digest: Public identifier (``"sha256:<hex>"`` of the file).
        input_shape: Per-image input shape to send.

    Raises:
        SuspectError: The worker cannot start, the file does not load, a limit is hit, or the
            worker answers anything malformed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: str,
        *,
        labels_only: bool = False,
        batch_size: int = 256,
        limits: WorkerLimits | None = None,
        digest: str | None = None,
        input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE,
    ) -> None:
        super().__init__(input_shape=input_shape, digest=digest, description=f"{fmt} file")
        self.description = f"{fmt} file {Path(path).name} (isolated worker)"
        self.labels_only, self.batch_size = bool(labels_only), int(batch_size)
        self.limits = limits or WorkerLimits()
        self._proc: subprocess.Popen | None = None
        self._start(Path(path), fmt)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _start(self, path: Path, fmt: str) -> None:
        if not isolation_available():
            raise SuspectError("no process isolation on this platform")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise SuspectError(f"cannot open suspect model file '{path}': {exc.strerror}") from None
        self._workdir = tempfile.mkdtemp(prefix="mapguard-worker-")
        os.chmod(self._workdir, 0o500)
        netns = _netns_prefix()
        cmd = [*netns, "--"] if netns else []
        cmd += [sys.executable, "-I", "-B", str(_SCRIPT), fmt, str(fd), str(self.limits.threads)]
        cmd += _package_dirs()
        env = {
            "OMP_NUM_THREADS": str(self.limits.threads),
            "LC_ALL": "C",
            "PATH": "/usr/bin:/bin",
            "CUDA_VISIBLE_DEVICES": "",
        }
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=self._workdir, pass_fds=(fd,), close_fds=True,
                start_new_session=True, preexec_fn=functools.partial(_apply_limits, self.limits),
            )  # fmt: skip
        except OSError as exc:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise SuspectError(f"cannot start the isolated worker: {exc}") from None
        finally:
            os.close(fd)
        self._finalizer = weakref.finalize(self, _kill, self._proc, self._workdir)
        self._stderr = _Stderr(self._proc.stderr)
        self._stderr.start()
        header, _ = self._receive(self.limits.start_timeout, 0, "loading the model")
        if not header.get("ok") or not header.get("ready"):
            self.close()
            raise SuspectError(
                f"cannot load {fmt} file '{path}' in the isolated worker: "
                f"{str(header.get('error', 'no ready message'))[:300]}"
            )
        self._sandbox = str(header.get("sandbox", ""))[:300]
        self.fixed_batch = _opt_int(header.get("fixed_batch"))
        self._netns = bool(netns)
        self.isolation = "isolated worker: " + self._describe_isolation()
        self._check_input_shape(header.get("input_shape"))

    def _check_input_shape(self, shape: object) -> None:
        if shape is None:
            return
        if not (isinstance(shape, list) and all(isinstance(s, int) for s in shape)):
            raise SuspectError("the isolated worker reported a malformed input shape")
        if tuple(shape) != tuple(self.input_shape):
            self.close()
            got = [self.fixed_batch or "N", *shape]
            raise SuspectError(
                f"suspect model takes input [{', '.join(map(str, got))}], the watermark "
                f"needs [N, {', '.join(map(str, self.input_shape))}]"
            )

    def close(self) -> None:
        """Stop the worker (it is also stopped when the backend is garbage-collected)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write(_frame({"op": "exit"}))
                proc.stdin.flush()
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer()

    def _describe_isolation(self) -> str:
        """What isolated the worker, in words (recorded in the verification result)."""
        limits = self.limits
        parts = [
            "separate process (empty environment, no inherited descriptors, private directory)",
            f"limits cpu {limits.cpu_seconds} s, memory {limits.memory_bytes >> 20} MiB, "
            "file size 0",
            "network namespace" if self._netns else "NO network namespace",
            self._sandbox or "NO Landlock (file-system writes limited only by file size 0)",
        ]
        return "; ".join(parts)

    # ---- queries -----------------------------------------------------------------------------
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous()
        header = {"op": "predict", "shape": list(x.shape), "batch_size": self.batch_size}
        self._send(header, x.numpy().tobytes())
        reply, payload = self._receive(self.limits.request_timeout, x.shape[0], "answering")
        if not reply.get("ok"):
            raise SuspectError(
                f"suspect model fails on a {list(x.shape)} float input in [0, 1] "
                f"({str(reply.get('error', ''))[:300]})"
            )
        logits = _tensor(reply, payload, x.shape[0])
        if logits.dim() != 2 or not logits.is_floating_point():
            raise SuspectError(
                f"suspect model must return float logits [N, C], got {list(logits.shape)} "
                f"{logits.dtype}"
            )
        if not torch.isfinite(logits).all():
            raise SuspectError("suspect model answered non-finite scores")
        probs = torch.softmax(logits.float(), dim=1)
        return probs.argmax(dim=1) if self.labels_only else probs

    def _send(self, header: dict, payload: bytes) -> None:
        proc = self._alive("receiving a query")
        try:
            proc.stdin.write(_frame(header, payload))
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._fail("receiving a query")

    def _receive(self, timeout: float, n: int, doing: str) -> tuple[dict, bytes]:
        proc = self._alive(doing)
        deadline = time.monotonic() + timeout
        read = functools.partial(self._read, proc.stdout.fileno(), deadline, doing)
        magic, size = struct.unpack("<4sI", read(8))
        if magic != _MAGIC or size > _MAX_HEADER:
            self._fail(doing, "it wrote something that is not the protocol")
        try:
            header = json.loads(read(size))
            nbytes = int(header.get("nbytes", 0))
        except (ValueError, TypeError, AttributeError):
            self._fail(doing, "it sent a malformed header")
        if not isinstance(header, dict) or not 0 <= nbytes <= self.limits.max_answer_bytes:
            self._fail(doing, f"it announced an answer of {nbytes} bytes")
        return header, read(nbytes)

    def _read(self, fd: int, deadline: float, doing: str, n: int) -> bytes:
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(doing, f"no answer within the time limit ({self._limit_of(doing)} s)")
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                self._fail(doing)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _limit_of(self, doing: str) -> float:
        return self.limits.start_timeout if doing.startswith("loading") else \
            self.limits.request_timeout  # fmt: skip

    def _alive(self, doing: str) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._fail(doing)
        return self._proc

    def _fail(self, doing: str, why: str = "") -> None:
        proc = self._proc
        self.close()
        if not why and proc is not None:
            code = proc.poll()
            why = f"it exited with code {code}" if code is not None else "it closed the pipe"
            last = self._stderr.last_line() if hasattr(self, "_stderr") else ""
            why += f" ({last})" if last else ""
        raise SuspectError(f"the isolated worker failed while {doing}: {why}")


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _frame(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps({**header, "nbytes": len(payload)}).encode()
    return _MAGIC + struct.pack("<I", len(raw)) + raw + payload


def _tensor(header: dict, payload: bytes, n: int) -> torch.Tensor:
    """Build a tensor from an untrusted answer, checking dtype, shape and size first."""
    dtype, shape = _DTYPES.get(header.get("dtype")), header.get("shape")
    if dtype is None:
        raise SuspectError(f"suspect answered an unsupported dtype {str(header.get('dtype'))[:20]}")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 2 and all(
        isinstance(s, int) and 0 <= s for s in shape
    )):  # fmt: skip
        raise SuspectError("suspect answered a malformed shape")
    if shape[0] != n or (len(shape) == 2 and not 1 <= shape[1] <= _MAX_CLASSES):
        raise SuspectError(f"suspect answered shape {shape} for {n} images")
    if int(np.prod(shape)) * np.dtype(dtype).itemsize != len(payload):
        raise SuspectError("suspect answer's size does not match its shape")
    return torch.from_numpy(np.frombuffer(payload, dtype=dtype).copy().reshape(shape))
