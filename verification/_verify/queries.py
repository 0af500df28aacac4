"""Query the suspect on clean and triggered images; reduce answers to per-image contributions.

Two statistics: the untargeted one (:data:`STATISTICS`: a trigger breaks images) and, for trigger
families whose triggers name a target class (``targeted_patch``), the targeted one
(:data:`TARGETED_STATISTICS`: a trigger sends images into its key's own target class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from verification._backends.base import QueryBackend
from verification._errors import TriggerError
from verification._triggers.base import Trigger

__all__ = [
    "STATISTICS",
    "TARGETED_STATISTICS",
    "QueryOutcome",
    "query_triggers",
    "reduce_targeted",
    "statistic_definition",
    "target_classes",
]

STATISTICS = {
    "labels": "fraction of images right clean and wrong under the trigger",
    "probabilities": "mean over images of [right clean] * (p_clean(true) - p_trigger(true))",
}
TARGETED_STATISTICS = {
    "labels": "fraction of images right clean, not of the key's target class, and labelled the "
    "target class under the trigger",
    "probabilities": "mean over images of [right clean and not of the target class] * "
    "(p_trigger(target) - p_clean(target))",
}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class QueryOutcome:
    """Per-image reduction of the suspect's answers.

    Attributes:
        mode: ``"labels"`` or ``"probabilities"``.
        clean_correct: ``[n]`` bool, clean prediction equals the true label.
        contributions: ``[T, n]`` float64; ``g`` of trigger ``t`` is ``contributions[t].mean()``.
        accuracies: ``[T]`` accuracy under each trigger.
    """

    mode: str
    clean_correct: np.ndarray
    contributions: np.ndarray
    accuracies: np.ndarray


def _ask(backend: QueryBackend, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([backend.query(chunk) for chunk in x.split(batch_size)])


def _reduce(
    answers: torch.Tensor, labels: torch.Tensor, clean_correct: torch.Tensor, clean_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``answers`` [g, n] labels or [g, n, C] probabilities -> (contributions, accuracies)."""
    if answers.dim() == 2:
        right = answers == labels
        return (clean_correct & ~right).double(), right.double().mean(dim=1)
    true_p = answers.gather(2, labels.expand(answers.shape[0], -1)[..., None])[..., 0]
    right = answers.argmax(dim=2) == labels
    contrib = clean_correct.double() * (clean_p - true_p.double())
    return contrib, right.double().mean(dim=1)


def target_classes(triggers: Sequence[Trigger]) -> torch.Tensor | None:
    """``[T]`` target classes if every trigger names one, ``None`` if none does.

    Raises:
        TriggerError: some triggers name a target and others do not.
    """
    targets = [t.details.get("target") for t in triggers]
    if all(t is None for t in targets):
        return None
    if any(t is None for t in targets):
        raise TriggerError("cannot mix targeted and untargeted triggers in one verification")
    return torch.tensor(targets, dtype=torch.int64)


def reduce_targeted(
    answers: torch.Tensor,
    labels: torch.Tensor,
    clean_correct: torch.Tensor,
    clean_p: torch.Tensor | None,
    targets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image contributions of the targeted statistic and the accuracy under each trigger.

    Args:
        answers: ``[T, n]`` labels or ``[T, n, C]`` probabilities under the ``T`` triggers.
        labels: ``[n]`` true labels.
        clean_correct: ``[n]`` bool, clean answer right.
        clean_p: ``[n, C]`` clean probabilities (probability mode) or ``None``.
        targets: ``[T]`` target classes.

    Returns:
        ``(contributions [T, n] float64, accuracies [T] float64)``.
    """
    tgt = targets[:, None]
    eligible = clean_correct[None, :] & (labels[None, :] != tgt)
    if answers.dim() == 2:
        hit = answers == tgt
        accuracy = (answers == labels).double().mean(dim=1)
        return (eligible & hit).double(), accuracy
    if clean_p is None or clean_p.dim() != 2:
        raise TriggerError("probability mode needs the clean probabilities [n, C]")
    index = tgt.expand(-1, answers.shape[1])
    p_trig = answers.gather(2, index[..., None])[..., 0].double()
    p_clean = clean_p.double().gather(1, index.T).T
    accuracy = (answers.argmax(dim=2) == labels).double().mean(dim=1)
    return eligible.double() * (p_trig - p_clean), accuracy


def statistic_definition(targeted: bool, mode: str) -> str:
    """What ``g`` measures, for the result's ``statistic_definition``."""
    return (TARGETED_STATISTICS if targeted else STATISTICS)[mode]


def query_triggers(
    backend: QueryBackend,
    x: torch.Tensor,
    labels: torch.Tensor,
    triggers: Sequence[Trigger],
    *,
    batch_size: int,
    labels_only: bool,
) -> QueryOutcome:
    """Query ``x`` clean and under every trigger, stacking triggers into full batches."""
    n = x.shape[0]
    clean = _ask(backend, x, batch_size)
    if labels_only and clean.dim() == 2:
        clean = clean.argmax(dim=1)
    mode = "labels" if clean.dim() == 1 else "probabilities"
    clean_pred = clean if mode == "labels" else clean.argmax(dim=1)
    clean_correct = clean_pred == labels
    clean_p = clean.gather(1, labels[:, None])[:, 0].double() if mode == "probabilities" else None
    group = max(1, batch_size // n)
    targets = target_classes(triggers)  # targeted families: flips into each key's target class
    contribs, accs = [], []
    for start in range(0, len(triggers), group):
        chunk = triggers[start : start + group]
        answers = _ask(backend, torch.cat([t.apply(x) for t in chunk]), batch_size)
        if labels_only and answers.dim() == 2:
            answers = answers.argmax(dim=1)
        answers = answers.reshape(len(chunk), n, *answers.shape[1:])
        if targets is None:
            c, a = _reduce(answers, labels, clean_correct, clean_p)
        else:
            full_p = clean if mode == "probabilities" else None
            tgt = targets[start : start + len(chunk)]
            c, a = reduce_targeted(answers, labels, clean_correct, full_p, tgt)
        contribs.append(c)
        accs.append(a)
    return QueryOutcome(
        mode=mode,
        clean_correct=clean_correct.numpy(),
        contributions=torch.cat(contribs).numpy(),
        accuracies=torch.cat(accs).numpy(),
    )
