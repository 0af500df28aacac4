"""The simulated thieves of ``nft-weights`` (:mod:`mapguard.methods.nft_weights`).

A thief holds a first-order displacement ``Δ`` of the weights (:func:`sgd_delta`: SGD with
momentum), advances it ``inner_steps`` steps every outer step and keeps it for ``horizon`` outer
steps; the protection is judged by the target divergence ``D`` at ``θ + Δ``.

*Target thieves* (:data:`NFT_THIEVES`, :class:`Thief`) fine-tune on labelled target images.
*Clean-source thieves* (:data:`SOURCE_THIEVES`, :class:`SourceThief`) have no target image: they
fine-tune every weight on labelled source images, with the light augmentation (``ftal``, FTAL's
route) or under a random colour shift (``shift``, :func:`shift_batch`: TransNTL's route, Hong et
al., CVPR 2024), BatchNorm in train mode, and keep their own running statistics along with ``Δ``
(so after a few outer steps they are those of the thief's data, as in a real fine-tuned copy);
they are judged as the fine-tuned copy is deployed: eval mode, with those statistics.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mapguard.masking._adversary import batch_norm_mode, fresh_head, head_params, sgd_delta
from mapguard.training import augment_batch

__all__ = ["NFT_THIEVES", "SOURCE_THIEVES", "SourceThief", "Thief", "shift_batch",
           "target_divergence"]  # fmt: skip

#: The simulated target thieves (``thieves`` option).
NFT_THIEVES = ("keep", "reinit", "fc", "frozen-bn")
#: The simulated clean-source thieves (``source_thieves`` option).
SOURCE_THIEVES = ("ftal", "shift")

Params = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def target_divergence(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """How far target predictions are from useless (>= 0, 0 at the goal): ``uniform`` is
    ``KL(U ‖ softmax(logits))`` per image, ``inverse-ce`` is ``-log(1 - p_y)``; batch mean."""
    logp = F.log_softmax(logits.float(), dim=1)
    if kind == "uniform":
        return (-logp.mean(1) - math.log(logits.shape[1])).mean()
    p_y = logp.gather(1, y[:, None]).squeeze(1).exp()
    return -torch.log1p(-p_y.clamp(max=1 - 1e-6)).mean()


def shift_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The library's augmentation (:func:`~mapguard.training.augment_batch`), then a random
    per-channel colour gain and offset, a random inversion and Gaussian noise per image: source
    images made to look shifted (a TransNTL-like thief; CPU tensors)."""
    x = augment_batch(x, gen)
    n, c = x.shape[:2]
    gain = 0.3 + 0.7 * torch.rand(n, c, 1, 1, generator=gen)
    offset = 0.5 * torch.rand(n, c, 1, 1, generator=gen)
    invert = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    x = invert * (1 - x) + (1 - invert) * x
    x = x * gain + offset * (1 - gain)
    return (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


class Thief:
    """One simulated target thief ``kind``; with ``horizon`` > 0 its displacement persists over
    that many outer steps (a long fine-tuning run simulated at ``inner_steps`` a step), else it
    restarts from θ every step (``cfg``: an
    :class:`~mapguard.methods.nft_weights.NFTWeightsConfig`)."""

    def __init__(self, kind: str, cfg: Any) -> None:  # noqa: ANN401 - NFTWeightsConfig (a cycle)
        self.kind, self.cfg = kind, cfg
        self.delta: Params = {}
        self.head: Params = {}
        self.age, self.diverged, self.lr = 0, 0, cfg.inner_lr

    def loss(
        self, net: nn.Module, theta: Params, batch: Batch, seed: int, stats: Params | None = None
    ) -> torch.Tensor:
        """``D`` at the point the thief reaches from θ (first-order: the displacement is
        detached, so the gradient flows into θ, or θ's body for ``reinit``) after adapting on
        ``batch[:2]``, judged on ``batch[2:]``. A thief whose steps diverge starts over once (a
        real one would lower its rate); if it diverges again it reaches nothing this step (a zero
        term). ``stats``: the BatchNorm statistics of the stolen copy (default: ``net``'s
        buffers)."""
        if self.age == 0 or self.age >= max(1, self.cfg.horizon):
            self._restart(net, seed)
        self.age += 1
        for attempt in (1, 2):
            value = self._advance(net, theta, batch, seed, stats or dict(net.named_buffers()))
            if torch.isfinite(value):
                return value
            self.diverged += 1
            self._restart(net, seed + attempt)
            self.age = 1  # this step's retry is the restarted run's first step
        return value.new_zeros(())

    def _restart(self, net: nn.Module, seed: int) -> None:
        """Back to θ (``reinit``: a fresh head), with a learning rate drawn log-uniformly from
        ``[inner_lr_min, inner_lr]``."""
        self.delta, self.age = {}, 0
        self.head = fresh_head(net, seed=seed) if self.kind == "reinit" else {}
        hi = self.cfg.inner_lr
        lo = hi if self.cfg.inner_lr_min is None else self.cfg.inner_lr_min
        u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
        self.lr = lo * (hi / lo) ** u

    def _advance(
        self, net: nn.Module, theta: Params, batch: Batch, seed: int, stats: Params
    ) -> torch.Tensor:
        """``inner_steps`` more thief steps from θ + Δ; ``D`` at the new point."""
        x_in, y_in, x_out, y_out = batch
        buffers = {n: b.detach().clone() for n, b in stats.items()}
        start = {**theta, **self.head}
        point = {n: t + self.delta[n] if n in self.delta else t for n, t in start.items()}
        trained = set(head_params(net)) if self.kind == "fc" else set(start)
        with batch_norm_mode(net, self.kind not in ("fc", "frozen-bn")):  # else running stats
            step = sgd_delta(net, point, buffers, x_in, y_in, trained, steps=self.cfg.inner_steps,
                             lr=self.lr, momentum=self.cfg.inner_momentum)  # fmt: skip
            self.delta = {n: self.delta.get(n, 0) + d for n, d in step.items()}
            adapted = {n: t + self.delta[n] if n in self.delta else t for n, t in start.items()}
            logits = functional_call(net, {**adapted, **buffers}, (x_out,))
        return target_divergence(logits, y_out, self.cfg.target_loss)


class SourceThief(Thief):
    """A clean-source thief (``ftal`` or ``shift``): adapts every weight on labelled source
    images (``batch[:2]``) in train mode (learning rate: the target thieves' draw times
    ``source_lr_scale``), its BatchNorm running statistics persisting with its ``Δ``; judged on
    the target images ``batch[2:]`` in eval mode with those statistics."""

    def __init__(self, kind: str, cfg: Any) -> None:  # noqa: ANN401
        super().__init__(kind, cfg)
        self.buffers: Params = {}

    def _restart(self, net: nn.Module, seed: int) -> None:
        super()._restart(net, seed)
        self.buffers, self.lr = {}, self.lr * self.cfg.source_lr_scale

    def _advance(
        self, net: nn.Module, theta: Params, batch: Batch, seed: int, stats: Params
    ) -> torch.Tensor:
        x_in, y_in, x_out, y_out = batch
        gen = torch.Generator().manual_seed(seed)
        look = shift_batch if self.kind == "shift" else augment_batch
        x_in = look(x_in.detach().cpu(), gen).to(x_in.device)
        if not self.buffers:  # a fresh copy: the stolen model's statistics
            self.buffers = {n: b.detach().clone() for n, b in stats.items()}
        with batch_norm_mode(net, True):  # sgd_delta's forwards update self.buffers in place
            point = {n: t + self.delta[n] if n in self.delta else t for n, t in theta.items()}
            step = sgd_delta(net, point, self.buffers, x_in, y_in, set(theta),
                             steps=self.cfg.inner_steps, lr=self.lr,
                             momentum=self.cfg.inner_momentum)  # fmt: skip
        self.delta = {n: self.delta.get(n, 0) + d for n, d in step.items()}
        adapted = {n: t + self.delta[n] for n, t in theta.items()}
        with batch_norm_mode(net, False):  # deployed: the copy's own running statistics
            logits = functional_call(net, {**adapted, **self.buffers}, (x_out,))
        return target_divergence(logits, y_out, self.cfg.target_loss)
