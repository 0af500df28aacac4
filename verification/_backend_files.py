"""Loading suspect model files of self-describing formats, detected by content."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from verification._backend_base import DEFAULT_INPUT_SHAPE
from verification._backend_module import ModuleBackend
from verification._errors import SuspectError, UnsafeFormatError

__all__ = ["SUSPECT_FORMATS", "detect_suspect_format", "file_digest", "load_suspect"]

UNSAFE_FLAG = "--unsafe-pickle"


def file_digest(path: Path) -> str:
    """``"sha256:<hex>"`` of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


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


def detect_suspect_format(path: str | os.PathLike[str]) -> str:
    """Name the format of ``path`` from its content, not its extension.

    Returns one of ``"torch.export"``, ``"torchscript"``, ``"pickle"``, ``"safetensors"``.

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
    if _is_safetensors(head, p.stat().st_size):
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    raise SuspectError(
        f"'{p}' is not a model file this verifier reads; supported: "
        f"{', '.join(SUSPECT_FORMATS)} (detected by content)"
    )


def _load_export(path: Path, allow_unsafe: bool) -> tuple[object, int | None]:
    program = torch.export.load(str(path))
    names = set(program.graph_signature.user_inputs)
    shapes = [n.meta["val"].shape for n in program.graph.nodes if n.name in names]
    fixed = None
    if len(shapes) == 1 and isinstance(shapes[0][0], int):
        fixed = int(shapes[0][0])
    if len(shapes) == 1 and tuple(shapes[0][1:]) != DEFAULT_INPUT_SHAPE:
        got = [s if isinstance(s, int) else "N" for s in shapes[0]]
        raise SuspectError(f"suspect model takes input {got}, the watermark needs [N, 3, 32, 32]")
    return program.module(), fixed


def _load_torchscript(path: Path, allow_unsafe: bool) -> tuple[object, int | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu"), None


def _load_pickle(path: Path, allow_unsafe: bool) -> tuple[object, int | None]:
    if not allow_unsafe:
        raise UnsafeFormatError(
            f"'{path}' is a pickled model; unpickling can run arbitrary code, so it is refused "
            f"unless you pass {UNSAFE_FLAG} (allow_unsafe_pickle=True) for a file you trust"
        )
    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise SuspectError(
            f"'{path}' holds a {type(obj).__name__}, not a model; a state dict needs the model's "
            "code — export the model with torch.export instead"
        )
    return obj, None


def _refuse_safetensors(path: Path, allow_unsafe: bool) -> tuple[object, int | None]:
    raise SuspectError(
        f"'{path}' is a safetensors file (weights without model code): this is a mapguard "
        "checkpoint; load it with the mapguard CLI ('mapguard verify'), or give the verifier a "
        "torch.export (.pt2) or TorchScript file"
    )


SUSPECT_FORMATS: dict[str, Callable[[Path, bool], tuple[object, int | None]]] = {
    "torch.export": _load_export,
    "torchscript": _load_torchscript,
    "pickle": _load_pickle,
    "safetensors": _refuse_safetensors,
}


def load_suspect(
    path: str | os.PathLike[str],
    *,
    labels_only: bool = False,
    allow_unsafe_pickle: bool = False,
    num_classes: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> ModuleBackend:
    """Load a suspect model file into a :class:`ModuleBackend` and probe it.

    Formats (detected by content): ``torch.export`` archives (``torch.export.load``; static
    batch sizes are handled by padding), TorchScript (``torch.jit.load``), and — only with
    ``allow_unsafe_pickle=True`` — whole-module pickles from ``torch.save``. Safetensors files
    are mapguard checkpoints and are refused with a pointer to the mapguard CLI.

    Args:
        path: The suspect model file.
        labels_only: Answer labels only (black-box label access).
        allow_unsafe_pickle: Allow unpickling (runs code from the file!).
        num_classes: If given, the probe checks the suspect outputs this many classes.
        batch_size: Largest batch per forward pass.
        device: Device to run on.

    Raises:
        SuspectError: Unreadable, unsupported, or not fitting ``[N, 3, 32, 32]`` / classes.
        UnsafeFormatError: A pickle without ``allow_unsafe_pickle``.
    """
    p = Path(path)
    fmt = detect_suspect_format(p)
    try:
        module, fixed = SUSPECT_FORMATS[fmt](p, allow_unsafe_pickle)
    except SuspectError:
        raise
    except Exception as exc:  # a corrupt file surfaces as any exception from torch
        raise SuspectError(f"cannot load {fmt} file '{p}': {type(exc).__name__}: {exc}") from exc
    backend = ModuleBackend(
        module,
        labels_only=labels_only,
        batch_size=batch_size,
        device=device,
        digest=file_digest(p),
        fixed_batch=fixed,
        description=f"{fmt} file {p.name}",
    )
    backend.probe(num_classes=num_classes)
    return backend
