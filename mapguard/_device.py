"""Device choice: CUDA when present, else CPU (never set globally); the ``--amp`` fast path.

``--amp`` is bf16 autocast plus the channels-last memory format in the training loops (``train``,
the mask learner of ``protect`` and ``embed``, ``attack``), on CUDA only: a command given
``--amp`` on another device, or on a GPU without bf16, is refused in one line (nothing silently
runs in float32 while claiming bf16). Evaluation, the self-check and verification always run in
float32. The setting is scoped: :func:`mixed_precision` turns it on for the code inside its
``with`` block (a context variable, so nothing global), and the loops ask :func:`autocast` and
:func:`fast_layout` at each step. Without it every result is what it was, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TypeVar

import torch
from torch import nn

from mapguard._errors import ConfigError

__all__ = [
    "amp_enabled",
    "autocast",
    "check_amp",
    "default_device",
    "fast_layout",
    "mixed_precision",
]

_AMP: ContextVar[bool] = ContextVar("mapguard_amp", default=False)
_T = TypeVar("_T", nn.Module, torch.Tensor)


def default_device(requested: str | None = None) -> torch.device:
    """``requested`` if given (e.g. ``"cpu"``), else ``cuda`` when available, else ``cpu``."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_amp(device: torch.device) -> None:
    """Refuse ``--amp`` where bf16 autocast cannot run: only a CUDA device with bfloat16.

    Raises:
        ConfigError: ``device`` is not CUDA, or its GPU has no bf16.
    """
    if device.type != "cuda":
        raise ConfigError(
            f"--amp (bf16 autocast, channels-last) needs a CUDA device; got '{device}' "
            "(drop --amp: on the CPU the float32 results are the reference)"
        )
    if not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--amp needs a GPU with bfloat16; '{device}' has none (drop --amp)")


@contextlib.contextmanager
def mixed_precision(device: torch.device | str | None, enabled: bool = True) -> Iterator[None]:
    """Within the block the training loops on ``device`` use bf16 autocast and channels-last
    (``enabled``; checked by :func:`check_amp` first). ``enabled=False`` changes nothing."""
    if not enabled:
        yield
        return
    check_amp(torch.device(device) if device is not None else default_device())
    token = _AMP.set(True)
    try:
        yield
    finally:
        _AMP.reset(token)


def amp_enabled() -> bool:
    """Whether the caller runs inside :func:`mixed_precision`."""
    return _AMP.get()


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for one forward pass on a CUDA ``device`` under :func:`mixed_precision`;
    otherwise a no-op."""
    if amp_enabled() and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fast_layout(obj: _T, device: torch.device, *, undo: bool = False) -> _T:
    """``obj`` (a module, or a batch ``[N, C, H, W]``) in channels-last on a CUDA ``device``
    under :func:`mixed_precision` (``undo``: back to the contiguous layout); otherwise ``obj``
    itself. Values never change, only strides."""
    if not (amp_enabled() and device.type == "cuda"):
        return obj
    layout = torch.contiguous_format if undo else torch.channels_last
    if isinstance(obj, torch.Tensor):
        return obj.contiguous(memory_format=layout) if obj.ndim == 4 else obj
    return obj.to(memory_format=layout)
