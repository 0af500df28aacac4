"""Hardening the trigger watermark against a thief's fine-tuning (issue 15 item 2; experimental,
off by default): **changes the weights**, a separate recipe after the mask.

FTAL at lr 0.05, RTAL, ``unlearn-triggers`` and WRK remove the mask's trigger behaviour: a thief's
fine-tuning moves the weights far beyond the neighbourhood where weight noise or one adversarial
step (``mask.weight_noise``, ``awp``) keep it. ``nft-weights`` (issue 18) showed that *persistent*
simulated thieves (a displacement kept over many outer steps, so a few SGD steps a step simulate a
fine-tuning run as long as a real thief's) can make a behaviour survive such fine-tuning when every
weight may move. :func:`harden` applies that to the watermark: after the mask, every weight of the
protected model is fine-tuned (Adam) on

    L = source_weight · (CE(f(x), y) + CE(f(stamp_r(x)), y)) + CE(f(stamp_s(x)), t_s)
        + thief_weight · mean_thief [CE_floor(f_{θ + Δ_thief}(stamp_s(x)), t_s)
                                    + CE(f_{θ + Δ_thief}(x'), y')]

with ``stamp_r`` a fresh random key of the public family per image and step (the watermark must
stay key-specific), ``s`` the secrets and ``t_s`` their targets, and the thieves
(:data:`HARDEN_THIEVES`): ``ftal`` (every weight on augmented clean labelled source images),
``rtal`` (the same after a fresh last layer) and ``unlearn`` (half of each batch stamped with
random family keys, true labels: the adaptive thief who knows the family). A thief trains in train
mode and keeps its own BatchNorm statistics with its displacement; it is judged as its copy is
deployed (eval mode, those statistics), on the secrets *and* on clean images it did not train on
(``x'``): without that term the cheapest way to keep the secrets was a model that fine-tuning ruins
(measured: 20-30 % clean accuracy after FTAL-10 %).
First-order: the displacement is detached and the gradient at the adapted point is applied to θ.

BatchNorm: the clean term runs in train mode (batch statistics, the running statistics track the
clean source as the weights move), the stamped terms as the model is deployed (running
statistics), and the statistics are re-estimated on the clean training images at the end. With
BatchNorm frozen at the original's statistics instead (session 15's first version) the weights
came to rely on statistics the data no longer has: re-estimating them on 100 source images (an
AdaBN thief, or the owner recalibrating) left 10 % accuracy.

The analysis is untouched: secrets, null keys, the verification set and the commitment are drawn
as before; only the weights the commitment names differ. Measured in docs/ROBUSTNESS.md before it
may become a default.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mapguard._config import ConfigMixin, check_int, check_number, check_range
from mapguard._errors import ConfigError, TrainingError
from mapguard.masking import TensorSource
from mapguard.masking._adversary import batch_norm_mode, fresh_head, sgd_delta
from mapguard.methods._nft_stats import recalibrate_batch_norm
from mapguard.training import augment_batch
from mapguard.watermark._sources import stack_triggers, stamp
from verification.triggers import Trigger, TriggerFamily, random_secret

__all__ = ["HARDEN_THIEVES", "HardenConfig", "harden"]

#: The simulated thieves of :func:`harden`.
HARDEN_THIEVES = ("ftal", "rtal", "unlearn")
Params = dict[str, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class HardenConfig(ConfigMixin, what="harden"):
    """Options of :func:`harden` (``EmbedConfig.harden``; ``epochs`` 0: off).

    Attributes:
        epochs: Passes over the training images (0: no hardening).
        lr: Adam learning rate of the weights.
        batch_size: Clean images per step (as many stamped with random keys and with secrets).
        source_weight: Weight of the clean and random-key cross-entropies (the source kept).
        thief_weight: Weight of the thieves' mean term.
        thieves: The simulated thieves (:data:`HARDEN_THIEVES`).
        inner_steps / inner_momentum: a thief's SGD steps per outer step.
        inner_lr / inner_lr_min: a thief's learning rate, drawn log-uniformly at each restart.
        horizon: outer steps a thief keeps its displacement before it starts over.
        floor: per-image floor of the thieves' cross-entropy (a secret image already sent to its
            target pulls no further).
        seed: order of batches, keys stamped and the thieves' draws.
    """

    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    source_weight: float = 4.0
    thief_weight: float = 1.0
    thieves: tuple[str, ...] = ("ftal", "rtal", "unlearn")
    inner_steps: int = 2
    inner_lr: float = 0.05
    inner_lr_min: float = 0.005
    inner_momentum: float = 0.9
    horizon: int = 100
    floor: float = 0.05
    seed: int = 0

    @property
    def on(self) -> bool:
        return self.epochs > 0

    def __post_init__(self) -> None:
        check_int("harden.epochs", self.epochs, low=0)
        check_int("harden.batch_size", self.batch_size, low=4)
        check_int("harden.inner_steps", self.inner_steps, low=1)
        check_int("harden.horizon", self.horizon, low=1)
        check_number("harden.lr", self.lr, positive=True)
        check_number("harden.thief_weight", self.thief_weight, positive=False)
        check_number("harden.source_weight", self.source_weight, positive=False)
        check_number("harden.inner_lr", self.inner_lr, positive=True)
        check_range("harden.inner_lr_min", self.inner_lr_min, lo=0, hi=self.inner_lr, lo_open=True)
        check_range("harden.inner_momentum", self.inner_momentum, lo=0, hi=1, hi_open=True)
        check_range("harden.floor", self.floor, lo=0, hi=10)
        bad = [t for t in self.thieves if t not in HARDEN_THIEVES]
        if bad or len(set(self.thieves)) != len(self.thieves):
            names = ", ".join(HARDEN_THIEVES)
            raise ConfigError(f"harden.thieves must be distinct names of: {names}; "
                              f"got {list(self.thieves)!r}")  # fmt: skip


class _Thief:
    """One persistent simulated thief (module doc)."""

    def __init__(self, kind: str, cfg: HardenConfig) -> None:
        self.kind, self.cfg = kind, cfg
        self.delta: Params = {}
        self.head: Params = {}
        self.buffers: Params = {}
        self.age, self.lr, self.restarts = 0, cfg.inner_lr, 0

    def _restart(self, net: nn.Module, seed: int) -> None:
        self.delta, self.buffers, self.age = {}, {}, 0
        self.head = fresh_head(net, seed=seed) if self.kind == "rtal" else {}
        u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
        lo, hi = self.cfg.inner_lr_min, self.cfg.inner_lr
        self.lr = lo * (hi / lo) ** u
        self.restarts += 1

    def loss(self, net: nn.Module, theta: Params, clean: tuple, judge: tuple, secret: tuple,
             keys: tuple[torch.Tensor, torch.Tensor], seed: int) -> torch.Tensor:  # fmt: skip
        """At the point this thief reaches after ``inner_steps`` more steps on ``clean`` (x, y):
        the floored CE of the secret images to their targets plus the CE of the clean images
        ``judge`` (x, y) it did not train on; ``keys``: random family keys (alpha maps,
        patterns) the ``unlearn`` thief stamps."""
        if self.age == 0 or self.age >= self.cfg.horizon:
            self._restart(net, seed)
        self.age += 1
        gen = torch.Generator().manual_seed(seed)
        x, y = clean
        x = augment_batch(x.detach().cpu(), gen).to(x.device)
        if self.kind == "unlearn":  # half stamped with random keys of the family, true labels
            half = x.shape[0] // 2
            pick = torch.randint(keys[0].shape[0], (half,), generator=gen)
            stamped = stamp(x[:half], keys[0][pick].to(x), keys[1][pick].to(x))
            x = torch.cat([stamped, x[half:]])
        if not self.buffers:
            self.buffers = {n: b.detach().clone() for n, b in net.named_buffers()}
        start = {**theta, **self.head}
        point = {n: t + self.delta[n] if n in self.delta else t for n, t in start.items()}
        with batch_norm_mode(net, True):
            step = sgd_delta(net, point, self.buffers, x, y, set(start), steps=self.cfg.inner_steps,
                             lr=self.lr, momentum=self.cfg.inner_momentum)  # fmt: skip
        self.delta = {n: self.delta.get(n, 0) + d for n, d in step.items()}
        if not all(torch.isfinite(d).all() for d in self.delta.values()):
            self.age = 0  # diverged: start over at the next step; nothing reached this one
            return torch.zeros((), device=x.device)
        adapted = {n: t + self.delta[n] for n, t in start.items()}
        m = secret[0].shape[0]
        with batch_norm_mode(net, False):
            logits = functional_call(net, {**adapted, **self.buffers},
                                     (torch.cat([secret[0], judge[0]]),))  # fmt: skip
        ce = F.cross_entropy(logits[:m].float(), secret[1], reduction="none")
        # the stolen copy must stay a good model: else the cheapest way to keep the secrets is
        # a model that fine-tuning ruins (measured: 20-30% clean accuracy after FTAL-10%)
        return ce.clamp(min=self.cfg.floor).mean() + F.cross_entropy(logits[m:].float(), judge[1])


def harden(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    triggers: Sequence[Trigger],
    family: TriggerFamily,
    params: dict[str, Any],
    cfg: HardenConfig,
    *,
    device: torch.device,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune every weight of (a copy of) ``model`` as the module doc says; returns it (eval
    mode) and a record (steps, seconds, per-epoch means of the terms)."""
    if not triggers or "target" not in triggers[0].details:
        raise ConfigError("harden needs a targeted trigger family (each secret has a target)")
    net = copy.deepcopy(model).to(device).eval()
    net.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng([0x4A, cfg.seed])

    def fresh(n: int) -> tuple[torch.Tensor, torch.Tensor]:  # n new random keys of the family
        return stack_triggers([family.derive(random_secret(rng), params=params) for _ in range(n)])

    alpha_s, pattern_s = stack_triggers(list(triggers))
    targets = torch.tensor([int(t.details["target"]) for t in triggers])
    thieves = [_Thief(kind, cfg) for kind in cfg.thieves]
    n, b = x.shape[0], cfg.batch_size
    steps = max(1, n // b)
    history, t0 = [], time.perf_counter()
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        for i in range(steps):
            step = epoch * steps + i
            idx = order[i * b : (i + 1) * b]
            xb, yb = x[idx], y[idx]
            s = torch.randint(len(triggers), (len(idx),), generator=gen)
            keep = yb != targets[s]  # an image already of its key's target shows nothing
            xs = stamp(xb[keep], alpha_s[s[keep]], pattern_s[s[keep]]).to(device)
            ts = targets[s[keep]].to(device)
            keys = fresh(len(idx))  # a fresh key per image (as the mask's negatives have)
            xr = stamp(xb, keys[0], keys[1]).to(device)
            xb, yb = xb.to(device), yb.to(device)
            theta = dict(net.named_parameters())
            with batch_norm_mode(net, True):  # clean batch: its statistics, tracked
                clean = net(xb).float()
            logits = net(torch.cat([xr, xs])).float()  # as deployed: the running statistics
            m = xb.shape[0]
            terms = {"source": F.cross_entropy(clean, yb),
                     "negatives": F.cross_entropy(logits[:m], yb),
                     "secrets": F.cross_entropy(logits[m:], ts)}  # fmt: skip
            half = m // 2
            judged = [t.loss(net, theta, (xb[:half], yb[:half]), (xb[half:], yb[half:]),
                             (xs, ts), keys, cfg.seed * 7919 + step * 31 + j)
                      for j, t in enumerate(thieves)]  # fmt: skip
            terms["thieves"] = torch.stack(judged).mean() if judged else logits.new_zeros(())
            loss = (cfg.source_weight * (terms["source"] + terms["negatives"]) + terms["secrets"]
                    + cfg.thief_weight * terms["thieves"])  # fmt: skip
            if not torch.isfinite(loss):
                raise TrainingError(f"harden: loss became NaN/inf at epoch {epoch + 1}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums = {k: sums.get(k, 0.0) + float(v.detach()) for k, v in terms.items()}
        history.append({k: v / steps for k, v in sums.items()} | {"epoch": epoch + 1})
    record = {"steps": cfg.epochs * steps, "seconds": time.perf_counter() - t0,
              "history": history, "restarts": sum(t.restarts for t in thieves)}  # fmt: skip
    recalibrate_batch_norm(net, TensorSource(x, seed=cfg.seed), batch_size=cfg.batch_size)
    return net.eval().requires_grad_(False), record
