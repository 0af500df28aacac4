"""Loading suspect model files of self-describing formats, detected by content."""

from __future__ import annotations

import importlib.util
import os
import warnings
import zipfile
from pathlib import Path

import torch

from protocols.fileio import sha256_file
from verification._backends.base import DEFAULT_INPUT_SHAPE, QueryBackend
from verification._backends.module import ModuleBackend
from verification._backends.worker import WorkerBackend, WorkerLimits, isolation_available
from verification._errors import SuspectError, UnsafeFormatError

__all__ = [
    "CODE_FORMATS",
    "SUSPECT_FORMATS",
    "detect_suspect_format",
    "load_suspect",
]


def _zip_format(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        fmt_entries = [n for n in names if n.rsplit("/", 1)[-1] == "archive_format"]
        if fmt_entries and archive.read(fmt_entries[0]).strip().startswith(b"pt2"):
            return "torch.export"
    parts = {p for n in names for p in n.split("/")}
    if "code" in parts and "constants.pkl" in parts:
        return "torchscript"
    if "data.pkl" in parts:
        return "pickle"
    raise SuspectError(
        f"'{path}' is a zip archive but neither a torch.export (.pt2), TorchScript nor "
        "torch.save file"
    )


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


#: Top-level fields of an ONNX ``ModelProto`` (onnx.proto) and their protobuf wire types.
_ONNX_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_MAX_IR_VERSION = 64


def _read_varint(fh) -> int | None:  # noqa: ANN001 - a binary file
    value = 0
    for shift in range(0, 64, 7):
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def _is_onnx(path: Path, size: int) -> bool:
    """An ONNX ``ModelProto``: the whole file is a sequence of its top-level fields (each with
    its wire type, lengths within the file), with an ``ir_version`` in range and a ``graph``.
    Only tags and lengths are read here; the graph itself is checked in the isolated worker."""
    seen: dict[int, int] = {}
    with open(path, "rb") as fh:
        while fh.tell() < size:
            key = _read_varint(fh)
            if key is None or _ONNX_MODEL_FIELDS.get(key >> 3) != key & 7:
                return False
            value = _read_varint(fh)
            if value is None or (key & 7 == 2 and fh.tell() + value > size):
                return False
            if key & 7 == 2:
                fh.seek(value, os.SEEK_CUR)
            seen[key >> 3] = value
    return 1 <= seen.get(1, 0) <= _ONNX_MAX_IR_VERSION and 7 in seen


SUSPECT_FORMATS = ("torch.export", "torchscript", "pickle", "onnx", "safetensors")
ONNX_INSTALL = "pip install 'mapguard[onnx]'"


def detect_suspect_format(path: str | os.PathLike[str]) -> str:
    """Name the format of ``path`` from its content, not its extension.

    Returns one of ``"torch.export"``, ``"torchscript"``, ``"pickle"``, ``"onnx"``,
    ``"safetensors"``.

    Raises:
        SuspectError: Missing, unreadable or unrecognised file.
    """
    p = Path(path)
    if not p.is_file():
        raise SuspectError(f"suspect model file '{p}' does not exist or is not a file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
        if zipfile.is_zipfile(p):
            return _zip_format(p)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SuspectError(f"cannot read suspect model file '{p}': {exc}") from exc
    size = p.stat().st_size
    if _is_safetensors(head, size):
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    try:
        if _is_onnx(p, size):
            return "onnx"
    except OSError as exc:
        raise SuspectError(f"cannot read suspect model file '{p}': {exc}") from exc
    raise SuspectError(
        f"'{p}' is not a model file this verifier reads; supported: "
        f"{', '.join(SUSPECT_FORMATS)} (detected by content)"
    )


UNSAFE_FLAG = "--unsafe-load"
CODE_FORMATS = ("torch.export", "torchscript", "pickle", "onnx")


class _OnnxSession:
    """An onnxruntime session (CPU) called like a module; only behind the unsafe flag."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.cpu().float().numpy()})[0]
        return torch.from_numpy(out)


def _load_in_process(
    path: Path, fmt: str, input_shape: tuple[int, ...]
) -> tuple[object, int | None]:
    """Load a code format in *this* process: only behind the explicit unsafe flag."""
    if fmt == "onnx":
        return _OnnxSession(path), None
    if fmt == "torch.export":
        program = torch.export.load(str(path))
        names = set(program.graph_signature.user_inputs)
        shapes = [n.meta["val"].shape for n in program.graph.nodes if n.name in names]
        fixed = None
        if len(shapes) == 1 and isinstance(shapes[0][0], int):
            fixed = int(shapes[0][0])
        if len(shapes) == 1 and tuple(shapes[0][1:]) != tuple(input_shape):
            got = [s if isinstance(s, int) else "N" for s in shapes[0]]
            raise SuspectError(
                f"suspect model takes input {got}, the watermark needs "
                f"[N, {', '.join(map(str, input_shape))}]"
            )
        return program.module(), fixed
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu"), None
    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise SuspectError(
            f"'{path}' holds a {type(obj).__name__}, not a model; a state dict needs the model's "
            "code — export the model with torch.export instead"
        )
    return obj, None


def load_suspect(
    path: str | os.PathLike[str],
    *,
    labels_only: bool = False,
    allow_unsafe_load: bool = False,
    num_classes: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    limits: WorkerLimits | None = None,
    input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE,
) -> QueryBackend:
    """Open a suspect model file of a *code* format as a query backend, and probe it.

    ``torch.export`` archives, TorchScript and pickles can all run code when loaded, and ONNX
    models are parsed by onnxruntime's native code (extra ``mapguard[onnx]``), so they are
    loaded in an isolated worker process (:class:`WorkerBackend`; an ONNX model referencing
    external data or a non-standard operator domain is refused there). Only with
    ``allow_unsafe_load=True`` are they loaded in this process instead (the backend's
    :attr:`~QueryBackend.isolation` then says ``"UNSAFE LOAD"``). Safetensors files hold weights
    without an architecture: they are mapguard checkpoints and refused here.

    Args:
        path: The suspect model file.
        labels_only: Answer labels only (black-box label access).
        allow_unsafe_load: Load in this process (runs code from the file!).
        num_classes: If given, the probe checks the suspect outputs this many classes.
        batch_size: Largest batch per forward pass.
        device: Device to run on (unsafe in-process loading only).
        limits: Limits of the isolated worker.
        input_shape: Per-image input the watermark's images have (``(3, S, S)``).

    Raises:
        SuspectError: Unreadable, unsupported, or not fitting ``[N, *input_shape]`` / classes.
        UnsafeFormatError: No process isolation here and no ``allow_unsafe_load``.
    """
    p = Path(path)
    fmt = detect_suspect_format(p)
    if fmt == "safetensors":
        raise SuspectError(
            f"'{p}' is a safetensors file (weights without model code): this is a mapguard "
            "checkpoint; load it with the mapguard CLI ('mapguard verify'), or give the verifier "
            "a torch.export (.pt2) or TorchScript file"
        )
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise SuspectError(f"'{p}' is an ONNX model: reading it needs onnxruntime ({ONNX_INSTALL})")
    digest = "sha256:" + sha256_file(p)
    if not allow_unsafe_load:
        if not isolation_available():
            raise UnsafeFormatError(
                f"'{p}' is a {fmt} file: loading it runs code from the file, and this platform "
                f"offers no process isolation; pass {UNSAFE_FLAG} only for a file you trust"
            )
        backend: QueryBackend = WorkerBackend(
            p, fmt, labels_only=labels_only, batch_size=batch_size, limits=limits, digest=digest,
            input_shape=input_shape,
        )  # fmt: skip
    else:
        try:
            module, fixed = _load_in_process(p, fmt, tuple(input_shape))
        except SuspectError:
            raise
        except Exception as exc:  # a corrupt file surfaces as any exception from torch
            raise SuspectError(
                f"cannot load {fmt} file '{p}': {type(exc).__name__}: {exc}"
            ) from exc
        backend = ModuleBackend(
            module,
            labels_only=labels_only,
            batch_size=batch_size,
            device=device,
            digest=digest,
            fixed_batch=fixed,
            input_shape=tuple(input_shape),
            description=f"{fmt} file {p.name} (UNSAFE LOAD in process)",
        )
        backend.isolation = "UNSAFE LOAD: loaded in the verifier's own process"
    try:
        backend.probe(num_classes=num_classes)
    except BaseException:
        backend.close()
        raise
    return backend
