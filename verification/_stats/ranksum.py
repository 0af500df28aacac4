"""Exact pooled rank-sum test: the k secrets' ranks among all N keys, summed (issue 15).

The pooled minimum test (:mod:`verification._stats.pooled`) decides on the weakest secret, so one
secret that a theft erased (ranked last) sets its p-value to 1 even when the other k - 1 secrets
are the top keys; the median effect floor tolerates exactly that. The rank sum (Wilcoxon 1945;
Mann & Whitney 1947) uses every secret's rank: a dead secret costs its rank, not the verdict.
Its smallest p-value is the same ``1 / C(N, k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from math import comb

import numpy as np

from verification._stats.pooled import PooledTestResult, pooled_keys
from verification._stats.validation import as_rng

__all__ = ["pooled_rank_sum_test", "rank_sum_counts"]


@lru_cache(maxsize=32)
def rank_sum_counts(n_keys: int, k: int) -> tuple[int, ...]:
    """How many k-subsets of the ranks ``1..n_keys`` have each rank sum, from the smallest.

    Entry ``u`` counts the subsets whose rank sum is ``k (k + 1) / 2 + u`` (``u`` is the
    Mann-Whitney count). They are the coefficients of the Gaussian binomial
    ``[N choose k]_q = prod_{i=1..k} (1 - q^(N-k+i)) / (1 - q^i)``, built one factor at a time
    in integers (every partial product is a polynomial, so each division is exact); they sum to
    ``C(N, k)``.

    Example:
        >>> rank_sum_counts(4, 2)  # {1,2}; {1,3}; {1,4} {2,3}; {2,4}; {3,4}
        (1, 1, 2, 1, 1)
    """
    if not 1 <= k <= n_keys:
        raise ValueError(f"need 1 <= k <= n_keys, got k={k}, n_keys={n_keys}")
    poly = [1]
    for i in range(1, k + 1):
        step = n_keys - k + i
        poly = poly + [0] * step  # times (1 - q^step)
        for d in range(len(poly) - 1, step - 1, -1):
            poly[d] -= poly[d - step]
        for d in range(i, len(poly)):  # divided by (1 - q^i): exact
            poly[d] += poly[d - i]
        while poly[-1] == 0:
            poly.pop()
    return tuple(poly)


def _strict_ranks(g: np.ndarray, coin: np.ndarray, k: int) -> np.ndarray:
    """Rank (1 = largest) of each of the first k keys when ties are ordered by ``coin``
    (larger coin first)."""
    order = np.lexsort((-coin, -g))  # descending g, then descending coin
    rank = np.empty(g.size, dtype=np.int64)
    rank[order] = np.arange(1, g.size + 1)
    return rank[:k]


def pooled_rank_sum_test(
    secret_stats: Sequence[float] | np.ndarray,
    null_stats: Sequence[float] | np.ndarray,
    *,
    ties: str = "conservative",
    rng: np.random.Generator | int | None = None,
) -> PooledTestResult:
    """Exact test that the k secrets rank high among all N keys, by their rank sum.

    Null hypothesis (as for :func:`verification.stats.pooled_min_test`): secret and null keys
    are iid draws from one family and the suspect is independent of which keys are the secrets,
    so the secrets' ranks are a uniformly random k-subset of ``1..N``. The statistic is their
    sum ``W`` (rank 1 = largest ``g``); the p-value ``P(W' <= W)`` is counted exactly over all
    ``C(N, k)`` subsets (:func:`rank_sum_counts`). Ties: ``"randomized"`` orders tied keys by
    independent uniform coins from ``rng`` (from the committed null seed in a verification, so
    a re-run draws the same coins) and the level is exact; ``"conservative"`` gives every secret
    the worst rank of its tie group, which can only raise ``W``, so ``P(p <= u) <= u`` still.

    Args:
        secret_stats: ``g`` of the k secret keys.
        null_stats: ``g`` of the null keys (any shape; flattened).
        ties: ``"conservative"`` or ``"randomized"``.
        rng: Generator or seed of the tie coins (``ties="randomized"`` only).

    Returns:
        :class:`PooledTestResult` with ``statistic`` = ``W`` and ``count`` = ``W`` too (the
        rank sum, ``k (k + 1) / 2`` when the secrets are the top k keys); ``ranks`` are the
        secrets' ranks the sum used.

    Example:
        >>> secrets = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.0]  # the last one erased
        >>> res = pooled_rank_sum_test(secrets, np.linspace(0.1, 0.3, 152))
        >>> res.ranks, f"{res.pvalue:.1e}"  # pooled-min: p = 1
        ((1, 2, 3, 4, 5, 6, 7, 160), '4.8e-05')

    References:
        F. Wilcoxon (1945), Biometrics Bulletin 1(6):80-83; H. B. Mann and D. R. Whitney (1947),
        Ann. Math. Statist. 18(1):50-60 (the null distribution as Gaussian binomial
        coefficients: G. E. Andrews, The Theory of Partitions, 1976, ch. 3).
    """
    sec, g, tie = pooled_keys(secret_stats, null_stats, ties)
    k, n = sec.size, g.size
    if tie == "randomized":
        ranks = _strict_ranks(g, as_rng(rng).random(n), k)
    else:
        ranks = np.array([np.count_nonzero(g >= s) for s in sec], dtype=np.int64)
    w = int(ranks.sum())
    counts = rank_sum_counts(n, k)
    u = w - k * (k + 1) // 2
    total = comb(n, k)
    return PooledTestResult(
        statistic=float(w),
        pvalue=sum(counts[: u + 1]) / total,
        pvalue_floor=1.0 / total,
        count=w,
        n_keys=n,
        k=k,
        ranks=tuple(int(r) for r in ranks),
        alternative="greater",
        ties=tie,
        method=f"exact pooled rank-sum test: {k} secrets among {n} keys (ties: {tie})",
    )
