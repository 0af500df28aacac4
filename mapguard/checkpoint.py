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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mapguard._code_formats import CODE_FORMATS, FORMAT_NAMES, detect_format, load_code_format
from mapguard._errors import ConfigError, ModelFileError
from protocols.fileio import atomic_path
from protocols.fileio import sha256_file as file_sha256  # one home; the name many callers use

__all__ = [
    "CODE_FORMATS",
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
        """Parse and validate the header; any malformed field is a :class:`ModelFileError`."""
        if "mapguard" not in header:
            raise ModelFileError(f"'{path}' is a safetensors file but not a mapguard checkpoint")
        raw = header["mapguard"]
        if len(raw) > _MAX_HEADER_CHARS:
            raise ModelFileError(f"'{path}': checkpoint metadata is {len(raw)} characters (limit "
                                 f"{_MAX_HEADER_CHARS})")  # fmt: skip
        fields = _json_field(raw, path, "metadata")
        header = fields if isinstance(fields, dict) else {}
        if header.get("format") != FORMAT_NAME:
            raise ModelFileError(f"'{path}' is a safetensors file but not a mapguard checkpoint")
        if header.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(
                f"'{path}': unsupported checkpoint format_version "
                f"{str(header.get('format_version'))[:40]!r} (this mapguard reads {FORMAT_VERSION})"
            )
        try:
            meta = cls(
                arch=_text(header["arch"], "arch"),
                num_classes=_count(header["num_classes"]),
                classes=tuple(_strings(_json_field(header["classes"], path, "classes"))),
                input_size=tuple(_ints(_json_field(header["input_size"], path, "input_size"))),
                mean=tuple(_numbers(_json_field(header["mean"], path, "mean"))),
                std=tuple(_numbers(_json_field(header["std"], path, "std"))),
                weights_sha256=_text(header["weights_sha256"], "weights_sha256"),
                extra=_str_dict(_json_field(header.get("extra", "{}"), path, "extra")),
            )
        except KeyError as exc:
            raise ModelFileError(f"'{path}': checkpoint metadata lacks {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"'{path}': corrupt checkpoint metadata ({exc})") from None
        return meta._validated(path)

    def _validated(self, path: Path) -> ModelMeta:
        problems = []
        if len(self.classes) != self.num_classes:
            problems.append(f"{len(self.classes)} class names for {self.num_classes} classes")
        if len(self.input_size) != 3 or min(self.input_size) < 1 or max(self.input_size) > 8192:
            problems.append(f"input_size {list(self.input_size)}")
        if len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0:
            problems.append(f"mean {list(self.mean)} / std {list(self.std)}")
        if problems:
            raise ModelFileError(f"'{path}': corrupt checkpoint metadata ({'; '.join(problems)})")
        return self


_MAX_HEADER_CHARS = 1 << 20
_MAX_CLASSES = 100_000


def _json_field(text: object, path: Path, what: str) -> object:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be JSON text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ModelFileError(
            f"'{path}': corrupt checkpoint metadata ({what} is not JSON)"
        ) from None


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise TypeError(f"{what} must be a short string, got {type(value).__name__}")
    return value


def _count(value: object) -> int:
    n = int(_text(value, "num_classes"))
    if not 2 <= n <= _MAX_CLASSES:
        raise ValueError(f"num_classes {n} outside [2, {_MAX_CLASSES}]")
    return n


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("classes must be a list of strings")
    return value


def _ints(value: object) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise TypeError("input_size must be a list of integers")
    return value


def _numbers(value: object) -> list[float]:
    ok = isinstance(value, list) and all(type(v) in (int, float) for v in value)
    if not ok or not all(math.isfinite(v) for v in value):
        raise TypeError("mean/std must be lists of finite numbers")
    return [float(v) for v in value]


def _str_dict(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("extra must be an object of strings")
    return value


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict in the canonical order documented above."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + b"\0")
        h.update(json.dumps(list(t.shape)).encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
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


def load_checkpoint(
    path: str | os.PathLike[str], *, allow_code: bool = False
) -> tuple[nn.Module, ModelMeta]:
    """Load a mapguard checkpoint (tensors only; never unpickles) and check its weight digest.

    The header is validated and the file's tensor shapes are compared with the architecture
    built on the ``meta`` device (no memory) before any weight is read, so a header that claims
    millions of classes is refused without allocating them. (The few library architectures that
    compute on their tensors while built, torchvision's RegNets, are built for real instead.)

    ``arch`` may be a zoo name or a spec (:func:`mapguard.models.create_model`). A
    ``module:pkg.mod:factory`` spec imports and runs that module when the model is built, and a
    checkpoint may come from anyone (an accused party included), so it is refused unless the
    caller passes ``allow_code=True`` (:func:`load_any_model` does with ``allow_unsafe=True``).

    Raises:
        ModelFileError: missing, corrupt, foreign or tampered file, or a ``module:`` arch
            without ``allow_code``.
    """
    p = Path(path)
    if detect_format(p) != "safetensors":
        raise ModelFileError(f"'{p}' is not a mapguard checkpoint (safetensors)")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{p}': corrupt safetensors file ({exc})") from None
    meta = ModelMeta.from_header(header, p)
    _check_code_arch(p, meta.arch, allow_code=allow_code)
    model = None
    try:
        with torch.device("meta"):
            skeleton = _build(meta)
    except (NotImplementedError, RuntimeError, ConfigError):  # computes on its tensors while
        skeleton = model = _build(meta)  # built; a spec that is bad on any device fails here again
    _check_shapes(p, meta.arch, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()},
                  shapes)  # fmt: skip
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{p}': corrupt safetensors file ({exc})") from None
    if weights_digest(state) != meta.weights_sha256:
        raise ModelFileError(
            f"'{p}': weights do not match their recorded sha256 (corrupt or edited)"
        )
    model = _build(meta) if model is None else model
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(
            f"'{p}': weights do not fit architecture '{meta.arch}': {first}"
        ) from None
    return model.eval(), meta


def _build(meta: ModelMeta) -> nn.Module:
    from mapguard.models import create_model

    return create_model(meta.arch, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)


def _check_code_arch(path: Path, arch: str, *, allow_code: bool) -> None:
    """Refuse a ``module:`` architecture (building it runs the module's code) unless allowed."""
    from mapguard.models._external import CODE_PREFIX

    if arch.partition(":")[0] == CODE_PREFIX and not allow_code:
        raise ModelFileError(
            f"'{path}': architecture '{arch}' is user code: loading it imports and runs that "
            "Python module; refused (opt in, e.g. --unsafe-load, only for a file you trust)"
        )


def _check_shapes(
    path: Path, arch: str, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]
) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [k for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
    if missing or extra or wrong:
        what = (
            f"tensor '{wrong[0]}' has shape {list(found[wrong[0]])}, the header's architecture "
            f"needs {list(expected[wrong[0]])}"
            if wrong
            else f"missing {missing[:3]}"
            if missing
            else f"unexpected {extra[:3]}"
        )
        raise ModelFileError(f"'{path}': weights do not fit architecture '{arch}': {what}")


def load_any_model(
    path: str | os.PathLike[str], *, allow_unsafe: bool = False
) -> tuple[nn.Module, ModelMeta | None]:
    """Load a model file *into this process*, for commands that need its weights or gradients.

    mapguard checkpoints (safetensors: data, no code) load, except that one whose architecture is
    user code (``module:pkg.mod:factory``) needs ``allow_unsafe=True``. ``torch.export`` archives,
    TorchScript and pickles run code from the file when loaded, so they are refused unless
    ``allow_unsafe=True`` (the ``--unsafe-load`` flag: only for files you trust). Commands that
    only *query* a model (``evaluate``, ``verify``) run code formats in an isolated worker
    instead (:func:`verification.backends.load_suspect`).
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "safetensors":
        return load_checkpoint(p, allow_code=allow_unsafe)
    if fmt not in CODE_FORMATS:
        raise ModelFileError(
            f"'{p}' is not a recognised model file (mapguard checkpoint, .pt2 export, TorchScript)"
        )
    if fmt == "onnx":
        raise ModelFileError(
            f"'{p}' is an ONNX file: it has no torch weights for this command; 'mapguard evaluate' "
            "and 'mapguard verify' query it in the isolated worker (without --unsafe-load)"
        )
    if not allow_unsafe:
        raise ModelFileError(
            f"'{p}' is a {FORMAT_NAMES[fmt]} file: loading it runs code from the file, and this "
            "command needs the model in its own process; convert it to a mapguard checkpoint, "
            "or pass --unsafe-load only for a file you trust"
        )
    try:
        return load_code_format(p, fmt), None
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure on a user file is bad input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"'{p}': cannot load {fmt} model ({first[:200]})") from None
