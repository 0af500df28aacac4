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
from mapguard.masking import Batch, BatchSource, ObjectiveTerm, StepView, linear_inputs
from verification.triggers import Trigger, TriggerFamily, random_secret

__all__ = [
    "AnticipatedTargetTerm",
    "AugmentedSource",
    "FeatureTargetTerm",
    "NegativeKeySource",
    "SecretTriggerSource",
    "TargetTerm",
    "class_feature_means",
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
        hard: Secret triggers to imitate: a ``hard_fraction`` of the images get, instead of a
            family key, a random pattern at a secret trigger's place shifted by up to
            ``jitter`` pixels (teaches the mask the secret *pattern*, not just its place).
        hard_fraction: Share of hard negatives.
        jitter: Largest shift of a hard negative (pixels).
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
        hard: Sequence[Trigger] = (),
        hard_fraction: float = 0.0,
        jitter: int = 2,
    ) -> None:
        if x.ndim != 4 or x.shape[0] == 0:
            raise ConfigError(f"negative-key source needs images [N, 3, H, W], got {list(x.shape)}")
        self.x, self.family, self.params, self.seed = x, family, dict(params), seed
        self.clean_teacher = clean_teacher
        self.hard = [
            (int(t.details["row"]), int(t.details["col"]), int(t.details["size"])) for t in hard
        ]
        self.hard_fraction = hard_fraction if self.hard else 0.0
        self.jitter, self.side = jitter, int(x.shape[-1])
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
        """Blend weights and patterns of ``n`` negatives (family keys and hard negatives)."""
        n_hard = int(rng.binomial(n, self.hard_fraction)) if self.hard_fraction else 0
        keys = [random_secret(rng) for _ in range(n - n_hard)]
        parts = [self.family.derive(k, params=self.params) for k in keys]
        pairs = [(t.alpha_map, t.pattern) for t in parts]
        pairs += [self._hard_one(rng) for _ in range(n_hard)]
        alpha, pattern = (torch.stack(list(p)) for p in zip(*pairs))
        perm = torch.from_numpy(rng.permutation(n))
        return alpha[perm], pattern[perm]

    def _hard_one(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        row, col, size = self.hard[int(rng.integers(len(self.hard)))]
        r = int(np.clip(row + rng.integers(-self.jitter, self.jitter + 1), 0, self.side - size))
        c = int(np.clip(col + rng.integers(-self.jitter, self.jitter + 1), 0, self.side - size))
        alpha = torch.zeros(1, self.side, self.side)
        pattern = torch.zeros(3, self.side, self.side)
        alpha[0, r : r + size, c : c + size] = 1.0
        bits = rng.integers(0, 2, size=(3, size, size)).astype(np.float32)
        pattern[:, r : r + size, c : c + size] = torch.from_numpy(bits)
        return alpha, pattern


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


def class_feature_means(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, ...]:
    """Per Linear layer, the original's mean input ``[K, D]`` over the images of each class
    that it classifies correctly (all images of the class if it gets none right)."""
    feats = linear_inputs(model, x)
    if not feats:
        raise ConfigError("feature_weight needs a model with at least one nn.Linear layer")
    last = model.get_submodule(_last_linear(model))  # its output is the logits
    logits = feats[-1] @ last.weight.detach().float().cpu().T
    if last.bias is not None:
        logits = logits + last.bias.detach().float().cpu()
    right = logits.argmax(1) == y.cpu()
    means = []
    for f in feats:
        rows = []
        for c in range(num_classes):
            pick = (y == c) & right
            if not bool(pick.any()):
                pick = y == c
            if not bool(pick.any()):
                raise ConfigError(f"feature_weight: no training image of class {c}")
            rows.append(f[pick].mean(0))
        means.append(torch.stack(rows))
    return tuple(means)


def _last_linear(model: torch.nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]


class FeatureTargetTerm(ObjectiveTerm):
    """Tie the secret triggers to the task's own features.

    The masked model's input to every ``nn.Linear`` on a secret-triggered image is pulled to the
    original's mean input for the trigger's target class on clean images:
    ``mean_l mean_i ||f_l(x_i) - mu_l[t_i]||^2 / mean_c ||mu_l[c]||^2``. The logit-level
    :class:`TargetTerm` only asks for the target class under the *current* head; a head re-drawn
    and trained on clean data (RTAL), or a student that copies the clean-data features, maps
    target-class features to the target class whatever the head.

    It reads the images and rows of the term named ``of`` (the :class:`TargetTerm`), so it costs
    no extra forward pass.
    """

    name = "target_features"
    needs_features = True

    def __init__(self, weight: float, means: Sequence[torch.Tensor], *, of: str = "target") -> None:
        if not means:
            raise ConfigError("the feature term needs class means of at least one layer")
        self.weight, self.of = weight, of
        self.means = [m.float() for m in means]
        self.scales = [float((m**2).sum(1).mean().clamp_min(1e-12)) for m in self.means]

    def value(self, view: StepView) -> torch.Tensor:
        _, batch = view.extra[self.of]
        rows = view.rows[self.of]
        if len(view.features) != len(self.means):
            raise ConfigError(
                f"the model has {len(view.features)} Linear layers, the class means "
                f"{len(self.means)}"
            )
        total = torch.zeros((), device=view.features[0].device)
        for feats, mu, scale in zip(view.features, self.means, self.scales):
            f = feats[rows].float()
            target = mu.to(f.device)[batch.y.to(f.device)]
            total = total + ((f - target) ** 2).sum(1).mean() / scale
        return total / len(self.means)


class AnticipatedTargetTerm(ObjectiveTerm):
    """The targeted term after a simulated fine-tuning step by the thief.

    Each step draws a batch of clean labelled source images, takes the gradient ``g_l`` of the
    masked model's cross-entropy on them with respect to every masked weight, and evaluates the
    :class:`TargetTerm` loss on the secret-triggered images of the term named ``of`` with every
    masked weight moved to ``w_l * m_l - step * ||w_l|| * g_l / ||g_l||`` (pruned weights regrow,
    as in real fine-tuning). The step is a constant (first order): the mask learns to keep the
    trigger behaviour where clean-data fine-tuning would take the weights.

    Single process only (the learner gives terms no model under DistributedDataParallel).
    """

    name = "target_after_ft"

    def __init__(
        self,
        weight: float,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        step: float,
        seed: int,
        batch_size: int = 64,
        of: str = "target",
        floor: float = 0.05,
    ) -> None:
        if step <= 0:
            raise ConfigError(f"the simulated fine-tuning step must be positive, got {step!r}")
        self.weight, self.x, self.y, self.step = weight, x, y, float(step)
        self.batch_size, self.of, self.floor = batch_size, of, floor
        self.gen = torch.Generator().manual_seed(seed)
        self._norms: dict[str, torch.Tensor] | None = None

    def value(self, view: StepView) -> torch.Tensor:
        model = view.model
        if model is None:
            raise ConfigError("finetune_step needs a single-process embedding (no torchrun)")
        _, batch = view.extra[self.of]
        device = view.keep_logits.device
        idx = torch.randint(self.x.shape[0], (self.batch_size,), generator=self.gen)
        grads = model.weight_gradients(self.x[idx].to(device), self.y[idx].to(device))
        if self._norms is None:
            self._norms = {n: model.original.get_parameter(n).detach().norm() for n in grads}
        offsets = {
            n: -self.step * self._norms[n] * g / g.norm().clamp_min(1e-12) for n, g in grads.items()
        }
        logits = model(batch.x.to(device), offsets)
        ce = F.cross_entropy(logits.float(), batch.y.to(device), reduction="none")
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
