"""Protection metrics: drops and ST-D, the source/target degradation balance.

ST-D (our definition; the MAP paper's exact formula is not public, see ``docs/METHOD.md``):

* source retention  ``R = clip((a_s' - c) / (a_s - c), 0, 1)``
* target degradation ``D = clip((a_t - a_t') / (a_t - c), 0, 1)``
* ``ST-D = 2 R D / (R + D)`` (harmonic mean; 0 when either is 0)

where ``a`` is accuracy before and ``a'`` after protection and ``c = 1 / num_classes`` is chance.
Both sides are normalised to the room above chance, so neither can be traded away: a model that
collapses everywhere has ``R = 0`` and a model that was left untouched has ``D = 0``; both score 0.
ST-D is undefined (``None``) when the target was already at or below chance before protection
(there is nothing to protect against: an *uninformative* pair).

Example:
    >>> round(st_d(source_before=0.98, source_after=0.97, target_before=0.60, target_after=0.10,
    ...            num_classes=10), 3)
    0.994
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mapguard._config import check_int
from mapguard._errors import ConfigError

__all__ = [
    "ProtectionMetrics",
    "protection_metrics",
    "source_retention",
    "st_d",
    "target_degradation",
]


def _check_acc(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be an accuracy in [0, 1], got {value!r}")
    return float(value)


def _chance(num_classes: int) -> float:
    check_int("num_classes", num_classes, low=2)
    return 1.0 / num_classes


def source_retention(before: float, after: float, *, num_classes: int) -> float:
    """Fraction of the above-chance source accuracy that survives protection, in [0, 1]."""
    b, a, c = (
        _check_acc("source_before", before),
        _check_acc("source_after", after),
        _chance(num_classes),
    )
    if b <= c:
        raise ConfigError(
            f"source accuracy before protection ({b:.3f}) is not above chance ({c:.3f})"
        )
    return min(1.0, max(0.0, (a - c) / (b - c)))


def target_degradation(before: float, after: float, *, num_classes: int) -> float | None:
    """Fraction of the above-chance target accuracy removed, in [0, 1]; None if none to remove."""
    b, a, c = (
        _check_acc("target_before", before),
        _check_acc("target_after", after),
        _chance(num_classes),
    )
    if b <= c:
        return None
    return min(1.0, max(0.0, (b - a) / (b - c)))


def st_d(
    *,
    source_before: float,
    source_after: float,
    target_before: float | Sequence[float],
    target_after: float | Sequence[float],
    num_classes: int = 10,
) -> float | None:
    """ST-D in [0, 1] (higher is better); several targets use the mean of their degradations."""
    tb = [target_before] if isinstance(target_before, (int, float)) else list(target_before)
    ta = [target_after] if isinstance(target_after, (int, float)) else list(target_after)
    if len(tb) != len(ta) or not tb:
        raise ConfigError("target_before and target_after need the same, non-zero length")
    r = source_retention(source_before, source_after, num_classes=num_classes)
    ds = [target_degradation(b, a, num_classes=num_classes) for b, a in zip(tb, ta)]
    ds = [d for d in ds if d is not None]
    if not ds:
        return None
    d = sum(ds) / len(ds)
    return 0.0 if r + d == 0 else 2 * r * d / (r + d)


@dataclass(frozen=True, kw_only=True)
class ProtectionMetrics:
    """Before/after figures of one protection run (accuracies are fractions).

    A source-free run given no source data (SF-MAP / DF-MAP without ``--source``) has
    ``source = source_before = source_after = None`` and reports ``estimated_source_drop``
    instead (the method's estimate with its interval, e.g. ``{"estimate": 0.01, "low": 0.0,
    "high": 0.03, ...}``; fractions, not points); ``st_d`` is then None.
    """

    source: str | None
    source_before: float | None
    source_after: float | None
    targets: dict[str, tuple[float, float]]
    others: dict[str, tuple[float, float]]
    pruned_fraction: float
    num_classes: int
    estimated_source_drop: Mapping[str, Any] | None = None

    @property
    def source_measured(self) -> bool:
        """Whether the source accuracy was measured (source test data given)."""
        return self.source_before is not None and self.source_after is not None

    @property
    def source_drop(self) -> float | None:
        if self.source_before is None or self.source_after is None:
            return None
        return self.source_before - self.source_after

    def target_drop(self, name: str) -> float:
        b, a = self.targets[name]
        return b - a

    @property
    def st_d(self) -> float | None:
        if not self.targets or self.source_before is None or self.source_after is None:
            return None
        return st_d(
            source_before=self.source_before,
            source_after=self.source_after,
            target_before=[b for b, _ in self.targets.values()],
            target_after=[a for _, a in self.targets.values()],
            num_classes=self.num_classes,
        )

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["targets"] = {
            k: {"before": b, "after": a, "drop": b - a} for k, (b, a) in self.targets.items()
        }
        d["others"] = {
            k: {"before": b, "after": a, "drop": b - a} for k, (b, a) in self.others.items()
        }
        d["source_drop"] = self.source_drop
        d["source_accuracy"] = (
            {"before": self.source_before, "after": self.source_after, "drop": self.source_drop}
            if self.source_measured
            else None
        )
        d["estimated_source_drop"] = (
            dict(self.estimated_source_drop) if self.estimated_source_drop is not None else None
        )
        d["st_d"] = self.st_d
        return d


def protection_metrics(**kwargs: object) -> ProtectionMetrics:
    """Build :class:`ProtectionMetrics` (validates every accuracy)."""
    m = ProtectionMetrics(**kwargs)  # type: ignore[arg-type]
    if m.source_before is not None or m.source_after is not None:
        _check_acc("source_before", m.source_before)  # type: ignore[arg-type]
        _check_acc("source_after", m.source_after)  # type: ignore[arg-type]
    for name, (b, a) in {**m.targets, **m.others}.items():
        _check_acc(f"accuracy on {name}", b)
        _check_acc(f"accuracy on {name}", a)
    return m
