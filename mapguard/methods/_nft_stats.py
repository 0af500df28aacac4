"""BatchNorm statistics and the source guard of ``nft-weights``
(:mod:`mapguard.methods.nft_weights`).

``nft-weights`` moves every weight, so the BatchNorm running statistics tracked during training lag
behind the weights: :func:`source_batch_statistics` records the statistics of the current weights on
the step's source batch (what the deployed model is judged with under ``deployed_stats =
"source-batch"``), :func:`recalibrate_batch_norm` re-estimates the running statistics at the end,
and :class:`SourceGuard` scales the thief terms down when the source accuracy falls
(``source_guard``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from mapguard._errors import ConfigError
from mapguard.masking import TensorSource

__all__ = [
    "SourceGuard",
    "batch_accuracy",
    "recalibrate_batch_norm",
    "source_batch_statistics",
    "split_held_out",
]


@contextmanager
def source_batch_statistics(net: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record, during the block, each BatchNorm layer's input mean and (unbiased) variance per
    channel (detached), keyed as its ``running_mean`` / ``running_var`` buffers."""
    stats: dict[str, torch.Tensor] = {}
    handles = []
    for name, layer in net.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:

            def record(module: nn.Module, args: tuple, prefix: str = name) -> None:
                x = args[0].detach()
                dims = [0, *range(2, x.dim())]
                kind = module.running_mean.dtype
                stats[f"{prefix}.running_mean"] = x.mean(dims).to(kind)
                stats[f"{prefix}.running_var"] = x.var(dims, unbiased=True).to(kind)

            handles.append(layer.register_forward_pre_hook(record))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


class SourceGuard:
    """The ``source_guard`` gate: the running mean of a source accuracy against the original
    model's, both in train mode (batch statistics, so ``net``'s running statistics stay as they
    are): the training batches' accuracy, or with ``held_out`` images (``guard_holdout``) the
    accuracy of one of their batches per step (:meth:`held_out_accuracy`), which the source term
    never fits."""

    def __init__(self, net: nn.Module, source: TensorSource, cfg: Any,
                 held_out: TensorSource | None = None) -> None:  # fmt: skip
        probe, device = copy.deepcopy(net).train(), next(net.parameters()).device
        self._next = 0
        if held_out is not None:
            size = cfg.batch_size
            self._batches = [(held_out.x[i : i + size], held_out.y[i : i + size])
                             for i in range(0, len(held_out), size)]  # fmt: skip
            with torch.no_grad():
                hits = [_hits(probe(x.to(device)), y.to(device)) for x, y in self._batches]
            start = sum(hits) / len(held_out)
        else:
            accs = []
            with torch.no_grad():
                for j, batch in enumerate(source.batches(epoch=0, batch_size=cfg.batch_size)):
                    if j == 4:
                        break
                    accs.append(batch_accuracy(probe(batch.x.to(device)), batch.y.to(device)))
            start = sum(accs) / len(accs)
        self.floor, self.band = start - cfg.source_guard, cfg.source_guard
        self.mean, self.gate = self.floor + self.band, 1.0

    @torch.no_grad()
    def held_out_accuracy(self, net: nn.Module, params: dict, buffers: dict) -> float:
        """The accuracy of the next held-out batch (in turn) under ``params``, in train mode on
        copies of ``buffers`` (the running statistics are not touched)."""
        x, y = self._batches[self._next % len(self._batches)]
        self._next += 1
        device = next(net.parameters()).device
        copies = {n: b.clone() for n, b in buffers.items()}
        was = net.training
        net.train()
        try:
            logits = functional_call(net, {**params, **copies}, (x.to(device),))
        finally:
            net.train(was)
        return batch_accuracy(logits, y.to(device))

    def update(self, source_accuracy: float) -> None:
        self.mean = 0.9 * self.mean + 0.1 * source_accuracy
        self.gate = min(1.0, max(0.0, 1.0 - (self.floor - self.mean) / self.band))


def split_held_out(source: TensorSource, n: int, seed: int) -> tuple[TensorSource, TensorSource]:
    """``source`` without ``n`` images drawn under ``seed``, and those ``n`` images (the held-out
    guard set of ``guard_holdout``)."""
    if source.y is None or not 0 < n < len(source):
        raise ConfigError(f"guard_holdout must be between 1 and {len(source) - 1} (the labelled "
                          f"source has {len(source)} images), got {n}")  # fmt: skip
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed + 29))
    keep, out = order[n:].sort().values, order[:n].sort().values
    rest = TensorSource(source.x[keep], source.y[keep], seed=source.seed, name=source.name,
                        augment=source.augment)  # fmt: skip
    return rest, TensorSource(source.x[out], source.y[out], seed=source.seed,
                              name=f"{source.name} (held out)")  # fmt: skip


def _hits(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).sum())


def batch_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``logits``' rows whose arg-max is ``y``."""
    return float((logits.detach().argmax(1) == y).float().mean())


@torch.no_grad()
def recalibrate_batch_norm(net: nn.Module, source: TensorSource, *, batch_size: int) -> None:
    """Re-estimate every BatchNorm layer's running statistics on one pass over ``source`` (a
    cumulative average, in train mode; nothing else changes): the statistics tracked while the
    weights moved lag behind them, and the deployed model normalises with these."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    device = next(net.parameters()).device
    for batch in source.batches(epoch=0, batch_size=batch_size):
        net(batch.x.to(device))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
