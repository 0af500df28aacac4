"""The isolated worker: loads a suspect model file (``.pt2``, TorchScript, pickle: code; ONNX: a
graph for onnxruntime's native parser) and answers queries over a pipe. Run only by
:mod:`verification._backends.worker`, never imported by it.

This file is a standalone script (stdlib + torch + numpy, and onnxruntime for ONNX): it does not
import ``verification`` so that nothing of the arbiter's process state reaches the sandbox.
Order of events:

1. the protocol pipes are moved off fds 0/1 (fd 1 becomes ``/dev/null``, so a model that prints
   cannot corrupt the protocol);
2. torch is imported and the loaders are warmed up (trusted code, before the sandbox);
3. the sandbox is applied to this process (inherited by anything it starts): ``no_new_privs``
   and a Landlock ruleset that denies every file-system write and TCP bind/connect and limits reads
   to the Python installation and system libraries; resource limits were set by the parent;
4. the suspect is read from an already-open read-only file descriptor and loaded (an ONNX model
   is first walked field by field here, and refused if it references external data or uses an
   operator domain outside the ONNX standard; see :func:`_onnx_refusal`);
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


# ---- ONNX: a protobuf ModelProto, checked before onnxruntime parses it ------------------------
#: Operator domains of the ONNX standard; any other (custom ops, onnxruntime's ``com.microsoft``
#: contrib ops, model-local functions) is refused.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
# message -> {field number: message type of that field} (onnx.proto, ONNX 1.17); fields not
# listed are skipped by wire type. ``domain`` fields are checked against ONNX_DOMAINS; tensors
# for external data (``external_data`` = 13, ``data_location`` = 14, EXTERNAL = 1).
_ONNX_FIELDS = {
    "model": {7: "graph", 8: "opset", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "tensor": {},
    "sparse": {1: "tensor", 2: "tensor"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 9: "opset", 11: "attribute"},
    "opset": {},
}
_ONNX_DOMAIN_FIELD = {"opset": 1, "node": 7, "function": 10}
_ONNX_MAX_DEPTH = 64


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
    raise ValueError("varint too long")


def _fields(data: bytes, pos: int, end: int):  # noqa: ANN202 - a generator of tuples
    """Yield ``(field, wire type, value, start, stop)`` of one protobuf message, strictly."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        start = pos
        if wire == 0:
            value, pos = _varint(data, pos, end)
        elif wire == 2:
            value, start = _varint(data, pos, end)
            pos = start + value
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")
        if field < 1 or pos > end:
            raise ValueError("malformed field")
        yield field, wire, value, start, pos


def _onnx_refusal(data: bytes, kind: str = "model", pos: int = 0, end: int = -1,
                  depth: int = 0) -> str:  # fmt: skip
    """Why this ONNX model is refused ("" if it is not): external data or a non-standard
    domain anywhere (graphs nested in attributes, training graphs, functions included)."""
    end = len(data) if end < 0 else end
    if depth > _ONNX_MAX_DEPTH:
        raise ValueError("graphs nested too deeply")
    children, domain_field = _ONNX_FIELDS[kind], _ONNX_DOMAIN_FIELD.get(kind)
    for field, wire, value, start, stop in _fields(data, pos, end):
        if kind == "tensor" and (field == 13 or (field == 14 and value == 1)):
            return "a tensor references external data (a file path): refused"
        if field == domain_field and wire == 2:
            domain = data[start:stop].decode("utf-8", "replace")
            if domain not in ONNX_DOMAINS:
                return f"operator domain {domain[:60]!r} is not ONNX's own: refused"
        if field in children:
            if wire != 2:
                raise ValueError(f"field {field} of {kind} is not a message")
            why = _onnx_refusal(data, children[field], start, stop, depth + 1)
            if why:
                return why
    return ""


class _OnnxModel:
    """An onnxruntime session on the CPU, called like a module: float32 tensor in, tensor out."""

    def __init__(self, data: bytes, threads: int) -> None:
        import onnxruntime as ort

        try:
            why = _onnx_refusal(data)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"not a valid ONNX model ({exc})") from None
        if why:
            raise PermissionError(why)
        options = ort.SessionOptions()  # no custom-op libraries are ever registered
        options.intra_op_num_threads, options.inter_op_num_threads = max(1, threads), 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.load_model_format", "ONNX")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            got = ", ".join(f"{i.name}: {i.type}" for i in inputs)[:200]
            raise TypeError(f"the ONNX model must take one float tensor, it takes ({got})")
        self.input_name = inputs[0].name
        dims = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]
        self.info = {
            "input_shape": dims[1:] if dims and None not in dims[1:] else None,
            "fixed_batch": dims[0] if dims else None,
        }

    def __call__(self, x):  # noqa: ANN001, ANN204 - torch is imported lazily
        import numpy as np
        import torch

        out = self.session.run(None, {self.input_name: x.numpy().astype(np.float32)})[0]
        if not isinstance(out, np.ndarray):
            raise TypeError(f"the ONNX model returned {type(out).__name__}, not a tensor")
        return torch.from_numpy(np.ascontiguousarray(out))


def _load(fmt: str, data: bytes, threads: int):  # noqa: ANN202 - types known after import
    import torch

    if fmt == "onnx":
        model = _OnnxModel(data, threads)
        return model, model.info
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

    if fmt == "onnx":  # the native library is loaded before the sandbox, like torch's
        import onnxruntime  # noqa: F401

    torch.set_num_threads(max(1, threads))
    with open(suspect_fd, "rb", closefd=True) as fh:
        data = fh.read()
    sandbox = _landlock(_read_roots(extra_roots))
    try:
        module, info = _load(fmt, data, threads)
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
