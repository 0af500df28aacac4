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

__all__ = [
    "HEADS",
    "AdversaryConfig",
    "SimulatedFineTune",
    "SimulatedSourceFineTune",
    "batch_norm_mode",
    "class_separation",
    "fresh_head",
    "head_params",
    "ridge_probe_logits",
    "sgd_delta",
]

Params = dict[str, torch.Tensor]

#: What the simulated thief does with the last linear layer (:class:`AdversaryConfig`).
HEADS = ("keep", "reinit", "alternate", "cycle", "both")


@contextlib.contextmanager
def batch_norm_mode(model: nn.Module, batch_stats: bool) -> Iterator[None]:
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
            the adapted point is judged), ``"alternate"`` between the two, step by step, or
            ``"cycle"`` through keep, reinit and a head-only thief (``direct-FC``: only the
            last linear layer adapts, BatchNorm on running statistics), or ``"both"``: a
            keep and a reinit thief every step, their terms summed (twice the inner steps).
        collapse: Weight (relative to the adapted cross-entropy) of the feature-collapse term:
            the class separation (:func:`class_separation`) of the target features the last
            linear layer reads, at every judged point and at the masked weights with BatchNorm
            on running statistics (what a head-only thief trains on); 0 = off.
        probe: Weight of a closed-form linear-probe thief (:func:`ridge_probe_logits`): a ridge
            head fitted on half the batch's features at the masked weights (BatchNorm on
            running statistics, as a head-only thief sees them), rewarded for failing on the
            other half; 0 = off.
        per_dim: the collapse term averages the separation of every feature dimension on its
            own (scale-free per dimension) instead of pooling the scatter over dimensions.
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
    collapse: float = 0.0
    probe: float = 0.0
    per_dim: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"unknown adversary_head {self.head!r}; choose one of: "
                              f"{', '.join(HEADS)}")  # fmt: skip
        check_number("adversary_weight", self.weight, positive=False)
        check_number("adversary_source_weight", self.source_weight, positive=False)
        check_number("adversary_collapse", self.collapse, positive=False)
        check_number("adversary_probe", self.probe, positive=False)
        check_int("adversary_steps", self.steps, low=0)
        check_int("adversary_batch_size", self.batch_size, low=2)
        for name in ("lr", "cap"):
            check_number(f"adversary_{name}", getattr(self, name), positive=True)
        check_range("adversary_momentum", self.momentum, lo=0, hi=1, hi_open=True)
        for name in ("batch_stats", "per_dim"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"adversary_{name} must be true or false, got {getattr(self, name)!r}"
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
        self._calls += 1
        losses, seps = [], []
        for mode in self._modes():
            ce, sep = self._simulate(model, theta, mode, (x_in, y_in, x_out, y_out))
            losses.append(ce)
            seps += sep
        loss = torch.stack(losses).sum()
        if self.config.collapse <= 0 and self.config.probe <= 0:
            return loss
        with batch_norm_mode(model, False):  # what a head-only thief trains on
            frozen = {n: b.detach() for n, b in model.named_buffers()}
            x, y = torch.cat([x_in, x_out]), torch.cat([y_in, y_out])
            _, feats = self._forward(model, theta, frozen, x)
        if self.config.collapse > 0:
            seps.append(self._separation(feats, y))
            loss = loss + self.config.collapse * torch.stack(seps).mean()
        if self.config.probe > 0:
            half, classes = len(x_in), _last_linear(model)[1].out_features
            probe = ridge_probe_logits(feats[:half], y_in, feats[half:], classes)
            loss = loss + self.config.probe * bounded_cross_entropy(probe, y_out, self.config.cap)
        return loss

    def _simulate(
        self, model: nn.Module, theta: Params, mode: str, data: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One simulated thief (``mode``): the mean ``-min(CE, cap)`` over its judged points and
        the class separations of their features."""
        x_in, y_in, x_out, y_out = data
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        start = {**theta, **fresh_head(model, seed=self._calls)} if mode == "reinit" else theta
        trained = set(head_params(model)) if mode == "fc" else set(start)
        with batch_norm_mode(model, self.config.batch_stats and mode != "fc"):
            delta = self._adapt(model, start, buffers, x_in, y_in, trained)
            adapted = {n: t + delta[n] if n in delta else t for n, t in start.items()}
            judged = [adapted] if mode == "reinit" else [start, adapted]
            points = [self._judge(model, p, buffers, x_out, y_out) for p in judged]
        return torch.stack([ce for ce, _ in points]).mean(), [sep for _, sep in points]

    def _modes(self) -> tuple[str, ...]:
        """This step's thieves: ``"keep"`` / ``"reinit"`` the head, or ``"fc"`` (head only)."""
        head = self.config.head
        if head == "alternate":
            return ("reinit",) if self._calls % 2 == 0 else ("keep",)
        if head == "cycle":
            return (("keep", "reinit", "fc")[self._calls % 3],)
        return ("keep", "reinit") if head == "both" else (head,)

    def _judge(
        self, model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``-min(CE, cap)`` of the model at ``params`` on ``(x, y)`` and the class separation
        of the features its last linear layer reads (0 when the collapse term is off)."""
        logits, feats = self._forward(model, params, buffers, x)
        ce = bounded_cross_entropy(logits, y, self.config.cap)
        return ce, self._separation(feats, y) if self.config.collapse > 0 else ce.new_zeros(())

    def _separation(self, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        classes = _last_linear(self._masked.original)[1].out_features  # type: ignore[union-attr]
        return class_separation(feats, y, classes, per_dim=self.config.per_dim)

    @staticmethod
    def _forward(
        model: nn.Module, params: Params, buffers: Params, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits at ``params`` and the features the last linear layer reads."""
        feats: list[torch.Tensor] = []
        hook = _last_linear(model)[1].register_forward_pre_hook(lambda _m, a: feats.append(a[0]))
        try:
            logits = functional_call(model, {**params, **buffers}, (x,))
        finally:
            hook.remove()
        return logits, feats[0]

    def _adapt(
        self, model: nn.Module, theta: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
        trained: set[str],
    ) -> Params:  # fmt: skip
        """``Δ`` (of the ``trained`` parameters) after ``steps`` SGD-with-momentum steps on
        ``(x, y)`` from ``θ`` (detached): :func:`sgd_delta` with this thief's settings."""
        cfg = self.config
        return sgd_delta(model, theta, buffers, x, y, trained, steps=cfg.steps, lr=cfg.lr,
                         momentum=cfg.momentum)  # fmt: skip


def sgd_delta(
    model: nn.Module, theta: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
    trained: set[str], *, steps: int, lr: float, momentum: float,
) -> Params:  # fmt: skip
    """``Δ`` (of the ``trained`` parameters, detached) after ``steps`` SGD-with-momentum steps on
    the cross-entropy of ``(x, y)`` from ``θ``: the first-order simulated thief's displacement
    (``model`` is only called through ``functional_call`` with ``θ`` and ``buffers``)."""
    delta = {n: torch.zeros_like(t) for n, t in theta.items() if n in trained}
    velocity = {n: torch.zeros_like(t) for n, t in delta.items()}
    for _ in range(steps):
        leaf = {n: (t.detach() + delta[n]).requires_grad_() for n, t in theta.items()
                if n in trained}  # fmt: skip
        fixed = {n: t.detach() for n, t in theta.items() if n not in trained}
        out = functional_call(model, {**fixed, **leaf, **buffers}, (x,))
        grads = torch.autograd.grad(F.cross_entropy(out.float(), y), list(leaf.values()))
        for (n, _), g in zip(leaf.items(), grads):
            velocity[n] = momentum * velocity[n] + g
            delta[n] = delta[n] - lr * velocity[n]
    return delta


def class_separation(
    features: torch.Tensor, labels: torch.Tensor, classes: int, *, per_dim: bool = False
) -> torch.Tensor:
    """Between-class over total scatter of ``features`` (flattened per sample), in ``[0, 1]``:
    ``sum_c n_c ||mu_c - mu||^2 / sum_i ||f_i - mu||^2`` (``per_dim``: the same ratio for every
    dimension on its own, averaged). 0 = every class has the same mean feature (a linear head
    cannot tell the classes apart by their means); scale-free."""
    f = features.float().flatten(1)
    onehot = F.one_hot(labels, classes).to(f.dtype)
    counts = onehot.sum(0)
    centred = f - f.mean(0)
    means = (onehot.T @ centred) / counts.clamp(min=1)[:, None]
    between = (counts[:, None] * means.pow(2)).sum(0)
    total = centred.pow(2).sum(0)
    if per_dim:
        return (between / (total + 1e-6)).mean()
    return between.sum() / (total.sum() + 1e-8)


@dataclass(eq=False)
class SimulatedSourceFineTune(SimulatedFineTune, name="adversary_source"):
    """:class:`SimulatedFineTune` whose thief adapts on clean source images (``inner``, labelled)
    and is judged on target images: the clean-source route (FTAL, TransNTL). Its weight is
    ``config.source_weight``."""

    @property
    def weight(self) -> float:  # type: ignore[override]
        return self.config.source_weight


def ridge_probe_logits(
    f_fit: torch.Tensor, y_fit: torch.Tensor, f_eval: torch.Tensor, classes: int, *,
    ridge: float = 1.0, scale: float = 10.0,
) -> torch.Tensor:  # fmt: skip
    """Logits of the closed-form linear probe a head-only thief could fit: ridge regression of
    centred one-hot labels on the standardised ``f_fit`` (penalty ``ridge`` per sample), applied
    to ``f_eval`` and multiplied by ``scale``. Differentiable in both feature sets."""
    a, b = f_fit.float().flatten(1), f_eval.float().flatten(1)
    mu, sd = a.mean(0), a.std(0) + 1e-3
    a, b = (a - mu) / sd, (b - mu) / sd
    target = F.one_hot(y_fit, classes).to(a.dtype) - 1.0 / classes
    gram = a.T @ a + ridge * len(a) * torch.eye(a.shape[1], device=a.device, dtype=a.dtype)
    return scale * (b @ torch.linalg.solve(gram, a.T @ target))


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def head_params(model: nn.Module) -> list[str]:
    """Parameter names of the last ``nn.Linear`` (what a head-only thief trains)."""
    name, head = _last_linear(model)
    return [f"{name}.{p}" for p, _ in head.named_parameters()]


def fresh_head(model: nn.Module, *, seed: int) -> Params:
    """The last ``nn.Linear``'s parameters drawn afresh as ``reset_parameters`` draws them."""
    name, head = _last_linear(model)
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
