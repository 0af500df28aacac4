"""Batch sources and the objective term of the watermark embedding.

- :class:`NegativeKeySource` (a *keep* source): source images, each stamped with a fresh random
  key of the trigger family, held to the original model's outputs on the clean image. This makes
  the protected model ignore the family in general, so that only the secret keys break it.
- :class:`SecretTriggerSource`: source images stamped with the secret triggers (round-robin), as
  the *degrade* source (true labels) and, for a targeted family, the source of
  :class:`TargetTerm` (labels = each secret's target class).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mapguard._errors import ConfigError
from mapguard.masking import Batch, BatchSource, ObjectiveTerm, StepView
from verification.triggers import Trigger, TriggerFamily, random_secret

__all__ = [
    "AUGMENT_RANGES",
    "AugmentedSource",
    "Images",
    "NegativeKeySource",
    "SecretTriggerSource",
    "TargetTerm",
    "WrappedSource",
    "stack_triggers",
    "stamp",
]


def stack_triggers(triggers: Sequence[Trigger]) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend weights ``[T, 1, H, W]`` and patterns ``[T, 3, H, W]`` of ``triggers``."""
    return (
        torch.stack([t.alpha_map for t in triggers]),
        torch.stack([t.pattern for t in triggers]),
    )


def stamp(x: torch.Tensor, alpha: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``(1 - A) * x + A * P`` per image (the same formula as :meth:`Trigger.apply`)."""
    return torch.lerp(x, pattern.expand_as(x), alpha.expand_as(x))


def _order(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    return [order[s : s + batch_size] for s in range(0, max(n - batch_size, 0) + 1, batch_size)]


def _share(batch_size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s part of every global batch."""
    if batch_size % world_size:
        raise ConfigError(f"batch size {batch_size} is not divisible by {world_size} processes")
    share = batch_size // world_size
    return slice(rank * share, (rank + 1) * share)


class Images:
    """Float images ``[3, S, S]`` by index: a tensor held in memory, or a ``Dataset`` of ``(x,
    label)`` items (a folder from :func:`mapguard.data.open_data`) decoded by ``workers``
    DataLoader processes only when a batch needs them. Both give the same pixels."""

    def __init__(self, data: torch.Tensor | Dataset, *, workers: int = 0) -> None:
        self.tensor = data if isinstance(data, torch.Tensor) else None
        self.dataset, self.workers = data, workers
        if len(self) == 0 or (self.tensor is not None and self.tensor.ndim != 4):
            shape = list(self.tensor.shape) if self.tensor is not None else "an empty dataset"
            raise ConfigError(f"watermark sources need images [N, 3, H, W], got {shape}")

    def __len__(self) -> int:
        return int(self.tensor.shape[0]) if self.tensor is not None else len(self.dataset)

    def take(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each index tensor in ``batches``, in turn."""
        if self.tensor is not None:
            yield from (self.tensor[idx] for idx in batches)
            return
        sampler = [idx.tolist() for idx in batches]
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.workers)
        yield from (x for x, _ in loader)

    def chunks(self, size: int = 512) -> Iterator[torch.Tensor]:
        """Every image in order, ``size`` at a time."""
        yield from self.take(
            [torch.arange(i, min(i + size, len(self))) for i in range(0, len(self), size)]
        )


class NegativeKeySource(BatchSource):
    """Source images with fresh random keys of ``family``, held to the original's outputs.

    Keys are drawn from a seeded generator (they are public negatives, not secrets), a new one per
    image and step. The teacher is the original model on the *clean* image (``clean_teacher``:
    the protected model must ignore random keys) or on the stamped image (it must react to them
    as the original did).

    Args:
        x: Source images ``[N, 3, H, W]`` in ``[0, 1]``.
        family: The trigger family of the secrets.
        params: Its parameters.
        seed: Seed of the keys and the shuffle.
        clean_teacher: Hold stamped images to the original's outputs on the clean image.
    """

    name = "negative-keys"

    def __init__(
        self,
        x: Images | torch.Tensor,
        family: TriggerFamily,
        params: Mapping[str, Any],
        *,
        seed: int,
        clean_teacher: bool = True,
    ) -> None:
        self.x = x if isinstance(x, Images) else Images(x)
        self.family, self.params, self.seed = family, dict(params), seed
        self.clean_teacher = clean_teacher
        self.teacher: torch.Tensor | None = None

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.x) // batch_size)

    @torch.no_grad()
    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> BatchSource:
        if not self.clean_teacher:
            return self  # the learner runs the original on each stamped batch
        self.teacher = torch.cat([teacher(x).float().cpu() for x in self.x.chunks(512)])
        return self

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        if self.clean_teacher and self.teacher is None:
            raise ConfigError("negative-key source needs cached teacher logits (cache_teacher)")
        rng = np.random.default_rng([self.seed, epoch])
        part = _share(batch_size, rank, world_size)
        order = _order(len(self.x), batch_size, self.seed, epoch)
        for idx, x in zip(order, self.x.take([idx[part] for idx in order]), strict=True):
            alpha, pattern = self._draw(rng, len(idx))  # every rank draws the whole batch's keys
            teacher = self.teacher[idx[part]] if self.teacher is not None else None
            yield Batch(stamp(x, alpha[part], pattern[part]), None, teacher)

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Blend weights and patterns of ``n`` fresh family keys, in a random order.

        The shuffle adds nothing to fresh iid keys, but it draws from ``rng``: it stays so that a
        seed gives the same negatives, and the same mask, as before.
        """
        parts = [self.family.derive(random_secret(rng), params=self.params) for _ in range(n)]
        alpha, pattern = stack_triggers(parts)
        perm = torch.from_numpy(rng.permutation(n))
        return alpha[perm], pattern[perm]


class SecretTriggerSource(BatchSource):
    """Source images stamped with the secret triggers, in turn; labels true or the targets.

    Args:
        x: Source images ``[N, 3, H, W]``.
        y: Their true labels ``[N]``.
        triggers: The secret triggers.
        seed: Shuffle seed.
        targets: If given, each image's label is its trigger's target class instead.
        name: Source name.
        placeholder: Yield one image per batch: the learner needs a degrade source even when
            the degrade term's weight is 0, and its images would be computed for nothing.
    """

    def __init__(
        self,
        x: Images | torch.Tensor,
        y: torch.Tensor,
        triggers: Sequence[Trigger],
        *,
        seed: int,
        targets: Sequence[int] | None = None,
        name: str = "secret-triggers",
        placeholder: bool = False,
    ) -> None:
        if not triggers:
            raise ConfigError("need at least one secret trigger")
        self.x = x if isinstance(x, Images) else Images(x)
        self.y, self.seed, self.name = y, seed, name
        self.alpha, self.pattern = stack_triggers(triggers)
        self.targets = None if targets is None else torch.tensor(list(targets), dtype=torch.int64)
        self.placeholder = placeholder

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.x) // batch_size)

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        k = self.alpha.shape[0]
        part = slice(rank, rank + 1) if self.placeholder else _share(batch_size, rank, world_size)
        order = _order(len(self.x), batch_size, self.seed, epoch)
        for idx, x in zip(order, self.x.take([idx[part] for idx in order]), strict=True):
            which = ((torch.arange(len(idx)) + epoch) % k)[part]
            ys = self.y[idx[part]] if self.targets is None else self.targets[which]
            yield Batch(stamp(x, self.alpha[which], self.pattern[which]), ys, None)


class TargetTerm(ObjectiveTerm):
    """Send secret-triggered images to their secret's target class: ``mean CE(masked(x), t)``.

    The per-sample cross-entropy is floored at ``floor`` (no gradient once an image is sent
    confidently enough), so the term stops pulling on the mask when its job is done.
    """

    name = "target"

    def __init__(self, weight: float, source: SecretTriggerSource, *, floor: float = 0.05) -> None:
        if source.targets is None:
            raise ConfigError("the target term needs a source labelled with target classes")
        self.weight, self.source, self.floor = weight, source, floor

    def value(self, view: StepView) -> torch.Tensor:
        logits, batch = view.extra[self.name]
        ce = F.cross_entropy(logits.float(), batch.y.to(logits.device), reduction="none")
        return ce.clamp(min=self.floor).mean()


#: Families and parameter ranges of :class:`AugmentedSource` (a thief's likely preprocessing).
AUGMENT_RANGES: dict[str, tuple[str, float, float]] = {
    "jpeg": ("quality", 20, 90),
    "blur": ("sigma", 0.3, 1.2),
    "resize": ("scale", 0.5, 0.9),
    "noise": ("std", 0.02, 0.15),
}


class WrappedSource(BatchSource):
    """A source that yields another's (``inner``) batches, changed; the teacher goes to it."""

    inner: BatchSource

    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> BatchSource:
        self.inner = self.inner.with_teacher(teacher)
        return self


class AugmentedSource(WrappedSource):
    """``inner``'s batches with each image, with probability ``prob``, passed through a random
    query-time transform (:data:`AUGMENT_RANGES`; parameters drawn uniformly, JPEG quality an
    integer), so that the behaviour learned on them survives a thief's preprocessing.

    Labels and cached teacher logits are passed through unchanged (the learner computes the
    teacher on the transformed images when the batch carries none).
    """

    def __init__(self, inner: BatchSource, prob: float, *, seed: int) -> None:
        if not 0 <= prob <= 1:
            raise ConfigError(f"augmentation probability must be in [0, 1], got {prob!r}")
        self.inner, self.prob, self.seed = inner, float(prob), seed
        self.name = inner.name

    def steps_per_epoch(self, batch_size: int) -> int | None:
        return self.inner.steps_per_epoch(batch_size)

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        from verification.transforms import make_transform

        rng = np.random.default_rng([self.seed, epoch, rank])
        families = sorted(AUGMENT_RANGES)
        for batch in self.inner.batches(
            epoch=epoch, batch_size=batch_size, rank=rank, world_size=world_size
        ):
            x = batch.x.clone()
            for i in np.flatnonzero(rng.random(x.shape[0]) < self.prob):
                family = families[int(rng.integers(len(families)))]
                param, lo, hi = AUGMENT_RANGES[family]
                value = rng.uniform(lo, hi)
                value = int(round(value)) if family == "jpeg" else float(value)
                extra = {"seed": int(rng.integers(2**31))} if family == "noise" else {}
                t = make_transform(family, **{param: value}, **extra)
                x[i : i + 1] = t(x[i : i + 1])
            yield Batch(x, batch.y, batch.teacher)
