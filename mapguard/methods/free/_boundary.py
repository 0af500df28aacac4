"""The boundary-aware keep set of SF-MAP / DF-MAP (a per-epoch learner callback).

After every epoch (that did not end learning), :class:`BoundaryKeep` draws ``boundary`` two-class
mixtures of training pseudo-source images, moves them where the original model ``f`` and the
current masked model ``f_M`` disagree under ``f``'s BatchNorm-statistics prior
(:func:`mapguard.synthesis.boundary_samples`), keeps the ``boundary_keep`` fraction that sits
closest to ``f``'s BatchNorm statistics (:func:`mapguard.synthesis.sample_bn_scores`) and adds
them to the keep source's pool: the keep term then holds ``f_M`` to ``f`` exactly where the mask
was starting to change the source's decisions. Everything is seeded from ``(seed, epoch)``; the
images are synthesised once and reused by every later batch (the pool is bounded), so the cost
is one small synthesis per epoch.

With ``boundary_term`` the pool is not mixed into the keep batches: :class:`PoolSource` draws its
own rows every step and :class:`PoolKeep` holds ``f_M`` to ``f`` on them with its own KL term, so
the BatchNorm-statistics keep term (which measures the keep rows' batch statistics) sees only
the plain pseudo-source. Boundary images are by construction off the BN statistics; inside the
keep batch they shift its statistics and the BN term then pushes the mask to compensate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from mapguard.masking import Batch, EpochInfo, ObjectiveTerm, StepView, keep_kl
from mapguard.methods.free._config import FreeConfig
from mapguard.methods.free._sources import FixedSteps, PseudoSource, step_generator
from mapguard.methods.free._stopping import masked_params
from mapguard.synthesis import boundary_samples, class_mixtures, sample_bn_scores
from mapguard.training import augment_batch

__all__ = ["BoundaryKeep", "PoolKeep", "PoolSource", "RestyledKeep", "RestyledSource"]


class PoolSource(FixedSteps):
    """The boundary pool as its own source: ``rows`` images per global batch, drawn (and
    augmented) from the pool, with the original model's logits as teacher; an empty pool gives
    empty batches. The pool grows through :meth:`add` (oldest out beyond ``pool_size``)."""

    name = "boundary-pool"

    def __init__(
        self, teacher: nn.Module, like: torch.Tensor, *, rows: int, steps_per_epoch: int,
        pool_size: int, seed: int = 0, augment: bool = True,
    ) -> None:  # fmt: skip
        self.teacher, self.rows, self.steps, self.seed = teacher, rows, steps_per_epoch, seed
        self.pool_size, self.augment = pool_size, augment
        self.pool = like.new_zeros((0, *like.shape[1:]))

    def add(self, images: torch.Tensor) -> None:
        self.pool = torch.cat([self.pool, images.to(self.pool)])[-self.pool_size :]

    @torch.no_grad()
    def _batch(self, epoch: int, step: int, batch_size: int, part: slice) -> Batch:
        share = part.stop - part.start
        world, rank = batch_size // share, part.start // share
        rows = self.rows - self.rows % world if len(self.pool) else 0
        gen = step_generator(self.seed, 0xB1, epoch, step)
        idx = torch.randint(0, max(1, len(self.pool)), (rows,), generator=gen)
        x = self.pool[idx]
        x = augment_batch(x, gen) if self.augment and rows else x
        x = x[rank * (rows // world) : (rank + 1) * (rows // world)]
        device = next(self.teacher.parameters()).device
        teacher = self.teacher(x.to(device)).float().cpu() if len(x) else None
        return Batch(x, None, teacher)


class PoolKeep(ObjectiveTerm, name="boundary_keep"):
    """``weight * KL_T(f || f_M)`` on the :class:`PoolSource` rows (0 while the pool is empty)."""

    def __init__(self, source: PoolSource, *, weight: float, temperature: float) -> None:
        self.source, self.weight, self.temperature = source, weight, temperature

    def value(self, view: StepView) -> torch.Tensor:
        logits, batch = view.extra[self.name]
        if batch.teacher is None or len(logits) == 0:
            return logits.sum() * 0.0
        return keep_kl(logits, batch.teacher.to(logits.device), self.temperature)


class RestyledSource(PoolSource):
    """SF-MAP's restyled target images (``restyle``) as a source of their own, like the pool."""

    name = "restyled"


class RestyledKeep(PoolKeep, name="restyle_keep"):
    """``weight * KL_T(f || f_M)`` on the :class:`RestyledSource` rows: the restyled images are
    held by their own term, outside the BatchNorm-statistics keep term (as ``boundary_term``
    holds the pool; mixed into the keep batches they moved its statistics and the optdigits ->
    mnist run stopped after its first epoch, docs/METHOD-free.md section 13)."""


class BoundaryKeep:
    """Learner callback growing ``source``'s pool with boundary-aware pseudo-source images."""

    def __init__(
        self,
        net: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        source: PseudoSource | PoolSource,
        cfg: FreeConfig,
        *,
        seed: int,
        last_epoch: int | None = None,
    ) -> None:
        self.net, self.x, self.y, self.source, self.cfg, self.seed = net, x, y, source, cfg, seed
        self.last_epoch, self.added = last_epoch, 0

    def __call__(self, info: EpochInfo) -> bool:
        if self.last_epoch is not None and info.epoch >= self.last_epoch:
            return False  # no epoch left to use them
        cfg, net = self.cfg, self.net
        gen = step_generator(self.seed, 0xB0, info.epoch)
        start = class_mixtures(self.x, self.y, cfg.boundary, gen)
        params = masked_params(net, info.current_mask())
        was_training = net.training
        net.eval()
        try:
            images = boundary_samples(
                net,
                lambda x: functional_call(net, params, (x,), strict=False),
                start,
                steps=cfg.boundary_steps,
            )
            scores = sample_bn_scores(net, images)
        finally:
            net.train(was_training)
        keep = scores.argsort()[: max(1, round(cfg.boundary_keep * len(images)))]
        self.source.add(images[keep.sort().values])
        self.added += len(keep)
        return False
