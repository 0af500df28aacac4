"""Exactness of the rank tests: simulate H0 (secret exchangeable with the nulls) and check that
P(p <= t) equals t at every attainable t (randomized ties) or stays below it (conservative)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from verification._errors import VerificationError
from verification.stats import combined_rank_test, rank_test

REPS = 20_000


def binomial_band(p: float, n: int, z: float = 4.5) -> float:
    """Half-width of a z-sigma band for a fraction of n Bernoulli(p) draws."""
    return z * np.sqrt(p * (1 - p) / n) + 1.0 / n


def simulate(draw, m: int, reps: int, **kw) -> np.ndarray:
    """p-values of the rank test when secret and nulls are iid from ``draw``."""
    rng = np.random.default_rng(12345)
    values = draw(rng, (reps, m + 1))
    return np.array([rank_test(v[0], v[1:], rng=rng, **kw).pvalue for v in values])


def test_basic_values():
    nulls = np.arange(99) / 100
    assert rank_test(2.0, nulls).pvalue == 0.01
    assert rank_test(2.0, nulls).rank == 1 and rank_test(2.0, nulls).pvalue_floor == 0.01
    assert rank_test(-1.0, nulls).pvalue == 1.0
    assert rank_test(-1.0, nulls, alternative="less").pvalue == 0.01
    assert rank_test(-1.0, nulls, alternative="two-sided").pvalue == 0.02
    assert rank_test(0.5, nulls).rank == 1 + 49  # 0.50 .. 0.98 are >= 0.5
    assert rank_test(1.0, []).pvalue == 1.0  # no nulls: no evidence possible


def test_tie_handling():
    nulls = np.array([0.2] * 9)
    assert rank_test(0.2, nulls).pvalue == 1.0  # conservative: ties count against the owner
    draws = [rank_test(0.2, nulls, ties="randomized", rng=s).rank for s in range(2000)]
    assert set(draws) == set(range(1, 11))  # uniform over the tied block
    assert abs(np.mean(draws) - 5.5) < 0.3
    assert rank_test(0.2, nulls, ties="randomized", rng=7) == rank_test(
        0.2, nulls, ties="randomized", rng=7
    )


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_continuous_null_is_exactly_uniform(alternative):
    m = 19
    p = simulate(lambda r, s: r.normal(size=s), m, REPS, alternative=alternative)
    for r in range(1, m + 2):
        t = r / (m + 1)
        assert abs(np.mean(p <= t + 1e-12) - t) < binomial_band(t, REPS)


def test_two_sided_is_valid():
    m = 19
    p = simulate(lambda r, s: r.normal(size=s), m, REPS, alternative="two-sided")
    for t in (0.1, 0.2, 0.5):
        assert np.mean(p <= t + 1e-12) <= t + binomial_band(t, REPS)


def test_discrete_ties_randomized_exact_conservative_valid():
    m = 19

    def draw(r, s):
        return r.binomial(10, 0.3, size=s)  # heavy ties

    p_rand = simulate(draw, m, REPS, ties="randomized")
    p_cons = simulate(draw, m, REPS, ties="conservative")
    for r in range(1, m + 2):
        t = r / (m + 1)
        assert abs(np.mean(p_rand <= t + 1e-12) - t) < binomial_band(t, REPS)
        assert np.mean(p_cons <= t + 1e-12) <= t + binomial_band(t, REPS)
    # conservative is strictly conservative with this many ties
    assert np.mean(p_cons <= 0.25) < 0.25 - 3 * binomial_band(0.25, REPS) / 4.5


def simulate_combined(ms, reps, draw, **kw):
    rng = np.random.default_rng(777)
    out = []
    for _ in range(reps):
        groups = [draw(rng, m + 1) for m in ms]
        out.append(
            combined_rank_test([g[0] for g in groups], [g[1:] for g in groups], rng=rng, **kw)
        )
    return out


def test_combined_floor_and_formula():
    nulls = [np.arange(99) / 200] * 3  # 0, 0.005, ..., 0.49
    res = combined_rank_test([0.9, 0.8, 0.7], nulls)
    assert res.ranks == (1, 1, 1) and res.pvalue == pytest.approx(1e-6, rel=1e-12)
    assert res.pvalue_floor == pytest.approx(1e-6, rel=1e-12)
    # ranks 1, 3, 2 -> statistic 3/100, p = (3/100)**3
    res = combined_rank_test([0.9, 0.4825, 0.487], nulls)
    assert res.ranks == (1, 3, 2) and res.statistic == 0.03
    assert res.pvalue == pytest.approx(0.03**3)
    assert res.k == 3 and len(res.per_secret) == 3
    json.dumps(res.to_dict(), allow_nan=False)


def test_combined_unequal_m_general_formula():
    # m = (4, 9): ranks (1, 3) -> t = max(1/5, 3/10) = 3/10;
    # p = floor(3/10 * 5) / 5 * floor(3/10 * 10) / 10 = 1/5 * 3/10
    res = combined_rank_test([10, 0.65], [np.arange(4) / 10, np.arange(9) / 10])
    assert res.ranks == (1, 3)
    assert res.pvalue == pytest.approx(float(Fraction(1, 5) * Fraction(3, 10)))
    assert res.pvalue_floor == pytest.approx(1 / 50)


@pytest.mark.parametrize("ms", [(9, 9, 9), (4, 9, 19)])
def test_combined_is_exact_under_h0(ms):
    reps = 8000
    res = simulate_combined(ms, reps, lambda r, n: r.normal(size=n), ties="randomized")
    p = np.array([r.pvalue for r in res])
    attainable = np.unique(p)
    assert attainable.size >= 10
    for t in attainable:
        assert abs(np.mean(p <= t * (1 + 1e-9)) - t) < binomial_band(t, reps)


def test_combined_conservative_with_ties_is_valid():
    reps = 6000
    res = simulate_combined((9, 9, 9), reps, lambda r, n: r.binomial(6, 0.2, size=n))
    p = np.array([r.pvalue for r in res])
    for t in (0.001, 0.008, 0.027, 0.064, 0.125, 0.216):
        assert np.mean(p <= t * (1 + 1e-9)) <= t + binomial_band(t, reps)


def test_combined_needs_every_secret():
    nulls = [np.arange(99) / 200] * 3
    # two secrets perfect, one unremarkable: not evidence
    res = combined_rank_test([0.9, 0.9, 0.2], nulls)
    assert res.pvalue > 0.2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rank_test(float("nan"), [1.0]), "secret_stat must be finite"),
        (lambda: rank_test(0.1, [1.0, float("nan")]), "index 1 is nan"),
        (lambda: rank_test(0.1, [[1.0]]), "1-D array"),
        (lambda: rank_test(0.1, [1.0], alternative="bigger"), "alternative must be one of"),
        (lambda: rank_test(0.1, [1.0], ties="mid"), "ties must be one of"),
        (lambda: combined_rank_test([0.1, 0.2], [[1.0]]), "2 secrets, 1 arrays"),
        (lambda: rank_test(0.1, [1.0], ties="randomized", rng="x"), "rng must be"),
    ],
)
def test_input_validation(call, match):
    with pytest.raises(VerificationError, match=match):
        call()
