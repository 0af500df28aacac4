"""Batch sources: where the learner's *keep* and *degrade* images come from.

A :class:`BatchSource` yields ``Batch(x, y, teacher)`` for one epoch. ``y`` may be ``None``
(unlabelled data); ``teacher`` optionally carries the original model's logits for ``x`` so that
they need not be recomputed every step. SF-MAP / DF-MAP plug in their own sources (e.g. images
synthesised on the fly) by subclassing and implementing :meth:`BatchSource.batches`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from mapguard._errors import ConfigError
from mapguard.training import augment_batch

__all__ = ["Batch", "BatchSource", "TensorSource", "epoch_order"]


def epoch_order(
    n: int, *, seed: int, epoch: int, batch_size: int, world_size: int
) -> tuple[torch.Tensor, torch.Generator, int]:
    """The shuffled order of one epoch of ``n`` items (the one rule of every batch source):
    ``(order, generator, share)``; the generator, seeded by ``seed`` and ``epoch``, has drawn the
    permutation and goes on to draw any augmentation; a set smaller than a batch repeats to fill
    one; ``share`` is each of ``world_size`` processes' part of a batch."""
    if batch_size % world_size:
        raise ConfigError(f"batch size {batch_size} is not divisible by {world_size} processes")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    if n < batch_size:  # tiny sets: repeat to fill one batch
        order = order.repeat(math.ceil(batch_size / n))[:batch_size]
    return order, gen, batch_size // world_size


class Batch(NamedTuple):
    """One batch: float images ``[B, 3, H, W]``, optional labels, optional teacher logits."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    teacher: torch.Tensor | None = None


class BatchSource(ABC):
    """An endless supply of batches, one epoch at a time (one hook: :meth:`batches`)."""

    name: str = "batches"

    @abstractmethod
    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """Yield this rank's share of one epoch of batches of ``batch_size`` images (global).

        Every rank must yield the same number of batches; rank ``r`` takes the ``r``-th slice of
        size ``batch_size // world_size`` of each global batch. Shuffling must depend only on the
        source's own seed and ``epoch`` so that all ranks agree.
        """

    def steps_per_epoch(self, batch_size: int) -> int | None:
        """Number of global batches per epoch, or ``None`` when unknown / endless."""
        return None

    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> BatchSource:
        """A source whose batches carry ``teacher(x)``; the default computes nothing in advance."""
        return self


class TensorSource(BatchSource):
    """Batches from fixed tensors, reshuffled each epoch with a seeded generator.

    Example:
        >>> src = TensorSource(torch.rand(10, 3, 32, 32), torch.arange(10) % 2, seed=0)
        >>> [b.x.shape[0] for b in src.batches(epoch=0, batch_size=4)]
        [4, 4]
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        seed: int = 0,
        name: str = "tensors",
        teacher: torch.Tensor | None = None,
        augment: bool = False,
    ) -> None:
        if x.ndim != 4 or x.shape[0] == 0:
            raise ConfigError(
                f"source '{name}' needs a non-empty [N, C, H, W] tensor, got {tuple(x.shape)}"
            )
        if y is not None and y.shape[0] != x.shape[0]:
            raise ConfigError(f"source '{name}': {x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y, self.seed, self.name, self.teacher = x, y, seed, name, teacher
        self.augment = augment

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        order, gen, share = epoch_order(len(self), seed=self.seed, epoch=epoch,
                                        batch_size=batch_size, world_size=world_size)  # fmt: skip
        for start in range(0, self.steps_per_epoch(batch_size) * batch_size, batch_size):
            idx = order[start : start + batch_size]
            x = augment_batch(self.x[idx], gen) if self.augment else self.x[idx]
            mine = slice(rank * share, (rank + 1) * share)
            yield Batch(
                x[mine],
                None if self.y is None else self.y[idx][mine],
                None if self.teacher is None else self.teacher[idx][mine],
            )

    @torch.no_grad()
    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> TensorSource:
        if self.augment:  # logits of augmented images differ per epoch: compute them per step
            return self
        logits = torch.cat(
            [teacher(self.x[i : i + 512]).float().cpu() for i in range(0, len(self), 512)]
        )
        return TensorSource(self.x, self.y, seed=self.seed, name=self.name, teacher=logits)

    def __repr__(self) -> str:
        return f"TensorSource({self.name!r}, n={len(self)}, labelled={self.y is not None})"
