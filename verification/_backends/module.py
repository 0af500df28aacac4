"""Query backend over an in-process ``torch.nn.Module`` (or any callable returning logits)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from verification._backends.base import DEFAULT_INPUT_SHAPE, QueryBackend
from verification._errors import SuspectError

__all__ = ["ModuleBackend", "state_digest"]


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the module's state (sorted names, dtypes, shapes, little-endian bytes)."""
    digest = hashlib.sha256(b"mapguard/module-state/v1\x00")
    for name, tensor in sorted(module.state_dict().items()):
        arr = tensor.detach().cpu().contiguous()
        header = f"{name}\x00{arr.dtype}\x00{list(arr.shape)}\x00".encode()
        digest.update(header)
        digest.update(np.ascontiguousarray(arr.reshape(-1).view(torch.uint8).numpy()).tobytes())
    return "sha256:" + digest.hexdigest()


class ModuleBackend(QueryBackend):
    """Query an in-process model that maps ``[N, 3, 32, 32]`` pixels in ``[0, 1]`` to logits.

    Answers softmax probabilities ``[N, C]`` (or argmax labels with ``labels_only=True``). The
    module is put in eval mode (where supported) and run under ``torch.inference_mode``.

    Args:
        module: The model (``nn.Module``, TorchScript module or exported ``GraphModule``).
        labels_only: Answer labels instead of probabilities.
        batch_size: Largest batch sent to the module at once.
        device: Device to run on (the module is moved there); None keeps it where it is.
        digest: Public identifier; None computes :func:`state_digest` on first use.
        fixed_batch: If the module only accepts one batch size (a statically exported program),
            batches are split and zero-padded to exactly this size.
        input_shape: Per-image input shape.
        description: Human-readable origin.
    """

    def __init__(
        self,
        module: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
        *,
        labels_only: bool = False,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        digest: str | None = None,
        fixed_batch: int | None = None,
        input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE,
        description: str = "in-process module",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SuspectError(f"batch_size must be a positive integer, got {batch_size!r}")
        super().__init__(input_shape=input_shape, digest=digest, description=description)
        self.module = module
        self.labels_only = bool(labels_only)
        self.batch_size = fixed_batch if fixed_batch is not None else batch_size
        self.fixed_batch = fixed_batch
        self.device = torch.device(device) if device is not None else None
        _prepare(module, self.device)

    @property
    def digest(self) -> str | None:
        if self._digest is None and isinstance(self.module, torch.nn.Module):
            self._digest = state_digest(self.module)
        return self._digest

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = torch.cat([self._logits(c) for c in batch.split(self.batch_size)])
        probs = torch.softmax(logits.float(), dim=1)
        return probs.argmax(dim=1) if self.labels_only else probs

    def _logits(self, chunk: torch.Tensor) -> torch.Tensor:
        n = chunk.shape[0]
        if self.fixed_batch is not None and n < self.fixed_batch:
            pad = chunk.new_zeros((self.fixed_batch - n, *chunk.shape[1:]))
            chunk = torch.cat([chunk, pad])
        if self.device is not None:
            chunk = chunk.to(self.device)
        out = self.module(chunk)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise SuspectError(f"suspect model must return logits [N, C], got {shape}")
        return out[:n].cpu()


def _prepare(module: object, device: torch.device | None) -> None:
    """Eval mode and device placement where the module supports them."""
    if isinstance(module, torch.nn.Module):
        try:
            module.eval()
        except NotImplementedError:  # exported GraphModules: mode is fixed at export time
            pass
        if device is not None:
            module.to(device)
