"""Parametric tail fits, fake-secret calibration and the effect-size interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import optimize, special

from verification._errors import VerificationError
from verification.stats import (
    effect_size,
    fake_secret_calibration,
    parametric_tail_test,
)


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


def test_fake_secret_calibration_on_iid_data():
    """iid null statistics: the exact test never exceeds alpha (beyond noise); a correctly
    specified beta-binomial is roughly calibrated; a normal fit to a skewed null is not."""
    rng = np.random.default_rng(2)
    alphas = (1e-3, 1e-2, 5e-2)
    exact, betabin, normal = [], [], []
    for _ in range(15):
        counts = betabinom_counts(rng, 60, 0.8, 6.0, 99)  # right-skewed, over-dispersed
        res = fake_secret_calibration(counts, alphas, model="betabinom", trials=60)
        exact.append(res.exact_fraction)
        betabin.append(res.parametric_fraction)
        normal.append(fake_secret_calibration(counts, alphas, model="normal").parametric_fraction)
        assert res.n_trials == 99 and len(res.exact_pvalues) == 99
    exact, betabin, normal = (np.mean(v, axis=0) for v in (exact, betabin, normal))
    trials = 15 * 99
    band = [4.5 * np.sqrt(a * (1 - a) / trials) + 1 / trials for a in alphas]
    assert exact[0] == 0.0  # floor 1/99 > 1e-3
    assert all(exact[i] <= alphas[i] + band[i] for i in range(3))
    assert all(betabin[i] <= 2 * alphas[i] + band[i] for i in range(3))
    assert normal[0] > 5 * alphas[0]  # why parametric tails are only supplementary


def test_fake_secret_calibration_combined_matrix():
    rng = np.random.default_rng(3)
    mat = betabinom_counts(rng, 50, 2.0, 8.0, (3, 40))
    res = fake_secret_calibration(mat, (0.05,), model=None)
    assert res.parametric_fraction == (None,) and res.model is None
    assert min(res.exact_pvalues) >= (1 / 40) ** 3
    json.dumps(res.to_dict(), allow_nan=False)
    with pytest.raises(VerificationError, match="m >= 3"):
        fake_secret_calibration(mat[:, :2])
    with pytest.raises(VerificationError, match=r"each in \(0, 1\)"):
        fake_secret_calibration(mat, (0.0,))


def test_effect_size_estimate_and_reproducibility():
    rng = np.random.default_rng(4)
    sec = (rng.random((3, 100)) < 0.7).astype(float)
    nul = (rng.random((3, 20, 100)) < 0.2).astype(float)
    res = effect_size(sec, nul, rng=5, n_resamples=500)
    manual = np.mean(sec.mean(axis=1) - nul.mean(axis=(1, 2)))
    assert res.estimate == pytest.approx(manual)
    assert res.ci_low < res.estimate < res.ci_high
    assert res == effect_size(sec, nul, rng=5, n_resamples=500)
    wider = effect_size(sec, nul, rng=5, n_resamples=500, confidence_level=0.99)
    assert wider.ci_high - wider.ci_low > res.ci_high - res.ci_low
    json.dumps(res.to_dict(), allow_nan=False)


def test_effect_size_interval_covers_the_truth():
    """Percentile bootstrap over images and keys: coverage near the nominal 90%."""
    rng = np.random.default_rng(6)
    k, m, n, hits, reps = 2, 30, 80, 0, 150
    truth = (
        special.expit(1.0 + rng.normal(0, 1, 400_000)).mean()
        - special.expit(rng.normal(-1, 0.5, 400_000) + rng.normal(0, 1, 400_000)).mean()
    )
    for _ in range(reps):
        img_difficulty = rng.normal(0, 1, n)  # shared by all keys, as with real images
        key_strength = rng.normal(-1, 0.5, (k, m))
        p_null = special.expit(key_strength[..., None] + img_difficulty)
        p_sec = special.expit(1.0 + img_difficulty)
        sec = (rng.random((k, n)) < p_sec).astype(float)
        nul = (rng.random((k, m, n)) < p_null).astype(float)
        ci = effect_size(sec, nul, confidence_level=0.9, n_resamples=400, rng=rng)
        hits += ci.ci_low <= truth <= ci.ci_high
    assert 0.8 <= hits / reps <= 0.98


def test_effect_size_validation():
    with pytest.raises(VerificationError, match=r"\[k, n\].*got \[3, 10\] and \[3, 5, 9\]"):
        effect_size(np.zeros((3, 10)), np.zeros((3, 5, 9)))
    with pytest.raises(VerificationError, match="confidence_level must be in"):
        effect_size(np.zeros((1, 5)), np.zeros((1, 5, 5)), confidence_level=95)
    with pytest.raises(VerificationError, match="n_resamples"):
        effect_size(np.zeros((1, 5)), np.zeros((1, 5, 5)), n_resamples=10)
