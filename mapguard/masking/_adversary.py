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
import math
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

__all__ = ["HEADS", "AdversaryConfig", "SimulatedFineTune", "SimulatedSourceFineTune"]

Params = dict[str, torch.Tensor]

#: What the simulated thief does with the last linear layer (:class:`AdversaryConfig`).
HEADS = ("keep", "reinit", "alternate")


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
        source_weight: Weight of a second thief that fine-tunes on clean *source* images (the
            FTAL / TransNTL route) and is judged on target images (0 = off).
        head: The simulated thief's last linear layer: ``"keep"`` it (``direct-all``),
            ``"reinit"`` it from a fresh random initialisation first (``initFC-all``; then only
            the adapted point is judged), or ``"alternate"`` between the two, step by step.
    """

    weight: float = 5.0
    steps: int = 3
    lr: float = 0.05
    momentum: float = 0.9
    cap: float = 5.0
    batch_size: int = 64
    batch_stats: bool = True
    source_weight: float = 0.0
    head: str = "keep"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"unknown adversary_head {self.head!r}; choose one of: "
                              f"{', '.join(HEADS)}")  # fmt: skip
        check_number("adversary_weight", self.weight, positive=False)
        check_number("adversary_source_weight", self.source_weight, positive=False)
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
    inner: BatchSource | None = field(default=None, repr=False)
    _masked: MaskedModel | None = field(default=None, init=False, repr=False)
    _iters: dict[str, Iterator[Batch]] = field(default_factory=dict, init=False, repr=False)
    _calls: int = field(default=0, init=False, repr=False)

    @property
    def weight(self) -> float:  # type: ignore[override]
        return self.config.weight

    def bind(self, masked: MaskedModel) -> None:
        """Called by the learner once: the masked model whose mask is being learned."""
        self._masked = masked

    def _draw(self, src: BatchSource, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if src.name not in self._iters:
            self._iters[src.name] = _endless(src, self.config.batch_size, DistInfo())
        b = next(self._iters[src.name])
        if b.y is None:
            raise ConfigError(f"adversary data '{src.name}' needs labels")
        return b.x.to(device), b.y.to(device)

    def _next(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``(x_in, y_in, x_out, y_out)``: halves of a ``data`` batch, or with ``inner`` half of
        an ``inner`` batch to adapt on and half of a ``data`` batch to judge."""
        x, y = self._draw(self.data, device)
        half = x.shape[0] // 2
        x_in, y_in = (x, y) if self.inner is None else self._draw(self.inner, device)
        return x_in[:half], y_in[:half], x[half:], y[half:]

    def value(self, view: StepView) -> torch.Tensor:
        if self._masked is None:
            raise ConfigError("SimulatedFineTune was not bound to a masked model")
        model = self._masked.original
        theta = _masked_params(self._masked)
        x_in, y_in, x_out, y_out = self._next(view.keep_logits.device)
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self._calls += 1
        head = self.config.head
        reinit = head == "reinit" or (head == "alternate" and self._calls % 2 == 0)
        if reinit:
            theta = {**theta, **_fresh_head(model, seed=self._calls)}
        with _batch_norm_mode(model, self.config.batch_stats):
            delta = self._adapt(model, theta, buffers, x_in, y_in)
            adapted = {n: t + delta[n] for n, t in theta.items()}
            judged = [adapted] if reinit else [theta, adapted]
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


@dataclass(eq=False)
class SimulatedSourceFineTune(SimulatedFineTune, name="adversary_source"):
    """:class:`SimulatedFineTune` whose thief adapts on clean source images (``inner``, labelled)
    and is judged on target images: the clean-source route (FTAL, TransNTL). Its weight is
    ``config.source_weight``."""

    @property
    def weight(self) -> float:  # type: ignore[override]
        return self.config.source_weight


def _fresh_head(model: nn.Module, *, seed: int) -> Params:
    """The last ``nn.Linear``'s parameters drawn afresh as ``reset_parameters`` draws them."""
    name, head = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(head.in_features)  # kaiming_uniform(a=sqrt(5)) and the bias: same bound
    out = {f"{name}.weight": (torch.rand(head.weight.shape, generator=gen) * 2 - 1) * bound}
    if head.bias is not None:
        out[f"{name}.bias"] = (torch.rand(head.bias.shape, generator=gen) * 2 - 1) * bound
    return {k: v.to(head.weight.device, head.weight.dtype) for k, v in out.items()}


def _masked_params(masked: MaskedModel) -> Params:
    """Every parameter of the original, detached, with ``w * mask`` (STE) for the masked weights."""
    params = {n: p.detach() for n, p in masked.original.named_parameters()}
    for name, mask in masked.scores.masks().items():
        params[name] = params[name] * mask
    return params
