"""Batch sources of SF-MAP / DF-MAP: the pseudo-source keep source and the neighbour degrade
source, each a fixed number of seeded global batches per epoch."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence

import torch

from mapguard._errors import ConfigError
from mapguard.masking import Batch, BatchSource
from mapguard.methods.free._neighbours import FeatureShiftHook, FeatureStyleShift, create_family
from mapguard.training import augment_batch

__all__ = [
    "FixedSteps",
    "NeighbourSource",
    "PseudoSource",
    "mix_pairs",
    "neighbour_probe",
    "step_generator",
]


def step_generator(seed: int, *tags: int) -> torch.Generator:
    """A generator seeded from ``(seed, *tags)`` through SHA-256 (independent streams per tag)."""
    digest = hashlib.sha256(":".join(map(str, (seed, *tags))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class FixedSteps(BatchSource):
    """A source of ``steps`` seeded global batches per epoch, each split evenly across ranks."""

    steps: int

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.steps

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        if batch_size % world_size:
            raise ConfigError(f"batch size {batch_size} is not divisible by {world_size} processes")
        share = batch_size // world_size
        part = slice(rank * share, (rank + 1) * share)
        for step in range(self.steps):
            yield self._batch(epoch, step, batch_size, part)

    @abstractmethod
    def _batch(self, epoch: int, step: int, batch_size: int, part: slice) -> Batch:
        """This process's ``part`` of global batch ``step`` of ``epoch``."""


class PseudoSource(FixedSteps):
    """Pseudo-source images as an endless keep source with a fixed number of steps per epoch.

    Each global batch is a fresh seeded draw (without replacement within the batch when it fits).
    With ``augment`` every batch gets the source-training augmentation (shifts of up to 2 px,
    brightness/contrast jitter, :func:`mapguard.training.augment_batch`) so that the keep term
    cannot be met by memorising a few hundred exact images; the original model's logits are then
    computed per batch by the learner. With ``pool_fraction > 0`` that fraction of every batch
    is drawn from a growing *pool* of further images (:meth:`add`: the boundary-aware keep set)
    once the pool holds any; an empty pool draws exactly what a source without one draws.
    """

    name = "pseudo-source"

    def __init__(
        self,
        x: torch.Tensor,
        *,
        steps_per_epoch: int,
        seed: int = 0,
        augment: bool = False,
        teacher: torch.Tensor | None = None,
        mixup: float = 0.0,
        pool_fraction: float = 0.0,
        pool_size: int = 0,
    ) -> None:
        if x.ndim != 4 or len(x) == 0:
            raise ConfigError(
                f"pseudo-source needs a non-empty [N, C, H, W] tensor, got {tuple(x.shape)}"
            )
        self.x, self.steps, self.seed = x, steps_per_epoch, seed
        self.augment, self.teacher, self.mixup = augment, teacher, mixup
        self.pool_fraction, self.pool_size = pool_fraction, pool_size
        self.pool = x.new_zeros((0, *x.shape[1:]))

    def add(self, images: torch.Tensor) -> None:
        """Add images to the pool (the oldest leave once it holds more than ``pool_size``)."""
        self.pool = torch.cat([self.pool, images.to(self.pool)])[-self.pool_size :]

    def _batch(self, epoch: int, step: int, batch_size: int, part: slice) -> Batch:
        gen = step_generator(self.seed, epoch, step)
        idx = _draw(len(self.x), batch_size, gen)
        x = self.x[idx]
        k = min(batch_size, int(round(self.pool_fraction * batch_size))) if len(self.pool) else 0
        if k:
            x = torch.cat([x[: batch_size - k], self.pool[_draw(len(self.pool), k, gen)]])
        x = augment_batch(x, gen) if self.augment else x
        if self.mixup > 0:
            x = mix_pairs(x, int(round(self.mixup * len(x))), gen)
        fresh = self.augment or self.mixup > 0 or self.pool_fraction > 0  # teacher per batch
        teacher = None if self.teacher is None or fresh else self.teacher[idx][part]
        return Batch(x[part], None, teacher)

    @torch.no_grad()
    def with_teacher(self, teacher) -> PseudoSource:  # noqa: ANN001
        if self.augment or self.mixup > 0 or self.pool_fraction > 0:  # computed per batch
            return self
        x = self.x
        logits = torch.cat([teacher(x[i : i + 512]).float().cpu() for i in range(0, len(x), 512)])
        return PseudoSource(x, steps_per_epoch=self.steps, seed=self.seed, teacher=logits)


def mix_pairs(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Replace the first ``k`` rows of ``x`` by ``l*x_i + (1-l)*x_j`` (random partner ``j``,
    ``l ~ U(0.3, 0.7)`` per row); the rest are unchanged."""
    k = min(k, len(x))
    if k == 0 or len(x) < 2:
        return x
    partner = torch.randint(0, len(x), (k,), generator=gen)
    lam = 0.3 + 0.4 * torch.rand(k, 1, 1, 1, generator=gen)
    out = x.clone()
    out[:k] = lam * x[:k] + (1 - lam) * x[partner]
    return out


def _draw(n: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    if batch_size <= n:
        return torch.randperm(n, generator=gen)[:batch_size]
    return torch.randint(0, n, (batch_size,), generator=gen)


class NeighbourSource(FixedSteps):
    """Degrade source for DF-MAP: neighbour-domain versions of pseudo-source images.

    Every step draws a fresh batch of clean images, splits it into chunks, and shifts each chunk
    with a family chosen at random from ``families``; labels are the original model's
    predictions on the *clean* images (with ``hard > 1`` and a ``scorer(images, labels)``, each
    chunk is the most confidently classified of ``hard`` shifts). Rows assigned
    ``feature_stats`` are left as pixels and shifted at the first conv layer by a hook
    (``keep_rows`` = rows of keep images that precede the degrade rows in the learner's forward
    pass, per process).
    """

    name = "neighbours"

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        *,
        families: Sequence[str],
        steps_per_epoch: int,
        seed: int = 0,
        hook: FeatureShiftHook | None = None,
        keep_sources: int = 1,
        chunks: int = 4,
        hard: int = 1,
        scorer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.labels, self.steps, self.seed = x, labels, steps_per_epoch, seed
        self.hard, self.scorer = hard, scorer
        self.image_families = [create_family(f) for f in families if f != FeatureStyleShift.name]
        self.use_feature = FeatureStyleShift.name in families and hook is not None
        self.hook, self.keep_sources, self.chunks = hook, keep_sources, chunks

    def global_batch(
        self, epoch: int, step: int, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        """``(images, labels, feature-shift flags, generator)`` of one global batch."""
        gen = step_generator(self.seed, 7919, epoch, step)
        n = len(self.x)
        idx = _draw(n, batch_size, gen)
        x, flags = self.x[idx].clone(), torch.zeros(batch_size, dtype=torch.bool)
        options = len(self.image_families) + int(self.use_feature)
        bounds = torch.linspace(0, batch_size, self.chunks + 1).round().long().tolist()
        for a, b in zip(bounds, bounds[1:]):
            if b <= a:
                continue
            pick = int(torch.randint(0, options, (1,), generator=gen))
            if pick == len(self.image_families):
                flags[a:b] = True
            else:
                x[a:b] = self._hardest(x[a:b], self.labels[idx][a:b], pick, gen)
        return x, self.labels[idx], flags, gen

    def _hardest(
        self, x: torch.Tensor, y: torch.Tensor, pick: int, gen: torch.Generator
    ) -> torch.Tensor:
        """Family ``pick``'s shift of ``x``; with ``hard > 1``, the one of ``hard`` shifts (the
        others of random image families) on which the original model is most confident in the
        clean labels ``y``: where it still transfers, the images the mask must break."""
        best = self.image_families[pick].apply(x, gen)
        if self.hard <= 1 or self.scorer is None:
            return best
        score = float(self.scorer(best, y))
        for _ in range(self.hard - 1):
            other = int(torch.randint(0, len(self.image_families), (1,), generator=gen))
            cand = self.image_families[other].apply(x, gen)
            s = float(self.scorer(cand, y))
            if s > score:
                best, score = cand, s
        return best

    def _batch(self, epoch: int, step: int, batch_size: int, part: slice) -> Batch:
        x, y, flags, gen = self.global_batch(epoch, step, batch_size)
        if self.hook is not None:
            share = part.stop - part.start
            rows = torch.nonzero(flags[part]).flatten() + share * self.keep_sources
            self.hook.arm(rows, gen)
        return Batch(x[part], y[part], None)


def neighbour_probe(
    source: NeighbourSource, x: torch.Tensor, y: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of pixel-space neighbours of held-out pseudo-source images."""
    gen = step_generator(source.seed, 104729)
    reps = max(1, size // len(x))
    xs = x.repeat(reps, 1, 1, 1)
    out = xs.clone()
    families = source.image_families
    for j, i in enumerate(range(0, len(xs), 4)):
        out[i : i + 4] = families[j % len(families)].apply(xs[i : i + 4], gen)
    return out, y.repeat(reps)
