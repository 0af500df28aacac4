"""The source-free stopping rule: held-out drift of the masked model, and the degrade probe.

After every epoch the temperature-``T`` KL between the original and the masked model on a
*held-out* split of the pseudo-source is measured (and the masked model's accuracy on held-out
degrade images); the returned mask is that of the last epoch whose held-out KL is ``<= stop_kl``.
Learning stops at the first such epoch whose held-out degrade accuracy reaches ``degrade_goal``,
or once ``patience`` epochs in a row exceed ``stop_kl`` (:class:`HeldOutKLStop`).
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn
from torch.func import functional_call

from mapguard._errors import ConfigError
from mapguard.masking import EpochInfo, Mask, keep_kl
from mapguard.methods.free._config import FreeConfig
from mapguard.methods.free._estimate import boundary_probe, disagreement
from mapguard.methods.free._sources import mix_pairs, step_generator

__all__ = ["DegradeProbe", "HeldOutKLStop", "masked_logits", "masked_params", "stopping_rule"]


def _mask_tensor(bits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return bits.to(device=like.device, dtype=like.dtype)


def masked_params(model: nn.Module, mask: Mask | None) -> dict[str, torch.Tensor]:
    """``model``'s parameters, detached, with ``mask`` applied (None: unmasked)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    for layer in mask.layers if mask is not None else ():
        params[layer.name] = params[layer.name] * _mask_tensor(layer.bits, params[layer.name])
    return params


@torch.no_grad()
def masked_logits(
    model: nn.Module, mask: Mask | None, x: torch.Tensor, *, batch_size: int = 256
) -> torch.Tensor:
    """Logits of ``model`` with ``mask`` applied (None: unmasked), without copying or modifying
    the model."""
    device = next(model.parameters()).device
    params = masked_params(model, mask)
    was_training = model.training
    model.eval()
    try:
        out = [
            functional_call(model, params, (x[i : i + batch_size].to(device),), strict=False)
            .float()
            .cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out)


class DegradeProbe:
    """Accuracy of a masked model on fixed held-out degrade images (real target or neighbours)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y

    def __call__(self, mask: Mask | None) -> float:
        return float((masked_logits(self.model, mask, self.x).argmax(1) == self.y).float().mean())


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat(
        [model(x[i : i + 256].to(device)).float().cpu() for i in range(0, len(x), 256)]
    )


#: Epochs compared by the budget extension (``extend_epochs``): it goes on while the best probe
#: accuracy of the last window is below the best of the window before.
PROGRESS_WINDOW = 3


class HeldOutKLStop:
    """The source-free stopping rule, as a :func:`~mapguard.masking.learn_mask` callback.

    After every epoch ``e``: the drift ``kappa_e = KL_T(original || masked)`` on held-out
    pseudo-source images, and (with a ``probe``) the masked model's accuracy ``a_e`` on held-out
    degrade images, and the disagreement rate ``d_e`` of the two models on the held-out
    ``boundary`` set (default: the held-out images; :mod:`~mapguard.methods.free._estimate`). An
    epoch is *accepted* when ``kappa_e <= threshold`` (and ``d_e <= max_disagreement`` if set).
    Learning stops at the first accepted epoch with ``a_e <= goal`` (enough degradation: more
    epochs would only cost source accuracy) or after ``patience`` consecutive rejected epochs.
    The selected mask is that of the last accepted epoch (the lowest-drift epoch when none was
    accepted). With a ``budget`` (the learner runs more epochs than that), learning also stops
    at every epoch from ``budget`` on unless that epoch was accepted, missed the goal and the
    lowest ``a`` of the last ``PROGRESS_WINDOW`` epochs is below the lowest of the window before
    (the probe is noisy: ~2 pts on 400 images): the extension goes on while the target falls.
    An extension that ends without the goal selects the accepted epoch from ``budget`` on with
    the lowest ``a`` (the earliest of equals), not the last one.
    """

    def __init__(
        self,
        model: nn.Module,
        held_out: torch.Tensor,
        *,
        threshold: float,
        temperature: float = 1.0,
        patience: int = 1,
        probe: DegradeProbe | None = None,
        goal: float = 0.0,
        boundary: torch.Tensor | None = None,
        max_disagreement: float | None = None,
        budget: int | None = None,
    ) -> None:
        self.model, self.x, self.threshold, self.patience = model, held_out, threshold, patience
        self.temperature = temperature
        self.probe, self.goal = probe, goal
        self.boundary = held_out if boundary is None else boundary
        self.max_disagreement, self.budget = max_disagreement, budget
        self.teacher = _logits(model, held_out)
        self.boundary_teacher = _logits(model, self.boundary)
        self.kl: list[float] = []
        self.degrade_accuracy: list[float] = []
        self.disagreement: list[float] = []
        self.accepted: tuple[int, Mask] | None = None
        self.extended: tuple[float, int, Mask] | None = None  # best accepted epoch >= budget
        self.lowest: tuple[float, int, Mask] | None = None
        self.reached_goal = False
        self._above = 0

    def __call__(self, info: EpochInfo) -> bool:
        mask = info.current_mask()
        logits = masked_logits(self.model, mask, self.x)
        kl = float(keep_kl(logits, self.teacher, self.temperature))
        self.kl.append(kl)
        d = disagreement(self.boundary_teacher, masked_logits(self.model, mask, self.boundary))
        self.disagreement.append(d)
        acc = self.probe(mask) if self.probe is not None else float("nan")
        self.degrade_accuracy.append(acc)
        if self.lowest is None or kl < self.lowest[0]:
            self.lowest = (kl, info.epoch, mask)
        limit = self.max_disagreement
        if kl <= self.threshold and (limit is None or d <= limit):
            self.accepted, self._above = (info.epoch, mask), 0
            self.reached_goal = acc <= self.goal
            if self.budget is not None and info.epoch >= self.budget:
                if self.extended is None or acc < self.extended[0]:
                    self.extended = (acc, info.epoch, mask)
            return self.reached_goal or not self._extend(info.epoch)
        self._above += 1
        return self._above >= self.patience or (
            self.budget is not None and info.epoch >= self.budget
        )

    def _extend(self, epoch: int) -> bool:
        """Whether an accepted epoch that missed the goal may be followed by another one."""
        if self.budget is None or epoch < self.budget:
            return True
        acc, w = self.degrade_accuracy, PROGRESS_WINDOW
        return len(acc) >= 2 * w and min(acc[-w:]) < min(acc[-2 * w : -w])

    def selection(self) -> tuple[Mask, int, bool]:
        """``(mask, epoch, within_threshold)`` of the chosen epoch."""
        if self.extended is not None and not self.reached_goal:  # the extension's best epoch
            return self.extended[2], self.extended[1], True
        if self.accepted is not None:
            return self.accepted[1], self.accepted[0], True
        if self.lowest is None:
            raise ConfigError("the stopping rule saw no epoch")
        return self.lowest[2], self.lowest[1], False


def stopping_rule(
    net: nn.Module,
    held: torch.Tensor,
    cfg: FreeConfig,
    probe: DegradeProbe | None,
    k: int,
    held_labels: torch.Tensor | None = None,
    *,
    budget: int | None = None,
) -> HeldOutKLStop:
    """The :class:`HeldOutKLStop` of ``cfg`` for a ``k``-class model (goal ``2 / k`` by default,
    less the probe's sampling margin with ``goal_confidence``;
    with ``stop_mixup`` the held-out images also hold 4 fixed mixtures of each). Its boundary
    set is ``held`` plus ``cfg.probe_mixtures`` two-class mixtures per image (``held_labels``).
    ``budget``: the mask budget in epochs, used when ``cfg.extend_epochs`` lets the learner run
    past it."""
    goal = cfg.degrade_goal if cfg.degrade_goal is not None else 2.0 / k
    if cfg.goal_confidence is not None and probe is not None:  # the probe's sampling error
        z = statistics.NormalDist().inv_cdf(cfg.goal_confidence)
        goal = max(0.0, goal - z * math.sqrt(goal * (1 - goal) / len(probe.y)))
    boundary = None
    if held_labels is not None:
        boundary = boundary_probe(
            held, held_labels, per_image=cfg.probe_mixtures, seed=cfg.synthesis_seed
        )
    if cfg.stop_mixup:
        gen = step_generator(cfg.synthesis_seed, 0x57)
        held = torch.cat([held, *(mix_pairs(held, len(held), gen) for _ in range(4))])
    return HeldOutKLStop(
        net,
        held,
        threshold=cfg.stop_kl,
        temperature=cfg.stop_temperature,
        patience=cfg.patience,
        probe=probe,
        goal=goal,
        boundary=boundary,
        max_disagreement=cfg.stop_disagreement,
        budget=budget if cfg.extend_epochs else None,
    )
