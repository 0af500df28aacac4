"""The mapguard model file: safetensors weights plus a metadata header (no pickle).

Format (``format_version`` 1), documented in ``docs/FORMATS.md``: a standard safetensors file whose
metadata has one key, ``mapguard``, holding a JSON object (sorted keys, so saves are
byte-identical: safetensors writes several metadata keys in random order) with
``format="mapguard-checkpoint"``, ``format_version``, ``arch``,
``num_classes``, ``classes`` (JSON list), ``input_size`` (JSON ``[3, 32, 32]``), ``mean``/``std``
(JSON lists; informative, the normalisation also lives in the weights), ``weights_sha256`` and
``extra`` (JSON object of strings). ``weights_sha256`` is SHA-256 over, for each tensor in sorted
name order, ``name NUL dtype NUL shape NUL raw-little-endian-bytes``; it is checked on every load.

Example:
    >>> import tempfile, pathlib, torch
    >>> from mapguard.models import create_model
    >>> m = create_model("vgg_tiny")
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.pt"
    >>> meta = save_checkpoint(m, ModelMeta(arch="vgg_tiny"), p)
    >>> m2, meta2 = load_checkpoint(p)
    >>> meta2.weights_sha256 == meta.weights_sha256
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mapguard._errors import ModelFileError
from protocols.fileio import atomic_path

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelMeta",
    "detect_format",
    "file_sha256",
    "load_any_model",
    "load_checkpoint",
    "save_checkpoint",
    "weights_digest",
]

FORMAT_NAME = "mapguard-checkpoint"
FORMAT_VERSION = "1"


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """What a checkpoint says about its model."""

    arch: str
    num_classes: int = 10
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    input_size: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    weights_sha256: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_header(self) -> dict[str, str]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "num_classes": str(self.num_classes),
            "classes": json.dumps(list(self.classes)),
            "input_size": json.dumps(list(self.input_size)),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "weights_sha256": self.weights_sha256,
            "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_header(cls, header: dict[str, str], path: Path) -> ModelMeta:
        if "mapguard" not in header:
            raise ModelFileError(f"'{path}' is a safetensors file but not a mapguard checkpoint")
        try:
            fields = json.loads(header["mapguard"])
        except ValueError:
            raise ModelFileError(f"'{path}': corrupt checkpoint metadata") from None
        header = fields if isinstance(fields, dict) else {}
        if header.get("format") != FORMAT_NAME:
            raise ModelFileError(f"'{path}' is a safetensors file but not a mapguard checkpoint")
        if header.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(
                f"'{path}': unsupported checkpoint format_version "
                f"{header.get('format_version')!r} (this mapguard reads {FORMAT_VERSION})"
            )
        try:
            return cls(
                arch=header["arch"],
                num_classes=int(header["num_classes"]),
                classes=tuple(json.loads(header["classes"])),
                input_size=tuple(json.loads(header["input_size"])),
                mean=tuple(json.loads(header["mean"])),
                std=tuple(json.loads(header["std"])),
                weights_sha256=header["weights_sha256"],
                extra=dict(json.loads(header.get("extra", "{}"))),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"'{path}': corrupt checkpoint metadata ({exc})") from None


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict in the canonical order documented above."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + b"\0")
        h.update(json.dumps(list(t.shape)).encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    model: nn.Module, meta: ModelMeta, path: str | os.PathLike[str], *, force: bool = False
) -> ModelMeta:
    """Write ``model`` with ``meta`` atomically; returns the meta with ``weights_sha256`` set."""
    state = _state_of(model)
    meta = dataclasses.replace(meta, weights_sha256=weights_digest(state))
    with atomic_path(path, force=force) as tmp:
        header = json.dumps(meta.to_header(), sort_keys=True, separators=(",", ":"))
        save_file(state, str(tmp), metadata={"mapguard": header})
    return meta


def detect_format(path: str | os.PathLike[str]) -> str:
    """Sniff a model file: safetensors, export, torchscript, pickle or unknown."""
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
    return "unknown"


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelMeta]:
    """Load a mapguard checkpoint (tensors only; never unpickles) and check its weight digest.

    Raises:
        ModelFileError: missing, corrupt, foreign or tampered file.
    """
    from mapguard.models import create_model

    p = Path(path)
    if detect_format(p) != "safetensors":
        raise ModelFileError(f"'{p}' is not a mapguard checkpoint (safetensors)")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{p}': corrupt safetensors file ({exc})") from None
    meta = ModelMeta.from_header(header, p)
    if weights_digest(state) != meta.weights_sha256:
        raise ModelFileError(
            f"'{p}': weights do not match their recorded sha256 (corrupt or edited)"
        )
    model = create_model(meta.arch, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(
            f"'{p}': weights do not fit architecture '{meta.arch}': {first}"
        ) from None
    return model.eval(), meta


def load_any_model(
    path: str | os.PathLike[str], *, allow_unsafe: bool = False
) -> tuple[nn.Module, ModelMeta | None]:
    """Load any supported model file for inference.

    mapguard checkpoints, ``torch.export`` archives and TorchScript are accepted. A pickled full
    module is refused unless ``allow_unsafe=True`` (unpickling can run arbitrary code).
    """
    p = Path(path)
    fmt = detect_format(p)
    try:
        if fmt == "safetensors":
            return load_checkpoint(p)
        if fmt == "export":
            return torch.export.load(str(p)).module(), None
        if fmt == "torchscript":
            return torch.jit.load(str(p), map_location="cpu").eval(), None
        if fmt == "pickle":
            if not allow_unsafe:
                raise ModelFileError(
                    f"'{p}' is a pickle; loading it can run arbitrary code. "
                    "Pass --unsafe-pickle only if you trust its origin"
                )
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
            if not isinstance(obj, nn.Module):
                raise ModelFileError(f"'{p}' unpickles to {type(obj).__name__}, not a torch module")
            return obj.eval(), None
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure on a user file is bad input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"'{p}': cannot load {fmt} model ({first[:200]})") from None
    raise ModelFileError(
        f"'{p}' is not a recognised model file (mapguard checkpoint, .pt2 export, TorchScript)"
    )
