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
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from mapguard.masking import EpochInfo
from mapguard.methods.free._config import FreeConfig
from mapguard.methods.free._sources import PseudoSource, step_generator
from mapguard.methods.free._stopping import masked_params
from mapguard.synthesis import boundary_samples, class_mixtures, sample_bn_scores

__all__ = ["BoundaryKeep"]


class BoundaryKeep:
    """Learner callback growing ``source``'s pool with boundary-aware pseudo-source images."""

    def __init__(
        self,
        net: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        source: PseudoSource,
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
