"""The attack registry: ``@register_attack`` recipes looked up by kind name.

The built-in recipes register themselves where they are defined; :mod:`mapguard.attacks` imports
every one of them, so the registry is complete whenever it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mapguard._errors import ConfigError

if TYPE_CHECKING:
    from mapguard.attacks._config import AttackConfig
    from mapguard.data import ImageSet

__all__ = [
    "AttackContext",
    "AttackKind",
    "AttackOutput",
    "get_attack",
    "list_attacks",
    "register_attack",
]

DATA_ROLES = ("source", "target")


@dataclass(frozen=True, kw_only=True, eq=False)
class AttackContext:
    """What a recipe receives: a private copy of the victim, its facts, the attacker's data.

    Attributes:
        model: A deep copy of the victim (the recipe may change it in place), on ``device``.
        arch: The victim's architecture name (``"unknown"`` when no metadata was given).
        num_classes: Output classes of the victim.
        mean, std: The victim's input normalisation (for new students).
        data: The attacker's images (already cut to ``fraction``/``n_images``), or None.
        config: The resolved options (no field is None except ``arch`` where unused).
        seed: Seed of every random choice of the recipe.
        device: Torch device for training.
        progress: Show progress bars.
    """

    model: nn.Module
    arch: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data: ImageSet | None
    config: AttackConfig
    seed: int
    device: torch.device
    progress: bool = False


@dataclass(frozen=True, kw_only=True, eq=False)
class AttackOutput:
    """What a recipe returns: the attacked model, its architecture and what the recipe did."""

    model: nn.Module
    arch: str
    details: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AttackKind:
    """A registered attack: its recipe, whether it needs data and its default options."""

    name: str
    run: Callable[[AttackContext], AttackOutput]
    description: str
    needs_data: bool
    data_role: str
    defaults: Mapping[str, Any]


_ATTACKS: dict[str, AttackKind] = {}


def register_attack(
    name: str,
    *,
    description: str,
    needs_data: bool = True,
    data_role: str = "source",
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Callable[[AttackContext], AttackOutput]], Callable[[AttackContext], AttackOutput]]:
    """Register ``fn(ctx) -> AttackOutput`` as attack kind ``name``.

    Args:
        name: Kind name used on the command line (``--kind``).
        description: One line for listings.
        needs_data: Whether the recipe trains on attacker data.
        data_role: ``"source"`` (clean data of the victim's task) or ``"target"`` (data of a
            domain the attacker wants the model to work on).
        defaults: :class:`~mapguard.attacks.AttackConfig` values used where the caller set none.
    """
    if data_role not in DATA_ROLES:
        raise ValueError(f"data_role must be one of {DATA_ROLES}, got {data_role!r}")

    def deco(
        fn: Callable[[AttackContext], AttackOutput],
    ) -> Callable[[AttackContext], AttackOutput]:
        if name in _ATTACKS:
            raise ValueError(f"attack '{name}' is already registered")
        _ATTACKS[name] = AttackKind(
            name=name,
            run=fn,
            description=description,
            needs_data=needs_data,
            data_role=data_role,
            defaults=dict(defaults or {}),
        )
        return fn

    return deco


def list_attacks() -> dict[str, str]:
    """Registered kinds and their one-line descriptions, sorted by name."""
    return {name: _ATTACKS[name].description for name in sorted(_ATTACKS)}


def get_attack(name: str) -> AttackKind:
    """The registered kind ``name``.

    Raises:
        ConfigError: unknown kind (the message lists the valid ones).
    """
    if not isinstance(name, str) or name not in _ATTACKS:
        raise ConfigError(
            f"unknown attack kind {name!r}; choose one of: {', '.join(sorted(_ATTACKS))}"
        )
    return _ATTACKS[name]
