"""Parametric tail fits (supplementary p-values)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import optimize, special

from verification._errors import VerificationError
from verification.stats import parametric_tail_test


def betabinom_counts(rng, trials, a, b, size):
    return rng.binomial(trials, rng.beta(a, b, size=size)).astype(float)


def test_betabinom_fit_is_the_mle():
    rng = np.random.default_rng(0)
    counts = betabinom_counts(rng, 80, 3.0, 12.0, 99)
    res = parametric_tail_test(55, counts, trials=80)

    def nll(theta):
        a, b = np.exp(theta)
        return -(special.betaln(counts + a, 80 - counts + b) - special.betaln(a, b)).sum()

    ref = optimize.minimize(
        nll,
        np.log([1.0, 1.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    assert np.allclose([res.params["a"], res.params["b"]], np.exp(ref.x), rtol=1e-4)
    assert res.supplementary and 0 < res.pvalue < 1e-3 and res.model == "betabinom"
    json.dumps(res.to_dict(), allow_nan=False)


def test_tail_directions_and_degenerate_fits():
    nulls = np.random.default_rng(1).normal(0.2, 0.05, 99)
    up = parametric_tail_test(0.4, nulls, model="normal").pvalue
    down = parametric_tail_test(0.4, nulls, model="normal", alternative="less").pvalue
    assert up == pytest.approx(1 - down) and up < 1e-3
    flat = parametric_tail_test(3, np.zeros(50), trials=80)
    assert flat.pvalue is None and "beta" in flat.note
    assert parametric_tail_test(0.5, np.full(10, 0.1), model="normal").pvalue is None
    assert parametric_tail_test(0.9, nulls.clip(0, 1), model="beta").pvalue < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "gamma"}, "model must be one of betabinom, beta, normal"),
        ({"trials": None}, "needs trials >= 1"),
        ({"trials": 5}, r"integer counts in \[0, 5\]"),
    ],
)
def test_tail_validation(kwargs, match):
    with pytest.raises(VerificationError, match=match):
        parametric_tail_test(3, [1.0, 2.0, 7.0], **kwargs)
