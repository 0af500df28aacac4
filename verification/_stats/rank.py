"""Exact rank (Monte Carlo permutation) tests of a secret key against null keys."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from verification._errors import VerificationError
from verification._jsonsafe import jsonsafe
from verification._stats.validation import (
    ALTERNATIVES,
    TIES,
    as_rng,
    check_choice,
    finite_scalar,
    finite_vector,
)

__all__ = ["CombinedRankTestResult", "RankTestResult", "combined_rank_test", "rank_test"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankTestResult:
    """Result of :func:`rank_test`.

    Attributes:
        statistic: The secret key's statistic.
        pvalue: Exact p-value ``rank / (m + 1)`` (two-sided: doubled, capped at 1).
        rank: ``1 +`` the number of null statistics at least as extreme (ties per ``ties``).
        m: Number of null statistics.
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"``.
        ties: ``"conservative"`` or ``"randomized"``.
        method: Human-readable name of the test.
    """

    statistic: float
    pvalue: float
    rank: int
    m: int
    alternative: str
    ties: str
    method: str

    @property
    def pvalue_floor(self) -> float:
        """Smallest p-value the test can give with ``m`` null statistics."""
        floor = 1.0 / (self.m + 1)
        return min(1.0, 2 * floor) if self.alternative == "two-sided" else floor

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields plus ``pvalue_floor``."""
        return {**jsonsafe(self), "pvalue_floor": self.pvalue_floor}


def _rank_test_iv(
    secret_stat: object, null_stats: object, alternative: object, ties: object, rng: object
) -> tuple[float, np.ndarray, str, str, np.random.Generator | None]:
    stat = finite_scalar("secret_stat", secret_stat)
    nulls = finite_vector("null_stats", null_stats, min_len=0)
    alt = check_choice("alternative", alternative, ALTERNATIVES)
    tie = check_choice("ties", ties, TIES)
    generator = as_rng(rng) if tie == "randomized" else None
    return stat, nulls, alt, tie, generator


def _upper_rank(stat: float, nulls: np.ndarray, rng: np.random.Generator | None) -> int:
    """``1 +`` #nulls above ``stat`` + tied nulls (all, or a uniform share when ``rng``)."""
    above = int(np.count_nonzero(nulls > stat))
    tied = int(np.count_nonzero(nulls == stat))
    return 1 + above + (tied if rng is None else int(rng.integers(0, tied + 1)))


def rank_test(
    secret_stat: float,
    null_stats: Sequence[float] | np.ndarray,
    *,
    alternative: str = "greater",
    ties: str = "conservative",
    rng: np.random.Generator | int | None = None,
) -> RankTestResult:
    """Exact rank test of one secret statistic against ``m`` null statistics.

    Null hypothesis: the secret statistic and the ``m`` null statistics are exchangeable — true
    when the secret and the null keys are iid draws from the same key distribution and the
    suspect model does not depend on the secret. Then the rank of the secret among the ``m + 1``
    values is uniform and ``P(p <= r / (m + 1)) = r / (m + 1)`` exactly (with ``ties=
    "randomized"``) or ``<=`` (``ties="conservative"``, ties counted against the secret).

    Args:
        secret_stat: Statistic of the secret key, e.g. the fraction of images it breaks.
        null_stats: Statistics of the null keys.
        alternative: ``"greater"`` (the secret is more extreme upwards), ``"less"`` or
            ``"two-sided"`` (twice the smaller one-sided p-value, capped at 1).
        ties: ``"conservative"`` (nulls equal to the secret count as more extreme) or
            ``"randomized"`` (the secret's place among tied values is drawn uniformly).
        rng: Generator or seed for ``ties="randomized"``; ignored otherwise.

    Returns:
        :class:`RankTestResult`.

    References:
        Barnard, G. A. (1963). Discussion of "The spectral analysis of point processes".
        JRSS B 25, 294. Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be
        zero. Stat. Appl. Genet. Mol. Biol. 9(1), Article 39.
    """
    stat, nulls, alt, tie, gen = _rank_test_iv(secret_stat, null_stats, alternative, ties, rng)
    m = nulls.size
    if alt == "greater":
        rank = _upper_rank(stat, nulls, gen)
        pvalue = rank / (m + 1)
    elif alt == "less":
        rank = _upper_rank(-stat, -nulls, gen)
        pvalue = rank / (m + 1)
    else:
        rank = min(_upper_rank(stat, nulls, gen), _upper_rank(-stat, -nulls, gen))
        pvalue = min(1.0, 2 * rank / (m + 1))
    method = f"exact rank test against {m} null keys (ties: {tie})"
    return RankTestResult(
        statistic=stat, pvalue=pvalue, rank=rank, m=m, alternative=alt, ties=tie, method=method
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CombinedRankTestResult:
    """Result of :func:`combined_rank_test`.

    Attributes:
        statistic: ``max_i p_i``, the largest per-secret rank p-value.
        pvalue: Exact ``P_H0(max_i p_i <= statistic)``.
        pvalue_floor: The smallest attainable p-value, ``prod_i 1 / (m_i + 1)`` (one-sided).
        ranks: Per-secret ranks.
        ms: Per-secret numbers of null keys.
        per_secret: Per-secret :class:`RankTestResult`.
        alternative, ties, method: As in :class:`RankTestResult`.
    """

    statistic: float
    pvalue: float
    pvalue_floor: float
    ranks: tuple[int, ...]
    ms: tuple[int, ...]
    per_secret: tuple[RankTestResult, ...]
    alternative: str
    ties: str
    method: str

    @property
    def k(self) -> int:
        """Number of secrets."""
        return len(self.ranks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return jsonsafe(self)


def _combined_iv(secret_stats: object, null_stats: object) -> tuple[np.ndarray, list[object]]:
    stats = finite_vector("secret_stats", secret_stats)
    nulls = list(null_stats)  # type: ignore[call-overload]
    if len(nulls) != stats.size:
        raise VerificationError(
            f"need one null-statistic array per secret: {stats.size} secrets, {len(nulls)} arrays"
        )
    return stats, nulls


def _null_cdf(t: Fraction, m: int, alternative: str) -> Fraction:
    """Upper bound of ``P_H0(p_i <= t)`` for a rank p-value with ``m`` null keys."""
    if alternative == "two-sided":
        return min(Fraction(1), t)
    return Fraction(math.floor(t * (m + 1)), m + 1)


def combined_rank_test(
    secret_stats: Sequence[float] | np.ndarray,
    null_stats: Sequence[Sequence[float] | np.ndarray],
    *,
    alternative: str = "greater",
    ties: str = "conservative",
    rng: np.random.Generator | int | None = None,
) -> CombinedRankTestResult:
    """Exact test that *every* one of ``k`` independent secrets ranks extreme.

    Each secret ``i`` is ranked against its own null keys (:func:`rank_test`, giving ``p_i``);
    the statistic is ``T = max_i p_i`` and the p-value is ``P_H0(T <= t) = prod_i F_i(t)`` with
    ``F_i(t) = floor(t (m_i + 1)) / (m_i + 1)``. With equal ``m`` and ``t = r / (m + 1)`` this is
    ``(r / (m + 1)) ** k``; unequal ``m_i`` are handled by the general product (in exact rational
    arithmetic).

    Null hypothesis: for every ``i`` the secret ``i`` and its null keys are exchangeable and the
    ``k`` groups are independent given the suspect — true when all secrets and null keys are iid
    draws from the key distribution and the suspect does not depend on any secret. Then the
    ``p_i`` are independent and each (super-)uniform on its grid, so the p-value is exact
    (``ties="randomized"``) or conservative.

    Args:
        secret_stats: One statistic per secret.
        null_stats: One array of null statistics per secret (lengths may differ).
        alternative, ties, rng: As in :func:`rank_test`.

    Returns:
        :class:`CombinedRankTestResult`.

    References:
        Tippett, L. H. C. (1931). The Methods of Statistics (max/min of independent p-values);
        Phipson & Smyth (2010), see :func:`rank_test`.
    """
    stats, nulls = _combined_iv(secret_stats, null_stats)
    gen = as_rng(rng) if ties == "randomized" else rng
    per = tuple(
        rank_test(s, n, alternative=alternative, ties=ties, rng=gen)
        for s, n in zip(stats, nulls, strict=True)
    )
    scale = 2 if per[0].alternative == "two-sided" else 1
    t = max(min(Fraction(1), Fraction(scale * r.rank, r.m + 1)) for r in per)
    pvalue = math.prod(_null_cdf(t, r.m, r.alternative) for r in per)
    floor = math.prod(Fraction(min(scale, r.m + 1), r.m + 1) for r in per)
    return CombinedRankTestResult(
        statistic=float(t),
        pvalue=float(pvalue),
        pvalue_floor=float(floor),
        ranks=tuple(r.rank for r in per),
        ms=tuple(r.m for r in per),
        per_secret=per,
        alternative=per[0].alternative,
        ties=per[0].ties,
        method=f"exact max-rank combination of {len(per)} rank tests (ties: {per[0].ties})",
    )
