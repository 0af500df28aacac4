"""``AttackConfig``: the options of every attack kind, validated once; unset fields take the kind's
defaults (see :func:`AttackConfig.resolve`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mapguard._config import ConfigMixin, check_int, check_range
from mapguard._errors import ConfigError

__all__ = ["AttackConfig"]


@dataclass(frozen=True, kw_only=True)
class AttackConfig(ConfigMixin, what="attack"):
    """Options of :func:`mapguard.attacks.attack`; ``None`` means "the attack kind's default".

    Attributes:
        fraction: Share of the given data the attacker uses, in ``(0, 1]``.
        n_images: Number of data images the attacker uses (overrides ``fraction``).
        amount: Pruning amount in ``[0, 1)``: share of each layer's weights (``prune``) or of the
            last convolution's channels (``fine-prune``) set to zero.
        epochs: Training epochs over the attacker's data.
        lr: Peak learning rate (SGD with momentum 0.9, one-cycle schedule).
        batch_size: Training batch size.
        weight_decay: SGD weight decay.
        temperature: Distillation temperature (``distill``, ``distill-arch``).
        noise_scale: ``regrow``: std of the noise written into zeroed weights, relative to the
            std of the layer's non-zero weights.
        arch: Student architecture (``distill-arch``; optional for ``extract``).
        augment: Random shifts and brightness/contrast jitter while training.
        epsilon: ``wrk``: adds WRK's boundary branch, clean images pushed one signed-gradient
            step of this size (pixel units, in ``(0, 1]``) towards a random class and relabelled
            at random (unset: no boundary samples).
    """

    fraction: float | None = None
    n_images: int | None = None
    amount: float | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    temperature: float | None = None
    noise_scale: float | None = None
    arch: str | None = None
    augment: bool | None = None
    epsilon: float | None = None

    def __post_init__(self) -> None:
        _config_iv(self)

    def resolve(self, defaults: Mapping[str, Any]) -> AttackConfig:
        """A copy with every unset field taken from ``defaults`` (then the global defaults)."""
        values = {**_GLOBAL_DEFAULTS, **dict(defaults)}
        self.check_names(values)
        filled = {k: v for k, v in values.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    def to_dict(self) -> dict[str, Any]:
        """The set fields as a JSON-ready dict (unset ones left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}  # fmt: skip


_GLOBAL_DEFAULTS: dict[str, Any] = {"batch_size": 64, "weight_decay": 5e-4, "augment": True}


#: Bounds ``(lo, hi, lo_open, hi_open)`` of every bounded number option.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "fraction": (0, 1, True, False),
    "amount": (0, 1, False, True),
    "lr": (0, 10, True, False),
    "weight_decay": (0, 1, False, False),
    "temperature": (0, 1e3, True, False),
    "noise_scale": (0, 1e3, False, False),
    "epsilon": (0, 1, True, False),
}


def _config_iv(cfg: AttackConfig) -> None:
    for name, (lo, hi, lo_open, hi_open) in _RANGES.items():
        if getattr(cfg, name) is not None:
            check_range(name, getattr(cfg, name), lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
    for name in ("n_images", "epochs", "batch_size"):
        if getattr(cfg, name) is not None:
            check_int(name, getattr(cfg, name), low=1)
    if cfg.arch is not None and (not isinstance(cfg.arch, str) or not cfg.arch):
        raise ConfigError(f"arch must be a model name, got {cfg.arch!r}")
    if cfg.augment is not None and not isinstance(cfg.augment, bool):
        raise ConfigError(f"augment must be true or false, got {cfg.augment!r}")
