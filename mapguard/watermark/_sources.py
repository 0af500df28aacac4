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

from mapguard._errors import ConfigError
from mapguard.masking import Batch, BatchSource, ObjectiveTerm, StepView
from verification.triggers import Trigger, TriggerFamily, random_secret

__all__ = [
    "AUGMENT_RANGES",
    "AugmentedSource",
    "NegativeKeySource",
    "SecretTriggerSource",
    "TargetTerm",
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


def _order(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    for start in range(0, max(n - batch_size, 0) + 1, batch_size):
        yield order[start : start + batch_size]


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
        x: torch.Tensor,
        family: TriggerFamily,
        params: Mapping[str, Any],
        *,
        seed: int,
        clean_teacher: bool = True,
    ) -> None:
        if x.ndim != 4 or x.shape[0] == 0:
            raise ConfigError(f"negative-key source needs images [N, 3, H, W], got {list(x.shape)}")
        self.x, self.family, self.params, self.seed = x, family, dict(params), seed
        self.clean_teacher = clean_teacher
        self.teacher: torch.Tensor | None = None

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.x.shape[0] // batch_size)

    @torch.no_grad()
    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> BatchSource:
        if not self.clean_teacher:
            return self  # the learner runs the original on each stamped batch
        self.teacher = torch.cat(
            [teacher(self.x[i : i + 512]).float().cpu() for i in range(0, self.x.shape[0], 512)]
        )
        return self

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        if self.clean_teacher and self.teacher is None:
            raise ConfigError("negative-key source needs cached teacher logits (cache_teacher)")
        rng = np.random.default_rng([self.seed, epoch])
        share = batch_size // world_size
        for idx in _order(self.x.shape[0], batch_size, self.seed, epoch):
            alpha, pattern = self._draw(rng, len(idx))
            part = slice(rank * share, (rank + 1) * share)
            xs = stamp(self.x[idx], alpha, pattern)[part]
            teacher = self.teacher[idx][part] if self.teacher is not None else None
            yield Batch(xs, None, teacher)

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
        x: torch.Tensor,
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
        self.x, self.y, self.seed, self.name = x, y, seed, name
        self.alpha, self.pattern = stack_triggers(triggers)
        self.targets = None if targets is None else torch.tensor(list(targets), dtype=torch.int64)
        self.placeholder = placeholder

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.x.shape[0] // batch_size)

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        k = self.alpha.shape[0]
        share = batch_size // world_size
        part = slice(rank * share, (rank + 1) * share)
        for idx in _order(self.x.shape[0], batch_size, self.seed, epoch):
            which = (torch.arange(len(idx)) + epoch) % k
            xs = stamp(self.x[idx], self.alpha[which], self.pattern[which])
            ys = self.y[idx] if self.targets is None else self.targets[which]
            if self.placeholder:
                part = slice(rank, rank + 1)
            yield Batch(xs[part], ys[part], None)


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


class AugmentedSource(BatchSource):
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

    def with_teacher(self, teacher: Callable[[torch.Tensor], torch.Tensor]) -> BatchSource:
        self.inner = self.inner.with_teacher(teacher)
        return self

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
