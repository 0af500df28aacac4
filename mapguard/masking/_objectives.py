"""The terms of the mask objective (formulas in ``docs/METHOD.md``).

A term is an :class:`ObjectiveTerm`: one hook, :meth:`ObjectiveTerm.value`, that turns the
:class:`StepView` of one optimisation step into a scalar. The learner minimises
``sum(term.weight * term.value(view))`` over :func:`default_terms` and the caller's extra terms.
Extra terms may bring their own :class:`BatchSource`; their images then go through the masked
model in the same forward pass and their logits are in ``view.extra[term.name]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mapguard.masking._config import MaskConfig
from mapguard.masking._sources import Batch, BatchSource

__all__ = [
    "BNStatistics",
    "BoundedDegrade",
    "KeepAgreement",
    "KeepKL",
    "ObjectiveTerm",
    "PrunedFraction",
    "StepView",
    "bn_distance",
    "bounded_cross_entropy",
    "default_terms",
    "keep_kl",
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
    epoch: int = 0
    step: int = 0


class ObjectiveTerm(ABC):
    """A weighted term of the objective (lower is better).

    A subclass names itself with a class attribute ``name`` or as ``class T(ObjectiveTerm,
    name="t")``; the name keys its logits in :attr:`StepView.extra` and its value in the history.
    """

    name: str = "term"
    weight: float = 1.0
    source: BatchSource | None = None

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name

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


@dataclass(eq=False)
class KeepKL(ObjectiveTerm, name="keep"):
    """Preserve the original model's behaviour on keep images: ``KL(original || masked)``."""

    weight: float = 1.0
    temperature: float = 1.0

    def value(self, view: StepView) -> torch.Tensor:
        return keep_kl(view.keep_logits, view.teacher_logits, self.temperature)


@dataclass(eq=False)
class KeepAgreement(ObjectiveTerm, name="keep_ce"):
    """Keep the original's decisions: ``mean CE(masked(x), argmax original(x))`` (label-free).

    Unlike the KL, whose gradient vanishes at the all-ones start, this term has a first-order
    gradient from step 0, so weights the source relies on are defended before they are pruned.
    """

    weight: float = 1.0

    def value(self, view: StepView) -> torch.Tensor:
        return F.cross_entropy(view.keep_logits.float(), view.teacher_logits.argmax(1))


@dataclass(eq=False)
class PrunedFraction(ObjectiveTerm, name="prune"):
    """Regulariser: the fraction of masked weights set to zero."""

    weight: float = 1.0

    def value(self, view: StepView) -> torch.Tensor:
        return view.pruned_fraction


@dataclass(eq=False)
class BNStatistics(ObjectiveTerm, name="bn"):
    """Keep the BatchNorm input statistics of keep images at the stored running statistics.

    The distance is :func:`bn_distance` over every BatchNorm layer, on the keep images only
    (DeepInversion's feature-statistics prior, Yin et al. 2020).
    """

    weight: float = 0.1

    def value(self, view: StepView) -> torch.Tensor:
        return bn_distance(view.bn_stats)


@dataclass(eq=False)
class BoundedDegrade(ObjectiveTerm, name="degrade"):
    """Break the model on degrade images: ``-mean_i min(CE(masked(x_i), y_i), cap)``.

    The true labels are used where the degrade source has them, else the original's decisions.
    """

    weight: float = 1.0
    cap: float = 5.0

    def value(self, view: StepView) -> torch.Tensor:
        return bounded_cross_entropy(view.degrade_logits, view.degrade_labels, self.cap)


def default_terms(cfg: MaskConfig) -> list[ObjectiveTerm]:
    """The terms every mask objective has, weighted as ``cfg`` says (zero-weight optional ones
    left out): keep, degrade and prune; keep agreement and BN statistics when switched on."""
    terms: list[ObjectiveTerm] = [
        KeepKL(cfg.keep_weight, cfg.temperature),
        BoundedDegrade(cfg.degrade_weight, cfg.degrade_cap),
        PrunedFraction(cfg.prune_weight),
    ]
    if cfg.keep_ce_weight > 0:
        terms.append(KeepAgreement(cfg.keep_ce_weight))
    if cfg.bn_weight > 0:
        terms.append(BNStatistics(cfg.bn_weight))
    return terms


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
