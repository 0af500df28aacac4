"""Model files that are code: telling the formats apart by content, and loading them in process.

``torch.export`` archives, TorchScript and pickles run code from the file when loaded, and ONNX
files meet onnxruntime's native parser; :func:`mapguard.checkpoint.load_any_model` loads them
here only behind the user's ``--unsafe-load`` (ONNX never: it has no torch weights), and the
commands that only query a model send them to the isolated worker instead.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from mapguard._errors import ModelFileError
from protocols.errors import InputError

__all__ = ["CODE_FORMATS", "FORMAT_NAMES", "detect_format", "load_code_format"]

CODE_FORMATS = ("export", "torchscript", "pickle", "onnx")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Sniff a model file: safetensors, export, torchscript, pickle, onnx or unknown."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file '{p}' does not exist or is not a file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        try:
            names = zipfile.ZipFile(p).namelist()
        except zipfile.BadZipFile:
            return "unknown"
        if any(n.split("/", 1)[-1].startswith("archive_format") for n in names) or any(
            "/models/" in n and n.endswith(".json") for n in names
        ):
            return "export"
        if any(n.split("/", 1)[-1].startswith("code/") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        return "unknown"
    if head[:1] == b"\x80":
        return "pickle"
    from verification.backends import detect_suspect_format  # the one ONNX sniff (by content)

    try:
        return "onnx" if detect_suspect_format(p) == "onnx" else "unknown"
    except InputError:
        return "unknown"


FORMAT_NAMES = {"export": "torch.export (.pt2)", "torchscript": "TorchScript", "pickle": "pickle"}


class _FixedMode(nn.Module):
    """An exported program's module: its train/eval mode was fixed at export time, so
    ``train()``/``eval()`` (which it refuses) only set the flag here."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def train(self, mode: bool = True) -> _FixedMode:
        self.training = mode
        return self


def load_code_format(p: Path, fmt: str) -> nn.Module:
    """Load a code-format file *in this process* (runs its code: the caller has the opt-in)."""
    if fmt == "export":
        module = _FixedMode(torch.export.load(str(p)).module())
    elif fmt == "torchscript":
        module = torch.jit.load(str(p), map_location="cpu")
    else:
        module = torch.load(str(p), map_location="cpu", weights_only=False)
        if not isinstance(module, nn.Module):
            raise ModelFileError(f"'{p}' unpickles to {type(module).__name__}, not a torch module")
    with contextlib.suppress(NotImplementedError):  # exported modules fix their mode
        module.eval()
    return module
