"""Import a model trained elsewhere as a mapguard checkpoint (``mapguard import``).

The weights are a state dict in a ``torch.save`` file, read only with
``torch.load(..., weights_only=True)`` (a pickle that holds anything but tensors and plain
containers is refused, never unpickled), or a safetensors file (a mapguard checkpoint included);
the format is told by content, not by extension. Nested checkpoints (``{"state_dict": ...}``,
``{"model": ...}``, ``{"model_state_dict": ...}``) and the prefixes of wrappers (``module.`` from
DataParallel/DDP, ``model.``, ``_orig_mod.`` from ``torch.compile``) are unwrapped. The weights
load strictly into the architecture (``arch``: a zoo name or a spec such as
``torchvision:resnet18``, see :func:`mapguard.models.create_model`) behind the input
normalisation ``mean``/``std``, so the written model takes pixels in ``[0, 1]`` like every
mapguard model; one forward pass on zeros checks that it takes ``input_size``.

Example:
    >>> import tempfile, pathlib, torch
    >>> from mapguard.models import create_model
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> body = create_model("vgg_tiny")[1]
    >>> torch.save({"state_dict": {"module." + k: v for k, v in body.state_dict().items()}},
    ...            d / "w.pth")
    >>> r = import_model(d / "w.pth", arch="vgg_tiny", num_classes=10, input_size=(3, 32, 32),
    ...                  out=d / "m.pt")
    >>> r.stripped_prefix, r.meta.classes[:3]
    ('module.', ('0', '1', '2'))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mapguard._errors import ConfigError, DataError, ModelFileError
from mapguard.checkpoint import ModelMeta, detect_format, file_sha256, save_checkpoint
from protocols.fileio import check_writable

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NESTED_KEYS",
    "WRAPPER_PREFIXES",
    "ImportResult",
    "folder_classes",
    "import_model",
    "read_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Keys under which training scripts commonly nest the state dict, tried in this order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes that wrappers add to every key (DataParallel/DDP, Lightning-style, torch.compile).
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
_MAX_CLASSES = 100_000
_MAX_SIDE = 8192
_MAPGUARD_NORM = ("0.mean", "0.std")


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_model` wrote."""

    out: Path
    meta: ModelMeta
    parameters: int
    source_format: str
    stripped_prefix: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "arch": self.meta.arch,
            "num_classes": self.meta.num_classes,
            "classes": list(self.meta.classes),
            "input_size": list(self.meta.input_size),
            "mean": list(self.meta.mean),
            "std": list(self.meta.std),
            "parameters": self.parameters,
            "source_format": self.source_format,
            "stripped_prefix": self.stripped_prefix,
            "weights_sha256": self.meta.weights_sha256,
        }


def import_model(
    weights: str | os.PathLike[str],
    *,
    arch: str,
    num_classes: int,
    input_size: Sequence[int] = (3, 224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    classes: Sequence[str] | None = None,
    out: str | os.PathLike[str],
    force: bool = False,
) -> ImportResult:
    """Load ``weights`` into ``arch`` and write it as a mapguard checkpoint at ``out``.

    ``classes`` names the outputs in order (default ``"0"`` .. ``"N-1"``; see
    :func:`folder_classes`). Nothing is written unless every check passes.

    Raises:
        ConfigError: a bad option, an unknown architecture or an input size it cannot take.
        ModelFileError: unreadable or unsafe weights, or weights that do not fit ``arch``.
        OutputExistsError: ``out`` exists and ``force`` is false.
    """
    size, mean, std, names = _import_iv(num_classes, input_size, mean, std, classes)
    check_writable(out, force=force)
    from mapguard.models import create_model

    state, fmt = read_state_dict(weights)
    model = create_model(arch, num_classes=num_classes, mean=mean, std=std)
    state, prefix = _fit_body(Path(weights), model[1], state, arch, fmt, mean=mean, std=std)
    model[1].load_state_dict(state, strict=True)
    _check_forward(model.eval(), arch, size, num_classes)
    meta = ModelMeta(
        arch=arch, num_classes=num_classes, classes=names, input_size=size, mean=mean, std=std,
        extra={"imported_from": Path(weights).name, "imported_sha256": file_sha256(weights)},
    )  # fmt: skip
    meta = save_checkpoint(model, meta, out, force=force)
    parameters = sum(p.numel() for p in model.parameters())
    return ImportResult(Path(out), meta, parameters, fmt, prefix)


def _import_iv(
    num_classes: object,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str] | None,
) -> tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
    """Validate the options of :func:`import_model` (the bad value in each message)."""
    if type(num_classes) is not int or not 2 <= num_classes <= _MAX_CLASSES:
        raise ConfigError(f"num_classes must be an integer in [2, {_MAX_CLASSES}], "
                          f"got {num_classes!r}")  # fmt: skip
    size = tuple(input_size)
    if len(size) != 3 or not all(type(v) is int and 1 <= v <= _MAX_SIDE for v in size):
        raise ConfigError(f"input_size must be 3 integers C, H, W in [1, {_MAX_SIDE}], "
                          f"got {list(size)}")  # fmt: skip
    mean, std = _floats(mean, "mean"), _floats(std, "std")
    if not len(mean) == len(std) == size[0]:
        raise ConfigError(f"mean {list(mean)} and std {list(std)} need one value per input "
                          f"channel ({size[0]})")  # fmt: skip
    if min(std) <= 0:
        raise ConfigError(f"std values must be > 0, got {list(std)}")
    names = tuple(str(i) for i in range(num_classes)) if classes is None else tuple(classes)
    if not all(isinstance(c, str) for c in names):
        raise ConfigError("class names must be strings")
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names for num_classes {num_classes} "
                          f"(first {list(names[:3])})")  # fmt: skip
    return size, mean, std, names  # type: ignore[return-value]


def _floats(values: Sequence[float], what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{what} must be finite numbers, got {list(out)}")
    return out


def folder_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names of an ImageFolder directory, in label order: the same rule as
    :func:`mapguard.data.load_data` (sorted sub-folders, those of ``train/`` when the folder has
    ``train/`` and ``test/``)."""
    from mapguard.data._folder import _class_names  # the loader's own rule, not a copy

    p = Path(root)
    if not p.is_dir():
        raise DataError(f"class folder '{p}' does not exist or is not a directory")
    if (p / "train").is_dir() and (p / "test").is_dir():
        p = p / "train"
    return _class_names(p)


# ---- reading the weights -------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a weights file and its format (``torch``, ``safetensors`` or
    ``mapguard-checkpoint``); nested checkpoints are unwrapped, prefixes are kept.

    Raises:
        ModelFileError: missing file, a format that is not plain weights, a pickle holding other
            objects (refused, never unpickled), or no tensors.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "safetensors":
        return _read_safetensors(p)
    if fmt != "pickle":
        kind = {"export": "a torch.export archive", "torchscript": "TorchScript"}.get(fmt)
        raise ModelFileError(
            f"'{p}' is {kind or 'not a weights file'}; import takes a state dict "
            "(torch.save(model.state_dict(), path)) or a safetensors file"
        )
    return _unwrap(p, _torch_load(p)), "torch"


def _torch_load(p: Path) -> object:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused or corrupt user file: one line
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global '?([\w.]+)", text)
        if found or "Weights only load failed" in text:
            what = f" (it needs {found.group(1)})" if found else ""
            raise ModelFileError(
                f"'{p}' holds Python objects besides tensors{what}; refused without unpickling: "
                "save a plain state dict (torch.save(model.state_dict(), path)) or safetensors"
            ) from None
        first = (text.strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFileError(f"'{p}': cannot read weights ({first})") from None


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{p}': corrupt safetensors file ({exc})") from None
    if "mapguard" in header:
        ModelMeta.from_header(header, p)  # a mapguard checkpoint: its header must be sound
        return state, "mapguard-checkpoint"
    return _unwrap(p, state), "safetensors"


def _unwrap(p: Path, obj: object) -> dict[str, torch.Tensor]:
    """The state dict inside ``obj``: itself, or nested under one of :data:`NESTED_KEYS`."""
    for _ in range(3):
        if not isinstance(obj, Mapping) or _all_tensors(obj):
            break
        key = next((k for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelFileError(f"'{p}' holds no state dict (a mapping of names to tensors); "
                             f"found {type(obj).__name__}")  # fmt: skip
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ModelFileError(
            f"'{p}': entry {str(bad)[:80]!r} is {type(obj[bad]).__name__}, not a tensor "
            f"(expected a state dict, or one nested under {', '.join(NESTED_KEYS)})"
        )
    return {str(k): v for k, v in obj.items()}


def _all_tensors(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# ---- fitting them to the architecture ------------------------------------------------------------
def _fit_body(
    p: Path,
    body: nn.Module,
    state: dict[str, torch.Tensor],
    arch: str,
    fmt: str,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` keyed like ``body`` (a wrapper prefix stripped), or a one-line error."""
    if fmt == "mapguard-checkpoint":
        state = _mapguard_body(p, state, mean=mean, std=std)
    expected = {k: tuple(v.shape) for k, v in body.state_dict().items()}
    candidates = _prefix_candidates(state)
    prefix, fitted = next(
        ((pre, s) for pre, s in candidates if set(s) == set(expected)), candidates[-1]
    )
    missing = sorted(set(expected) - set(fitted))
    unexpected = sorted(set(fitted) - set(expected))
    if missing or unexpected:
        parts = [f"{len(missing)} missing (first '{missing[0]}')"] if missing else []
        parts += [f"{len(unexpected)} unexpected (first '{unexpected[0]}')"] if unexpected else []
        raise ModelFileError(f"'{p}': weights do not fit architecture '{arch}': "
                             f"{', '.join(parts)}")  # fmt: skip
    wrong = next((k for k in sorted(expected) if tuple(fitted[k].shape) != expected[k]), None)
    if wrong is not None:
        raise ModelFileError(
            f"'{p}': weights do not fit architecture '{arch}': '{wrong}' has shape "
            f"{list(fitted[wrong].shape)}, the architecture needs {list(expected[wrong])}"
        )
    return fitted, prefix


def _prefix_candidates(state: dict[str, torch.Tensor]) -> list[tuple[str, dict]]:
    """``state`` as it is, then with each wrapper prefix that every key shares stripped in turn
    (``module._orig_mod.`` is two): the longest common one last."""
    out = [("", state)]
    prefix = ""
    while True:
        keys = list(out[-1][1])
        step = next((w for w in WRAPPER_PREFIXES if all(k.startswith(w) for k in keys)), None)
        if step is None:
            return out
        prefix += step
        out.append((prefix, {k[len(step) :]: v for k, v in out[-1][1].items()}))


def _mapguard_body(
    p: Path, state: dict[str, torch.Tensor], *, mean: tuple[float, ...], std: tuple[float, ...]
) -> dict[str, torch.Tensor]:
    """The body of a mapguard checkpoint (``Sequential(Normalize, body)``), whose normalisation
    must be the one asked for: importing does not change what the model expects."""
    if not all(k in state for k in _MAPGUARD_NORM):
        raise ModelFileError(f"'{p}': mapguard checkpoint without its normalisation "
                             f"{list(_MAPGUARD_NORM)}")  # fmt: skip
    have = (state["0.mean"].flatten().tolist(), state["0.std"].flatten().tolist())
    if not _close(have[0], mean) or not _close(have[1], std):
        raise ConfigError(
            f"'{p}' is a mapguard checkpoint normalising with mean {_rounded(have[0])}, std "
            f"{_rounded(have[1])}; pass the same --mean/--std (asked {list(mean)}, {list(std)})"
        )
    return {(k[2:] if k.startswith("1.") else k): v for k, v in state.items() if k[:2] != "0."}


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 6) for v in values]


def _check_forward(model: nn.Module, arch: str, size: tuple[int, int, int], n: int) -> None:
    """One forward pass on zeros: the model must take ``size`` and give ``[1, n]`` logits."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *size))
    except Exception as exc:  # noqa: BLE001 - the architecture refused the size: the user's input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"architecture '{arch}' cannot take input size {'x'.join(map(str, size))}: {first}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"architecture '{arch}' at input size {'x'.join(map(str, size))} returns {got}, "
            f"expected logits of shape [1, {n}]"
        )
