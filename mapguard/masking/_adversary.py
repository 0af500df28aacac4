"""Objective terms that simulate a thief who adapts the masked model to a target domain.

:class:`SimulatedFineTune` is the fine-tuning-resistant MAP term (``map-nft``, formulas in
``docs/METHOD.md``): each learning step it fine-tunes a copy of the masked weights for a few SGD
steps on labelled target images (first-order, as first-order MAML / SOPHON do) and rewards the
*adapted* model for still failing on held-out target images of the same batch. The gradient
reaches the mask scores through the masked weights the simulation starts from (the
straight-through estimator), so the learner prefers masks from which a few target steps lead
nowhere. The term reads the masked model through :meth:`SimulatedFineTune.bind`, which the learner
calls once before the first step on every term that has it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mapguard._config import ConfigMixin, check_int, check_number, check_range
from mapguard._errors import ConfigError
from mapguard.masking._distributed import DistInfo
from mapguard.masking._learner import _endless
from mapguard.masking._objectives import ObjectiveTerm, StepView, bounded_cross_entropy
from mapguard.masking._parametrize import MaskedModel
from mapguard.masking._sources import Batch, BatchSource

__all__ = ["AdversaryConfig", "SimulatedFineTune"]

Params = dict[str, torch.Tensor]


@contextlib.contextmanager
def _batch_norm_mode(model: nn.Module, batch_stats: bool) -> Iterator[None]:
    """BatchNorm layers normalise with the batch's statistics (as a thief's train-mode fine-tuning
    does) while the block runs; their flags are restored afterwards."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.training for m in layers]
    for m in layers:
        m.train(batch_stats)
    try:
        yield
    finally:
        for m, mode in zip(layers, before):
            m.train(mode)


@dataclass(frozen=True, kw_only=True)
class AdversaryConfig(ConfigMixin, what="map-nft adversary"):
    """The simulated thief of :class:`SimulatedFineTune` (``map-nft``'s ``adversary_*`` options).

    Attributes:
        weight: Weight of the term in the mask objective (0 = plain MAP).
        steps: Simulated SGD steps on the thief's half batch per learning step.
        lr: Learning rate of the simulated steps.
        momentum: Momentum of the simulated steps (the thief's SGD uses 0.9).
        cap: Per-sample cross-entropy cap of the adapted model's loss.
        batch_size: Labelled target images per learning step (half to adapt, half to judge).
        batch_stats: BatchNorm uses batch statistics in the simulation (train-mode fine-tuning).
    """

    weight: float = 5.0
    steps: int = 3
    lr: float = 0.05
    momentum: float = 0.9
    cap: float = 5.0
    batch_size: int = 64
    batch_stats: bool = True

    def __post_init__(self) -> None:
        check_number("adversary_weight", self.weight, positive=False)
        check_int("adversary_steps", self.steps, low=0)
        check_int("adversary_batch_size", self.batch_size, low=2)
        for name in ("lr", "cap"):
            check_number(f"adversary_{name}", getattr(self, name), positive=True)
        check_range("adversary_momentum", self.momentum, lo=0, hi=1, hi_open=True)
        if not isinstance(self.batch_stats, bool):
            raise ConfigError(
                f"adversary_batch_stats must be true or false, got {self.batch_stats!r}"
            )


@dataclass(eq=False)
class SimulatedFineTune(ObjectiveTerm, name="adversary"):
    """``-mean_j min(CE(f_{θ_j}(x_out), y_out), cap)`` over the points ``θ_0`` (the masked weights)
    and ``θ_k`` (after ``config.steps`` simulated SGD steps with momentum on ``x_in``).

    Each step draws one labelled batch from ``data`` and splits it in halves: ``x_in`` is the
    thief's training half, ``x_out`` the held-out half the adapted model is judged on. The inner
    steps update every parameter (weights, biases, BatchNorm affine), as the ``direct-all`` thief
    does; they are first-order: ``θ_k = θ_0 + Δ`` with ``Δ`` detached, so the gradient of the
    term w.r.t. the mask is that of the adapted loss at ``θ_k`` (times each weight, via the STE).
    With ``config.batch_stats`` BatchNorm uses each batch's statistics in the simulation (a
    thief's train-mode fine-tuning re-estimates them; even no step at all then undoes
    statistics-based degradation).
    """

    data: BatchSource = field(repr=False)
    config: AdversaryConfig = field(default_factory=AdversaryConfig)
    _masked: MaskedModel | None = field(default=None, init=False, repr=False)
    _batches: Iterator[Batch] | None = field(default=None, init=False, repr=False)

    @property
    def weight(self) -> float:  # type: ignore[override]
        return self.config.weight

    def bind(self, masked: MaskedModel) -> None:
        """Called by the learner once: the masked model whose mask is being learned."""
        self._masked = masked

    def _next(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if self._batches is None:
            self._batches = _endless(self.data, self.config.batch_size, DistInfo())
        b = next(self._batches)
        if b.y is None:
            raise ConfigError(f"adversary data '{self.data.name}' needs labels")
        half = b.x.shape[0] // 2
        x, y = b.x.to(device), b.y.to(device)
        return x[:half], y[:half], x[half:], y[half:]

    def value(self, view: StepView) -> torch.Tensor:
        if self._masked is None:
            raise ConfigError("SimulatedFineTune was not bound to a masked model")
        model = self._masked.original
        theta = _masked_params(self._masked)
        x_in, y_in, x_out, y_out = self._next(view.keep_logits.device)
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        with _batch_norm_mode(model, self.config.batch_stats):
            delta = self._adapt(model, theta, buffers, x_in, y_in)
            judged = [theta, {n: t + delta[n] for n, t in theta.items()}]
            losses = [
                bounded_cross_entropy(
                    functional_call(model, {**p, **buffers}, (x_out,)), y_out, self.config.cap
                )
                for p in judged
            ]
        return torch.stack(losses).mean()

    def _adapt(
        self, model: nn.Module, theta: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor
    ) -> Params:
        """``Δ`` of ``steps`` SGD-with-momentum steps on ``(x, y)`` from ``θ`` (detached)."""
        delta = {n: torch.zeros_like(t) for n, t in theta.items()}
        velocity = {n: torch.zeros_like(t) for n, t in theta.items()}
        for _ in range(self.config.steps):
            leaf = {n: (t.detach() + delta[n]).requires_grad_() for n, t in theta.items()}
            loss = F.cross_entropy(functional_call(model, {**leaf, **buffers}, (x,)).float(), y)
            grads = torch.autograd.grad(loss, list(leaf.values()))
            for (n, _), g in zip(leaf.items(), grads):
                velocity[n] = self.config.momentum * velocity[n] + g
                delta[n] = delta[n] - self.config.lr * velocity[n]
        return delta


def _masked_params(masked: MaskedModel) -> Params:
    """Every parameter of the original, detached, with ``w * mask`` (STE) for the masked weights."""
    params = {n: p.detach() for n, p in masked.original.named_parameters()}
    for name, mask in masked.scores.masks().items():
        params[name] = params[name] * mask
    return params
