"""The frozen result of a verification."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from verification._jsonsafe import INTERNAL, jsonsafe
from verification._stats.calibration import CalibrationResult
from verification._stats.effect import EffectSize, effect_size
from verification._stats.parametric import TailFitResult
from verification._stats.pooled import PooledTestResult
from verification._stats.rank import CombinedRankTestResult
from verification._verify.spec import VerifyConfig

__all__ = ["NullSummary", "VerificationResult"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NullSummary:
    """Summary of the null statistics ``g(null key)`` over all secrets' null keys."""

    count: int
    mean: float
    sd: float
    median: float
    min: float
    max: float
    q99: float

    @classmethod
    def of(cls, values: np.ndarray) -> NullSummary:
        """Summarise a non-empty array."""
        v = np.asarray(values, dtype=np.float64).ravel()
        return cls(
            count=int(v.size),
            mean=float(v.mean()),
            sd=float(v.std(ddof=1)) if v.size > 1 else 0.0,
            median=float(np.median(v)),
            min=float(v.min()),
            max=float(v.max()),
            q99=float(np.quantile(v, 0.99)),
        )


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class VerificationResult:
    """Outcome of :func:`verification.verify.verify`.

    The verdict ``evidenced`` is ``pvalue <= alpha`` for the configured exact test (after the
    attempt factor) and the secrets' floor statistic (weakest or median) reaching the effect
    floor; all parametric numbers are supplementary.

    Attributes:
        evidenced: Whether the test rejects H0 at ``alpha``.
        statistic: The test statistic (max-rank: ``max_i rank_i / (M + 1)``; pooled-min: the
            weakest secret's ``g``; pooled-rank-sum: the secrets' rank sum among all keys).
        pvalue: Exact p-value of the configured test times the attempt number (capped at 1).
        pvalue_floor: Smallest attainable p-value with this many secrets and null keys.
        alpha: Significance level.
        test: The per-secret :class:`CombinedRankTestResult` (the verdict's test when
            ``config.test`` is ``"exact-max-rank"``, supplementary otherwise).
        method: The verdict's test, in words.
        pvalue_unadjusted: The test's p-value before the attempt factor.
        pooled: The :class:`PooledTestResult` when ``config.test`` is a pooled test.
        mode: ``"labels"`` or ``"probabilities"``.
        statistic_definition: What ``g`` (per key) measures.
        secret_stats: ``g(secret_i)``.
        ranks: Rank of each secret among its null keys (1 = most extreme).
        null_stats: ``g`` of every null key, one tuple per secret (for plots).
        null_summary: Summary over all null keys.
        clean_accuracy: Suspect accuracy on the clean verification images.
        triggered_accuracies: Suspect accuracy under each secret trigger.
        null_triggered_accuracy: Mean accuracy under the null triggers.
        effect: Effect size with a bootstrap interval.
        parametric_pvalue: Supplementary combined parametric p-value (None if unavailable).
        parametric: Per-secret supplementary tail fits.
        negative_controls: Each null key used as a fake secret on this suspect.
        n_images, n_secrets, null_keys_per_secret, queries: Sizes; ``queries`` counts images
            sent to the suspect by this verification (probe included).
        null_seed: The public seed of the null keys actually used.
        suspect_digest: The suspect's public digest, if known.
        owner_key: Fingerprint of the key that signed the tested watermark, if known (from
            :attr:`WatermarkSpec.owner_key`).
        family, family_params: The trigger family used.
        secret_triggers: Public descriptions of the secret triggers.
        notes: Warnings for the reader (e.g. the floor exceeds alpha).
        wall_time_s: Seconds taken.
        config: The configuration used.
    """

    evidenced: bool
    statistic: float
    pvalue: float
    pvalue_floor: float
    alpha: float
    test: CombinedRankTestResult
    method: str
    pvalue_unadjusted: float
    pooled: PooledTestResult | None
    mode: str
    statistic_definition: str
    secret_stats: tuple[float, ...]
    ranks: tuple[int, ...]
    null_stats: tuple[tuple[float, ...], ...]
    null_summary: NullSummary
    clean_accuracy: float
    triggered_accuracies: tuple[float, ...]
    null_triggered_accuracy: float
    effect: EffectSize
    parametric_pvalue: float | None
    parametric: tuple[TailFitResult, ...]
    negative_controls: CalibrationResult | None
    n_images: int
    n_secrets: int
    null_keys_per_secret: int
    queries: int
    null_seed: str
    suspect_digest: str | None
    owner_key: str
    family: str
    family_params: dict[str, Any]
    secret_triggers: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    wall_time_s: float
    config: VerifyConfig
    secret_contributions: np.ndarray = dataclasses.field(repr=False, metadata=INTERNAL)
    null_contributions: np.ndarray = dataclasses.field(repr=False, metadata=INTERNAL)

    def confidence_interval(
        self,
        confidence_level: float = 0.95,
        *,
        n_resamples: int = 2000,
        rng: np.random.Generator | int | None = 0,
    ) -> EffectSize:
        """Effect size ``g(secret) - mean g(null)`` with a bootstrap interval at any level."""
        return effect_size(
            self.secret_contributions,
            self.null_contributions,
            confidence_level=confidence_level,
            n_resamples=n_resamples,
            rng=rng,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (no NaN/inf; per-image arrays left out)."""
        return jsonsafe(self)
