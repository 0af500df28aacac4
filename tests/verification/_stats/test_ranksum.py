"""The pooled rank-sum test: its exact null distribution against enumeration, its level under
heavy ties (randomized: exact; conservative: valid), and the case it exists for — one erased
secret, which the pooled minimum test cannot survive."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from verification._errors import VerificationError
from verification._stats.ranksum import rank_sum_counts
from verification.stats import pooled_min_test, pooled_rank_sum_test


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 2), (7, 3), (10, 4), (9, 9), (12, 1), (11, 5)])
def test_counts_are_the_enumerated_rank_sums(n, k):
    counts = [0] * (k * (n - k) + 1)
    for subset in itertools.combinations(range(1, n + 1), k):
        counts[sum(subset) - k * (k + 1) // 2] += 1
    assert rank_sum_counts(n, k) == tuple(counts)
    assert sum(counts) == comb(n, k) and counts == counts[::-1]  # symmetric about the middle


def test_counts_of_a_large_analysis_are_exact_integers():
    counts = rank_sum_counts(1024, 16)  # k = 16, M = 63: computed in integers, not floats
    assert sum(counts) == comb(1024, 16) and counts[0] == 1 == counts[-1]
    assert counts[1] == 1 and counts[2] == 2  # {1..15, 17}; {1..15, 18} and {1..14, 16, 17}
    with pytest.raises(ValueError, match="need 1 <= k <= n_keys"):
        rank_sum_counts(5, 6)


def _enumerated_pvalue(secret_ranks: list[int], n: int) -> float:
    w = sum(secret_ranks)
    k = len(secret_ranks)
    hits = sum(sum(s) <= w for s in itertools.combinations(range(1, n + 1), k))
    return hits / comb(n, k)


def test_pvalue_is_the_enumerated_tail_without_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        g = rng.permutation(14).astype(float)  # distinct statistics
        res = pooled_rank_sum_test(g[:4], g[4:])
        ranks = [int(np.count_nonzero(g >= s)) for s in g[:4]]
        assert res.ranks == tuple(ranks) and res.count == sum(ranks)
        assert res.pvalue == pytest.approx(_enumerated_pvalue(ranks, 14), rel=1e-12)
        # no ties: the randomized coins change nothing
        assert pooled_rank_sum_test(g[:4], g[4:], ties="randomized", rng=rng).pvalue == res.pvalue


def test_top_secrets_reach_the_floor_and_bottom_secrets_get_one():
    nulls = np.linspace(0.1, 0.3, 56)
    top = pooled_rank_sum_test([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35], nulls)
    assert top.ranks == tuple(range(1, 9)) and top.pvalue == top.pvalue_floor == 1 / comb(64, 8)
    assert top.pvalue_floor == pooled_min_test([0.9] * 8, nulls).pvalue_floor
    assert pooled_rank_sum_test([0.0] * 8, nulls).pvalue == 1.0


def test_one_erased_secret_keeps_the_rank_sum_and_loses_the_minimum():
    """Seven secrets at the top, the eighth ranked last (a theft erased it): the pooled minimum
    test says p = 1, the rank sum still rejects at 1e-3 (k = 8, M = 7: the default analysis)."""
    secrets = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, -0.5]
    nulls = np.linspace(-0.2, 0.2, 56)
    assert pooled_min_test(secrets, nulls).pvalue == 1.0
    res = pooled_rank_sum_test(secrets, nulls)
    assert res.ranks == (1, 2, 3, 4, 5, 6, 7, 64)
    assert res.pvalue == pytest.approx(_enumerated_tail(92, 64, 8)) and res.pvalue < 1e-3


def _enumerated_tail(w: int, n: int, k: int) -> float:
    counts = rank_sum_counts(n, k)
    return sum(counts[: w - k * (k + 1) // 2 + 1]) / comb(n, k)


@pytest.mark.parametrize("levels", [2, 5, 40])
def test_level_under_ties_randomized_exact_conservative_valid(levels):
    """H0 with labels-like statistics (few distinct values, many ties): the secrets are a random
    k-subset of iid keys. Randomized ties: P(p <= u) within sampling error of u; conservative:
    never above it (4,000 draws, N = 40, k = 4)."""
    rng = np.random.default_rng(levels)
    randomized, conservative = [], []
    for _ in range(4000):
        g = rng.integers(0, levels, 40) / levels
        randomized.append(pooled_rank_sum_test(g[:4], g[4:], ties="randomized", rng=rng).pvalue)
        conservative.append(pooled_rank_sum_test(g[:4], g[4:]).pvalue)
    randomized, conservative = np.array(randomized), np.array(conservative)
    for u in (0.01, 0.05, 0.2):
        se = np.sqrt(u * (1 - u) / 4000)
        assert abs(np.mean(randomized <= u) - u) <= 4 * se, (u, np.mean(randomized <= u))
        assert np.mean(conservative <= u) <= u + 4 * se
    assert np.all(conservative >= randomized)  # the worst rank of a tie group only raises p


def test_randomized_ties_repeat_with_the_same_seed():
    g = np.array([0.5, 0.5, 0.25, 0.5, 0.5, 0.25, 0.0, 0.5, 0.0, 0.25])
    a = pooled_rank_sum_test(g[:3], g[3:], ties="randomized", rng=7)
    b = pooled_rank_sum_test(g[:3], g[3:], ties="randomized", rng=7)
    assert a == b and sorted(a.ranks) != sorted(pooled_rank_sum_test(g[:3], g[3:]).ranks)
    assert "rank-sum" in a.method and a.ties == "randomized"


def test_bad_input_is_refused():
    with pytest.raises(VerificationError, match="null_stats must be a 1-D array"):
        pooled_rank_sum_test([0.1], [])
    with pytest.raises(VerificationError, match="secret_stats must be finite"):
        pooled_rank_sum_test([np.nan], [0.1, 0.2])
    with pytest.raises(VerificationError, match="ties must be one of"):
        pooled_rank_sum_test([0.1], [0.2], ties="average")


def test_every_committable_test_has_its_function():
    """A committed test name the verifier did not map would silently fall back to the per-secret
    max-rank test: the names of ``protocols.analysis`` and the functions of ``verification.stats``
    must agree."""
    from protocols.analysis import POOLED_TESTS as NAMES
    from protocols.analysis import TESTS
    from verification.stats import POOLED_TESTS

    assert set(POOLED_TESTS) == set(NAMES) and set(TESTS) - set(NAMES) == {"exact-max-rank"}
    assert POOLED_TESTS["pooled-rank-sum"] is pooled_rank_sum_test
