"""The steps SF-MAP and DF-MAP share: synthesise the pseudo-source on a private copy of the model,
learn the mask under the stopping rule, and hand back the result and the method's output."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mapguard._device import default_device
from mapguard._errors import ConfigError
from mapguard.masking import BatchSource, MaskConfig, ObjectiveTerm, apply_mask, learn_mask
from mapguard.methods._registry import MethodOutput
from mapguard.methods.free._boundary import BoundaryKeep, PoolKeep, PoolSource
from mapguard.methods.free._config import FreeConfig, FreeResult
from mapguard.methods.free._estimate import estimate_drop
from mapguard.methods.free._sources import PseudoSource
from mapguard.methods.free._stopping import DegradeProbe, HeldOutKLStop, stopping_rule
from mapguard.synthesis import SynthesisResult, synthesize

__all__ = ["FreeRun", "method_output", "predict_labels", "start"]


@dataclass(frozen=True, kw_only=True, eq=False)
class FreeRun:
    """What both methods start from.

    Attributes:
        cfg, mcfg: the SF/DF options and the mask-learner options.
        device: torch device of the run.
        pseudo: the synthesised pseudo-source.
        net: a frozen private copy of the model on ``device`` (hooks go on it, never on the
            caller's model).
        x: the pseudo-source as float images; ``train`` / ``held`` index its two splits.
    """

    cfg: FreeConfig
    mcfg: MaskConfig
    device: torch.device
    pseudo: SynthesisResult
    net: nn.Module
    x: torch.Tensor
    train: torch.Tensor
    held: torch.Tensor

    def keep_source(self, steps: int) -> PseudoSource:
        """The keep source of SF-MAP and DF-MAP: the pseudo-source's training split."""
        cfg = self.cfg
        return PseudoSource(
            self.x[self.train], steps_per_epoch=steps, seed=self.mcfg.seed,
            augment=cfg.keep_augment, mixup=cfg.keep_mixup,
            pool_fraction=cfg.boundary_fraction if cfg.boundary and not cfg.boundary_term else 0.0,
            pool_size=cfg.boundary_pool,
        )  # fmt: skip

    def stopping_rule(self, probe: DegradeProbe | None) -> HeldOutKLStop:
        """The stopping rule on the held-out pseudo-source (and its boundary set)."""
        held = self.held
        return stopping_rule(
            self.net, self.x[held], self.cfg, probe, self.pseudo.num_classes,
            self.pseudo.labels[held], budget=self.mcfg.epochs,
        )  # fmt: skip

    def _boundary(
        self, keep: PseudoSource, mcfg: MaskConfig
    ) -> tuple[list[BoundaryKeep], list[PoolKeep], PseudoSource | PoolSource]:
        """The boundary-aware keep set's callback, extra term (``boundary_term``) and pool
        (``mcfg``: the learner's options, its ``epochs`` with the extension)."""
        cfg = self.cfg
        if not cfg.boundary:
            return [], [], keep
        pool: PseudoSource | PoolSource = keep
        terms = []
        if cfg.boundary_term:
            f = cfg.boundary_fraction
            pool = PoolSource(
                self.net, self.x, rows=max(1, round(f * mcfg.batch_size)), seed=mcfg.seed,
                steps_per_epoch=keep.steps, pool_size=cfg.boundary_pool, augment=cfg.keep_augment,
            )  # fmt: skip
            weight = mcfg.keep_weight * f / max(1e-6, 1 - f)
            terms = [PoolKeep(pool, weight=weight, temperature=mcfg.temperature)]
        x, y = self.x[self.train], self.pseudo.labels[self.train]
        grow = BoundaryKeep(self.net, x, y, pool, cfg, seed=mcfg.seed, last_epoch=mcfg.epochs)
        return [grow], terms, pool

    def learn(
        self,
        keep: PseudoSource,
        degrade: BatchSource | Sequence[BatchSource],
        stop: HeldOutKLStop,
        callbacks: Sequence[Any],
        progress: bool,
        transfer: float | None = None,
        terms: Sequence[ObjectiveTerm] = (),
    ) -> FreeResult:
        """Learn the mask (``callbacks`` run before the stopping rule; the boundary-aware keep
        set grows after it, on epochs that did not end learning) and pick the epoch.
        ``transfer``: the original model's accuracy on the held-out target (SF-MAP with target
        labels); with it the drop estimate uses the ``collateral`` signal (the masked model's
        accuracy on that probe at the chosen epoch), else the disagreement. ``terms``: further
        objective terms (SF-MAP's restyled keep term)."""
        if self.mcfg.update_bn:
            raise ConfigError(
                "SF-MAP / DF-MAP keep BatchNorm statistics frozen (update_bn must be False)"
            )
        mcfg = self.mcfg  # the budget, plus the extension's epochs (the stopping rule ends them)
        mcfg = (
            mcfg.replace(epochs=mcfg.epochs + self.cfg.extend_epochs)
            if self.cfg.extend_epochs
            else mcfg
        )
        grow, pool_terms, pool = self._boundary(keep, mcfg)
        learned = learn_mask(
            self.net, keep=keep, degrade=degrade, config=mcfg, extra_terms=[*pool_terms, *terms],
            callbacks=[*callbacks, stop, *grow], device=self.device, progress=progress,
        )  # fmt: skip
        mask, epoch, ok = stop.selection()
        d, after = stop.disagreement[epoch - 1], stop.degrade_accuracy[epoch - 1]
        estimate = estimate_drop(
            d, len(stop.boundary), transfer=transfer,
            target_after=after if transfer is not None else None,
            probe_n=len(stop.probe.x) if stop.probe is not None else 0,
        )  # fmt: skip
        return FreeResult(
            mask=mask,
            learned=learned,
            pseudo=self.pseudo,
            held_out_kl=tuple(stop.kl),
            degrade_accuracy=tuple(stop.degrade_accuracy),
            chosen_epoch=epoch,
            within_threshold=ok,
            reached_goal=stop.reached_goal,
            disagreement=tuple(stop.disagreement),
            estimated_source_drop=estimate,
            boundary_images=len(pool.pool),
        )


def start(
    model: nn.Module,
    *,
    config: FreeConfig | None,
    mask_config: MaskConfig | None,
    defaults: Mapping[str, Any],
    free_defaults: Mapping[str, Any] | None = None,
    cache: Any,
    device: str | torch.device | None,
    progress: bool,
    size: int,
) -> FreeRun:
    """Resolve the options (``bn_weight`` 0.1 when left at 0; ``free_defaults`` when no
    ``config``), synthesise the pseudo-source at
    the model's image side ``size`` and split it into training and held-out images."""
    cfg = config or FreeConfig(**(free_defaults or {}))
    mcfg = mask_config or MaskConfig.from_dict(defaults)
    mcfg = mcfg if mcfg.bn_weight > 0 else mcfg.replace(bn_weight=0.1)
    dev = default_device(str(device) if device else None)
    pseudo = synthesize(
        model, n=cfg.n_pseudo, config=cfg.synthesis, seed=cfg.synthesis_seed, cache=cache,
        device=dev, progress=progress, size=size,
    )  # fmt: skip
    net = copy.deepcopy(model).to(dev).eval()
    train, held = pseudo.split(cfg.held_out, seed=cfg.synthesis_seed)
    return FreeRun(
        cfg=cfg, mcfg=mcfg, device=dev, pseudo=pseudo, net=net, x=pseudo.floats(),
        train=train, held=held,
    )  # fmt: skip


@torch.no_grad()
def predict_labels(net: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's predicted classes on float images ``x`` (batches of 256), on the CPU."""
    return torch.cat(
        [net(x[i : i + 256].to(device)).argmax(1).cpu() for i in range(0, len(x), 256)]
    )


def method_output(
    result: FreeResult, model: nn.Module, mcfg: MaskConfig, fcfg: FreeConfig
) -> MethodOutput:
    """The protection method's output: the mask baked into ``model`` and what was learned."""
    learned = result.learned
    return MethodOutput(
        model=apply_mask(model, result.mask),
        config={**mcfg.to_dict(), "free": fcfg.to_dict()},
        seconds=learned.seconds + result.pseudo.stats.seconds + result.restyle_seconds,
        images_per_second=learned.images_per_second,
        mask=result.mask,
        info={"history": list(learned.history), **result.summary()},
    )
