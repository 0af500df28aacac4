"""``MaskConfig``: every option of the mask learner, validated once, serialisable."""

from __future__ import annotations

from dataclasses import dataclass

from mapguard._config import ConfigMixin, check_int, check_number
from mapguard._errors import ConfigError
from mapguard.masking._optim import OPTIMIZERS

__all__ = ["GRANULARITIES", "MaskConfig"]

GRANULARITIES = ("weight", "channel")


@dataclass(frozen=True, kw_only=True)
class MaskConfig(ConfigMixin, what="mask"):
    """Options of :func:`mapguard.masking.learn_mask` (see ``docs/METHOD.md`` for the objective).

    Attributes:
        epochs: passes over the (first) keep source.
        lr: Adam learning rate on the mask scores.
        batch_size: images per source per step (global batch; split across DDP ranks).
        keep_weight: weight of the keep term ``KL(original || masked)`` on keep batches.
        keep_ce_weight: weight of the label-free agreement term ``CE(masked, argmax original)``
            on keep batches (0 = off).
        degrade_weight: weight of the bounded degrade term on degrade batches.
        degrade_cap: per-sample cross-entropy cap of the degrade term.
        prune_weight: weight of the regulariser ``pruned fraction``.
        bn_weight: weight of the optional BatchNorm-statistics keep term (0 = off).
        temperature: softmax temperature of the keep KL.
        threshold: a weight is kept when its score is above this value.
        init_score: initial score of every mask entry (above ``threshold`` = all ones).
        granularity: ``"weight"`` (one bit per weight) or ``"channel"`` (per output channel).
        optimizer: ``"adam"`` or ``"layer-adam"`` (per-tensor second moment, see ``_optim.py``).
        exclude: fnmatch patterns of parameter or module names that are never masked.
        update_bn: let BatchNorm running statistics adapt (train mode; off by default).
        weight_noise: relative standard deviation of multiplicative Gaussian noise put on every
            masked weight in each learning step, ``w * (1 + weight_noise * eps)``, so that the
            mask's effect must hold in a neighbourhood of the weights (e.g. after a thief's
            fine-tuning); 0 = off. The protected model itself carries no noise.
        max_steps_per_epoch: cap on steps per epoch (``None`` = a full pass).
        cache_teacher: precompute the original model's logits on fixed keep sets once.
        seed: seed of every shuffle.
    """

    epochs: int = 4
    lr: float = 5e-2
    batch_size: int = 64
    keep_weight: float = 10.0
    keep_ce_weight: float = 0.0
    degrade_weight: float = 1.0
    degrade_cap: float = 5.0
    prune_weight: float = 1.0
    bn_weight: float = 0.0
    temperature: float = 1.0
    threshold: float = 0.5
    init_score: float = 1.0
    granularity: str = "weight"
    optimizer: str = "layer-adam"
    exclude: tuple[str, ...] = ()
    update_bn: bool = False
    weight_noise: float = 0.0
    max_steps_per_epoch: int | None = None
    cache_teacher: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        for name in ("lr", "degrade_cap", "temperature"):
            check_number(name, getattr(self, name), positive=True)
        for name in (
            "keep_weight",
            "keep_ce_weight",
            "degrade_weight",
            "prune_weight",
            "bn_weight",
            "weight_noise",
        ):
            check_number(name, getattr(self, name), positive=False)
        if self.keep_weight == 0 and self.degrade_weight == 0:
            raise ConfigError("keep_weight and degrade_weight cannot both be 0")
        check_number("threshold", self.threshold, positive=False)
        if not self.init_score > self.threshold:
            raise ConfigError(
                f"init_score ({self.init_score}) must exceed threshold ({self.threshold}) "
                "so that the mask starts all ones"
            )
        if self.granularity not in GRANULARITIES:
            raise ConfigError(
                f"unknown granularity {self.granularity!r}; "
                f"choose one of: {', '.join(GRANULARITIES)}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if isinstance(self.exclude, str) or not all(isinstance(p, str) for p in self.exclude):
            raise ConfigError(f"exclude must be a tuple of name patterns, got {self.exclude!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.max_steps_per_epoch is not None:
            check_int("max_steps_per_epoch", self.max_steps_per_epoch, low=1)
