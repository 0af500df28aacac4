"""The isolated worker: loads a *code* model file (``.pt2``, TorchScript, pickle) and answers
queries over a pipe. Run only by :mod:`verification._backends.worker`, never imported by it.

This file is a standalone script (stdlib + torch + numpy): it does not import ``verification``
so that nothing of the arbiter's process state reaches the sandbox. Order of events:

1. the protocol pipes are moved off fds 0/1 (fd 1 becomes ``/dev/null``, so a model that prints
   cannot corrupt the protocol);
2. torch is imported and the loaders are warmed up (trusted code, before the sandbox);
3. the sandbox is applied to this process (inherited by anything it starts): ``no_new_privs``
   and a Landlock ruleset that denies every file-system write and TCP bind/connect and limits reads
   to the Python installation and system libraries; resource limits were set by the parent;
4. the suspect is read from an already-open read-only file descriptor and loaded;
5. requests are answered until ``exit`` or end of input.

Wire format (both directions; no pickle): ``b"MGW1"``, a 4-byte little-endian length, a UTF-8
JSON header of that length, then ``header["nbytes"]`` raw bytes (little-endian tensor data).
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import struct
import sys

MAGIC = b"MGW1"
MAX_HEADER = 1 << 16

# Landlock (linux/landlock.h)
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_FS_EXECUTE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
_FS_WRITE = (
    (1 << 1)  # WRITE_FILE
    | (1 << 4)  # REMOVE_DIR
    | (1 << 5)  # REMOVE_FILE
    | (1 << 6)  # MAKE_CHAR
    | (1 << 7)  # MAKE_DIR
    | (1 << 8)  # MAKE_REG
    | (1 << 9)  # MAKE_SOCK
    | (1 << 10)  # MAKE_FIFO
    | (1 << 11)  # MAKE_BLOCK
    | (1 << 12)  # MAKE_SYM
)
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets | signals
_READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache", "/proc/self", "/sys")


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int) -> tuple[dict, bytes]:
    magic, size = struct.unpack("<4sI", _read_exact(fd, 8))
    if magic != MAGIC or size > MAX_HEADER:
        raise EOFError
    header = json.loads(_read_exact(fd, size))
    return header, _read_exact(fd, int(header.get("nbytes", 0)))


def _send(fd: int, header: dict, payload: bytes = b"") -> None:
    raw = json.dumps({**header, "nbytes": len(payload)}).encode()
    data = MAGIC + struct.pack("<I", len(raw)) + raw + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _landlock(read_roots: list[str]) -> str:
    """Apply the Landlock ruleset; returns a description ("" when unavailable)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return ""
    read = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    fs = read | _FS_WRITE | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fields = [fs] + ([_NET_ALL] if abi >= 4 else []) + ([_SCOPE_ALL] if abi >= 6 else [])
    attr = struct.pack(f"<{len(fields)}Q", *fields)
    ruleset = libc.syscall(_SYS_CREATE, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return ""
    for root in read_roots:
        try:
            fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        allowed = read if os.path.isdir(root) else _FS_EXECUTE | _FS_READ_FILE
        rule = struct.pack("<Qi", allowed, fd)
        libc.syscall(
            _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0)
        )
        os.close(fd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return ""
    if libc.syscall(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        return ""
    os.close(ruleset)
    parts = [f"landlock abi {abi}: no file writes, reads limited to the Python installation"]
    parts.append("no TCP" if abi >= 4 else "")
    return ", ".join(p for p in parts if p)


def _read_roots(extra: list[str]) -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    roots.update(p for p in [*sys.path, *extra] if p and os.path.isdir(p))
    roots.add("/dev/null")
    roots.add("/dev/urandom")
    return sorted(roots) + list(_READ_ROOTS)


def _load(fmt: str, data: bytes):  # noqa: ANN202 - torch types only known after import
    import torch

    buf = io.BytesIO(data)
    if fmt == "torch.export":
        program = torch.export.load(buf)
        names = set(program.graph_signature.user_inputs)
        shapes = [n.meta["val"].shape for n in program.graph.nodes if n.name in names]
        info: dict = {"input_shape": None, "fixed_batch": None}
        if len(shapes) == 1:
            dims = [s if isinstance(s, int) else None for s in shapes[0]]
            info["input_shape"] = dims[1:] if all(d is not None for d in dims[1:]) else None
            info["fixed_batch"] = dims[0]
        return program.module(), info
    if fmt == "torchscript":
        return torch.jit.load(buf, map_location="cpu"), {"input_shape": None, "fixed_batch": None}
    if fmt == "pickle":
        obj = torch.load(buf, map_location="cpu", weights_only=False)
        if not isinstance(obj, torch.nn.Module):
            raise TypeError(f"the pickle holds a {type(obj).__name__}, not a torch module")
        return obj, {"input_shape": None, "fixed_batch": None}
    raise ValueError(f"unknown format {fmt!r}")


def _forward(module, fixed_batch, header: dict, payload: bytes) -> tuple[dict, bytes]:  # noqa: ANN001
    import numpy as np
    import torch

    shape = [int(s) for s in header["shape"]]
    x = torch.from_numpy(np.frombuffer(payload, dtype="<f4").copy()).reshape(shape)
    outs = []
    step = fixed_batch or int(header.get("batch_size", 256))
    with torch.inference_mode():
        for chunk in x.split(step):
            n = chunk.shape[0]
            if fixed_batch and n < fixed_batch:
                chunk = torch.cat([chunk, chunk.new_zeros((fixed_batch - n, *chunk.shape[1:]))])
            out = module(chunk)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the model returned {type(out).__name__}, not a tensor")
            outs.append(out[:n])
    y = torch.cat(outs).detach().cpu().contiguous()
    if y.is_floating_point():
        y = y.float()
    arr = y.numpy()
    return {"ok": True, "dtype": arr.dtype.str, "shape": list(arr.shape)}, arr.tobytes()


def _error(exc: BaseException) -> dict:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
    return {"ok": False, "error": f"{type(exc).__name__}: {text}"[:300]}


def main() -> int:
    fmt, suspect_fd, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    extra_roots = [p for p in sys.argv[4:] if os.path.isabs(p)]
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    import tempfile

    import numpy  # noqa: F401

    tempfile.tempdir = os.getcwd()  # the private directory; loaders ask for a temp dir
    import torch
    import torch.export  # noqa: F401
    import torch.export.pt2_archive._package  # noqa: F401  (imports create cache dirs: trusted)

    torch.set_num_threads(max(1, threads))
    with open(suspect_fd, "rb", closefd=True) as fh:
        data = fh.read()
    sandbox = _landlock(_read_roots(extra_roots))
    try:
        module, info = _load(fmt, data)
        del data
        if isinstance(module, torch.nn.Module):
            try:
                module.eval()
            except NotImplementedError:  # exported GraphModules fix the mode at export time
                pass
    except BaseException as exc:  # noqa: BLE001 - every failure goes back as an error frame
        _send(proto_out, {**_error(exc), "stage": "load", "sandbox": sandbox})
        return 0
    _send(proto_out, {"ok": True, "ready": True, "sandbox": sandbox, **info})
    while True:
        try:
            header, payload = _recv(proto_in)
        except EOFError:
            return 0
        if header.get("op") == "exit":
            return 0
        try:
            reply, raw = _forward(module, info["fixed_batch"], header, payload)
        except BaseException as exc:  # noqa: BLE001
            reply, raw = _error(exc), b""
        _send(proto_out, reply, raw)


if __name__ == "__main__":
    sys.exit(main())
