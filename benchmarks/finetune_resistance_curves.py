"""The thief of the fine-tuning-resistance benchmark and the SLC-AUC (``finetune_resistance``).

A thief holds ``N`` labelled target images. It keeps a fifth of them (at least one) as its own
validation split, fine-tunes on the rest with each learning rate of the grid and keeps the model
with the best validation accuracy (ties: the first, i.e. the smallest learning rate). Strategies
are NTLBench's (Hong et al., IJCAI 2025): ``direct-FC`` / ``direct-all`` train the last linear
layer / every parameter of the stolen model, ``initFC-FC`` / ``initFC-all`` re-initialise the last
linear layer first. FC-only training keeps BatchNorm in eval mode (as FTLL); ``all`` trains in
train mode (statistics re-estimated on the target). Outside NTLBench, ``frozenBN-all``
(:data:`EXTRA_STRATEGIES`) trains every parameter with BatchNorm in eval mode (the stolen model's
running statistics kept): a thief against protections that live in BatchNorm statistics. SGD
(momentum 0.9, Nesterov, weight decay 5e-4), one-cycle schedule, the library's light
augmentation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mapguard.attacks._train import last_linear, reinit
from mapguard.training import augment_batch

__all__ = [
    "EXTRA_STRATEGIES",
    "STRATEGIES",
    "Thief",
    "attack_curve_point",
    "auc",
    "finetune",
    "slc_auc",
    "steps_for",
]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
STRATEGIES = ("direct-FC", "direct-all", "initFC-FC", "initFC-all")
#: Thieves outside NTLBench's four (not in the "best" of the benchmark's tables).
EXTRA_STRATEGIES = ("frozenBN-all",)


@dataclass(frozen=True, kw_only=True)
class Thief:
    """The attacker's budget: learning-rate grid, batch size and step budget per ``N``, and the
    optimiser (``sgd``: momentum 0.9, Nesterov; ``adam``; both weight decay 5e-4, one-cycle)."""

    lrs: tuple[float, ...]
    batch_size: int = 32
    epochs: int = 20
    min_steps: int = 40
    max_steps: int = 200
    optimizer: str = "sgd"


def steps_for(n_train: int, thief: Thief) -> int:
    """``epochs`` passes over ``n_train`` images, clamped to ``[min_steps, max_steps]``."""
    per_epoch = math.ceil(n_train / thief.batch_size)
    return min(thief.max_steps, max(thief.min_steps, thief.epochs * per_epoch))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i : i + 500]).argmax(1) == y[i : i + 500]).sum())
                   for i in range(0, len(x), 500))  # fmt: skip
    return hits / max(1, len(x))


def finetune(
    model: nn.Module, strategy: str, x: torch.Tensor, y: torch.Tensor, *, lr: float, seed: int,
    thief: Thief, augment: Augment = augment_batch,
) -> nn.Module:  # fmt: skip
    """A copy of ``model`` fine-tuned with ``strategy`` on ``(x, y)`` (batches through
    ``augment``)."""
    m = copy.deepcopy(model)
    if strategy.startswith("initFC"):
        reinit(last_linear(m), seed)
    if len(x) == 0:
        return m.eval()
    head_only = strategy.endswith("-FC")
    params = list(last_linear(m).parameters()) if head_only else list(m.parameters())
    if thief.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=5e-4)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = steps_for(len(x), thief)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bs = min(thief.batch_size, len(x))
    order = torch.randperm(len(x), generator=gen)
    m.train(not head_only and strategy != "frozenBN-all")
    for step in range(steps):
        start = (step * bs) % len(x)
        if start + bs > len(x):
            order, start = torch.randperm(len(x), generator=gen), 0
        idx = order[start : start + bs]
        loss = F.cross_entropy(m(augment(x[idx], gen)), y[idx])
        if not torch.isfinite(loss):
            break  # a diverged learning rate: the validation split rules it out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return m.eval()


def attack_curve_point(
    model: nn.Module, strategy: str, x: torch.Tensor, y: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor], *, seed: int, thief: Thief,
) -> dict[str, float]:  # fmt: skip
    """The thief's result with ``N = len(x)`` images: the learning rate its validation split
    picks, that model's validation and test accuracy."""
    if len(x) == 0:
        return {"lr": 0.0, "val": float("nan"), "test": _accuracy(finetune(
            model, strategy, x, y, lr=1.0, seed=seed, thief=thief), *test)}  # fmt: skip
    n_val = max(1, len(x) // 5)
    best: dict[str, float] | None = None
    for lr in thief.lrs:
        tuned = finetune(model, strategy, x[n_val:], y[n_val:], lr=lr, seed=seed, thief=thief)
        val = _accuracy(tuned, x[:n_val], y[:n_val])
        if best is None or val > best["val"]:
            best = {"lr": lr, "val": val, "test": _accuracy(tuned, *test)}
    assert best is not None
    return best


def auc(ns: Sequence[int], acc: Sequence[float]) -> float:
    """Trapezoid area under ``acc`` over the *positions* of the grid ``ns`` (equal spacing per
    grid point, i.e. roughly a log axis for 0, 10, 50, 100, 500), divided by the x-range."""
    if len(ns) < 2:
        return float(acc[0])
    area = sum((acc[i] + acc[i + 1]) / 2 for i in range(len(ns) - 1))
    return area / (len(ns) - 1)


def slc_auc(ns: Sequence[int], model_acc: Sequence[float], scratch_acc: Sequence[float]) -> float:
    """``(AUC(model) - AUC(scratch)) / AUC(scratch)`` over the grid ``ns`` (see :func:`auc`):
    0 = the stolen model is as good a start as random initialisation, < 0 worse, > 0 better."""
    base = auc(ns, scratch_acc)
    return (auc(ns, model_acc) - base) / base
