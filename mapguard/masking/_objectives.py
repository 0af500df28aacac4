"""The terms of the mask objective (formulas in ``docs/METHOD.md``).

A term is an :class:`ObjectiveTerm`: one hook, :meth:`ObjectiveTerm.value`, that turns the
:class:`StepView` of one optimisation step into a scalar. The learner minimises
``sum(term.weight * term.value(view))``. Extra terms may bring their own :class:`BatchSource`;
their images then go through the masked model in the same forward pass and their logits are in
``view.extra[term.name]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mapguard.masking._sources import Batch, BatchSource

__all__ = [
    "BNStatistics",
    "BoundedDegrade",
    "FeatureTap",
    "KeepAgreement",
    "KeepKL",
    "ObjectiveTerm",
    "PrunedFraction",
    "StepView",
    "bn_distance",
    "bounded_cross_entropy",
    "keep_kl",
    "linear_inputs",
]


@dataclass(frozen=True, kw_only=True, eq=False)
class StepView:
    """Everything a term may look at in one step (all logits from the *masked* model)."""

    keep_logits: torch.Tensor
    teacher_logits: torch.Tensor
    degrade_logits: torch.Tensor
    degrade_labels: torch.Tensor
    pruned_fraction: torch.Tensor
    bn_stats: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...] = ()
    extra: dict[str, tuple[torch.Tensor, Batch]] = field(default_factory=dict)
    #: Inputs of every ``nn.Linear`` (in module order) in the masked forward pass, all images
    #: concatenated; recorded only when a term sets ``needs_features``.
    features: tuple[torch.Tensor, ...] = ()
    #: Rows of each extra term's images in the concatenated batch (index ``features`` with it).
    rows: dict[str, slice] = field(default_factory=dict)
    #: The masked model itself (a ``MaskedModel``) for terms that need further passes, e.g.
    #: with simulated weight changes; ``None`` under DistributedDataParallel.
    model: nn.Module | None = None
    epoch: int = 0
    step: int = 0


class ObjectiveTerm(ABC):
    """A weighted term of the objective (lower is better)."""

    name: str = "term"
    weight: float = 1.0
    source: BatchSource | None = None
    #: Ask the learner to record the masked model's Linear-layer inputs (``StepView.features``).
    needs_features: bool = False

    @abstractmethod
    def value(self, view: StepView) -> torch.Tensor:
        """The term's scalar value (before weighting) for this step."""


def keep_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))`` (label-free)."""
    log_p = F.log_softmax(teacher.float() / temperature, dim=1)
    log_q = F.log_softmax(student.float() / temperature, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return kl.mean() * temperature**2


def bounded_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, cap: float) -> torch.Tensor:
    """``-mean_i min(CE_i, cap)``: rewards wrong answers, saturating per sample at ``cap``.

    Clamping each sample (not the batch mean) keeps a gradient on the samples still below the cap.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return -ce.clamp(max=cap).mean()


def bn_distance(stats: tuple[tuple[torch.Tensor, ...], ...]) -> torch.Tensor:
    """``sum_l ||mu_l - mu_l^run||_2 + ||var_l - var_l^run||_2`` (Yin et al. 2020)."""
    total = torch.zeros(())
    for mean, var, run_mean, run_var in stats:
        total = total.to(mean.device) + torch.linalg.vector_norm(mean - run_mean)
        total = total + torch.linalg.vector_norm(var - run_var)
    return total


class KeepKL(ObjectiveTerm):
    """Preserve the original model's behaviour on keep images: ``KL(original || masked)``."""

    name = "keep"

    def __init__(self, weight: float = 1.0, temperature: float = 1.0) -> None:
        self.weight, self.temperature = weight, temperature

    def value(self, view: StepView) -> torch.Tensor:
        return keep_kl(view.keep_logits, view.teacher_logits, self.temperature)


class KeepAgreement(ObjectiveTerm):
    """Keep the original's decisions: ``mean CE(masked(x), argmax original(x))`` (label-free).

    Unlike the KL, whose gradient vanishes at the all-ones start, this term has a first-order
    gradient from step 0, so weights the source relies on are defended before they are pruned.
    """

    name = "keep_ce"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def value(self, view: StepView) -> torch.Tensor:
        return F.cross_entropy(view.keep_logits.float(), view.teacher_logits.argmax(1))


class BoundedDegrade(ObjectiveTerm):
    """Break the model on degrade images: ``-mean_i min(CE(masked(x_i), y_i), cap)``."""

    name = "degrade"

    def __init__(self, weight: float = 1.0, cap: float = 5.0) -> None:
        self.weight, self.cap = weight, cap

    def value(self, view: StepView) -> torch.Tensor:
        return bounded_cross_entropy(view.degrade_logits, view.degrade_labels, self.cap)


class PrunedFraction(ObjectiveTerm):
    """Regulariser: the fraction of masked weights set to zero."""

    name = "prune"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def value(self, view: StepView) -> torch.Tensor:
        return view.pruned_fraction


class BNStatistics(ObjectiveTerm):
    """Keep the BatchNorm input statistics of keep images at the stored running statistics."""

    name = "bn"

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = weight

    def value(self, view: StepView) -> torch.Tensor:
        return bn_distance(view.bn_stats)


class BNRecorder:
    """Forward pre-hooks that record per-channel mean/var of the first ``n`` inputs of each BN."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.n: int = 0
        self.stats: list[tuple[torch.Tensor, ...]] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if self.n <= 0 or module.running_mean is None:
            return
        x = args[0][: self.n].float()
        dims = [0] + list(range(2, x.ndim))
        self.stats.append(
            (x.mean(dims), x.var(dims, unbiased=False), module.running_mean, module.running_var)
        )

    def start(self, n: int) -> None:
        self.n, self.stats = n, []

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class FeatureTap:
    """Forward pre-hooks recording the input of every ``nn.Linear`` while switched on.

    The learner switches it on only around the masked forward pass, so teacher passes through
    the same modules are not recorded.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.on = False
        self.inputs: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if self.on:
            self.inputs.append(args[0].flatten(1))

    def start(self) -> None:
        self.on, self.inputs = True, []

    def stop(self) -> tuple[torch.Tensor, ...]:
        out, self.on, self.inputs = tuple(self.inputs), False, []
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@torch.no_grad()
def linear_inputs(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512
) -> tuple[torch.Tensor, ...]:
    """The inputs of every ``nn.Linear`` of ``model`` (eval mode) on ``x``, on the CPU."""
    tap = FeatureTap(model)
    device = next(model.parameters()).device
    parts: list[tuple[torch.Tensor, ...]] = []
    try:
        for i in range(0, x.shape[0], batch_size):
            tap.start()
            model(x[i : i + batch_size].to(device))
            parts.append(tuple(f.float().cpu() for f in tap.stop()))
    finally:
        tap.close()
    return tuple(torch.cat(layer) for layer in zip(*parts))
