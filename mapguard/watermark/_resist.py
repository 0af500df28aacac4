"""An embedding term against the thief who knows the trigger family (issue 15, experimental).

``unlearn-triggers`` (``mapguard.attacks``) removes the labels-mode evidence by fine-tuning on
clean labels with random keys of the public family stamped. :class:`SimulatedUnlearn` simulates
that thief while the mask is learned, as ``map-nft``'s :class:`~mapguard.masking._adversary.
SimulatedFineTune` simulates a target-domain thief: each step it takes ``steps`` first-order SGD
steps from the masked weights on labelled source images, half of them stamped with random family
keys and kept at their true label, and asks the *adapted* model to still send secret-stamped
images to their targets. The gradient reaches the mask through the weights the simulation starts
from (straight-through), so the learner prefers masks whose secret behaviour a few unlearning
steps do not undo. Off by default (``EmbedConfig.resist_weight`` 0): measured in
docs/ROBUSTNESS.md before it may become a default.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mapguard._errors import ConfigError
from mapguard.masking import Batch, BatchSource, StepView
from mapguard.masking._adversary import (
    SimulatedFineTune,
    _masked_params,
    batch_norm_mode,
)
from mapguard.masking._distributed import DistInfo
from mapguard.masking._learner import _endless
from mapguard.watermark._sources import stack_triggers, stamp
from verification.triggers import TriggerFamily, random_secret

__all__ = ["SimulatedUnlearn", "random_key_pool"]

#: Random family keys the simulated thief stamps (as many as the real attack's pool).
POOL = 256


def random_key_pool(
    family: TriggerFamily, params: dict, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha maps and patterns of ``POOL`` random keys of ``family`` (a seeded public draw)."""
    rng = np.random.default_rng([0xF0, seed])
    return stack_triggers([family.derive(random_secret(rng), params=params) for _ in range(POOL)])


@dataclass(eq=False, kw_only=True)
class SimulatedUnlearn(SimulatedFineTune, name="resist"):
    """``mean min-floored CE(f_{θ_k}(stamp_s(x)), t_s)``: the secrets still reach their targets
    after ``config.steps`` simulated unlearning steps (``θ_k``; ``data`` labelled clean images,
    half stamped from ``alpha``/``pattern`` and kept at their labels).

    ``secrets`` yields secret-stamped images labelled with their targets.
    """

    secrets: BatchSource = field(repr=False)
    alpha: torch.Tensor = field(repr=False)
    pattern: torch.Tensor = field(repr=False)
    seed: int = 0
    floor: float = 0.05
    _secret_batches: Iterator[Batch] | None = field(default=None, init=False, repr=False)
    _gen: torch.Generator | None = field(default=None, init=False, repr=False)

    def _thief_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x_in, y_in, x_out, y_out = self._next(device)
        x, y = torch.cat([x_in, x_out]), torch.cat([y_in, y_out])
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(self.seed)
        half = x.shape[0] // 2
        pick = torch.randint(self.alpha.shape[0], (half,), generator=self._gen)
        stamped = stamp(x[:half], self.alpha[pick].to(x), self.pattern[pick].to(x))
        return torch.cat([stamped, x[half:]]), y

    def value(self, view: StepView) -> torch.Tensor:
        if self._masked is None:
            raise ConfigError("SimulatedUnlearn was not bound to a masked model")
        device = view.keep_logits.device
        model = self._masked.original
        theta = _masked_params(self._masked)
        x_thief, y_thief = self._thief_batch(device)
        if self._secret_batches is None:
            self._secret_batches = _endless(self.secrets, self.config.batch_size, DistInfo())
        secret = next(self._secret_batches)
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        with batch_norm_mode(model, self.config.batch_stats):
            delta = self._adapt(model, theta, buffers, x_thief, y_thief, set(theta))
            adapted = {n: t + delta[n] for n, t in theta.items()}
            logits = functional_call(model, {**adapted, **buffers}, (secret.x.to(device),))
        ce = F.cross_entropy(logits.float(), secret.y.to(device), reduction="none")
        return ce.clamp(min=self.floor).mean()
