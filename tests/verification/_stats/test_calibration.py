"""Fake-secret calibration: each null key as a fake secret is 'evidenced' at most alpha of the
time (simulated nulls, targeted statistics, a real model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from verification._errors import VerificationError
from verification._verify.queries import reduce_targeted, target_classes
from verification.stats import fake_secret_calibration
from verification.triggers import get_trigger_family, null_secrets


def betabinom_counts(rng, trials, a, b, size):
    return rng.binomial(trials, rng.beta(a, b, size=size)).astype(float)


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


def _within(fraction: float, alpha: float, n: int) -> bool:
    """``fraction <= alpha`` up to 3 binomial standard errors (one-sided)."""
    return fraction <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / n)


def test_fake_secret_calibration_simulated_targeted_null():
    """Null statistics shaped like real targeted ones (mostly 0, many ties, rare large values):
    each key as a fake secret against the others is 'evidenced' at most alpha of the time."""
    rng = np.random.default_rng(0)
    k, m, n = 3, 2000, 50
    rates = rng.beta(0.3, 20, size=(k, m))  # per-key flip-into-target rates, heavy right tail
    g = rng.binomial(n, rates) / n
    cal = fake_secret_calibration(g, (0.01, 0.001), model=None)
    assert cal.n_trials == m
    for alpha, frac in zip(cal.alphas, cal.exact_fraction):
        assert _within(frac, alpha, m), (alpha, frac)


def test_fake_secret_calibration_on_a_real_model(tiny_model, mnist_small):
    """Real targeted statistics of an unwatermarked model under 3 x 150 random keys."""
    torch.set_num_threads(1)
    fam = get_trigger_family("targeted_patch")
    x = mnist_small[1].floats()[:40]
    y = mnist_small[1].labels[:40]
    k, m = 3, 150
    triggers = [fam.derive(key) for key in null_secrets(b"calibration", k * m)]
    with torch.inference_mode():
        clean = tiny_model(x).argmax(1)
        stamped = torch.cat([t.apply(x) for t in triggers])
        answers = torch.cat([tiny_model(c).argmax(1) for c in stamped.split(1000)])
    answers = answers.reshape(k * m, -1)
    contrib, _ = reduce_targeted(answers, y, clean == y, None, target_classes(triggers))
    g = contrib.mean(dim=1).numpy().reshape(k, m)
    cal = fake_secret_calibration(g, (0.01, 0.001), model=None)
    for alpha, frac in zip(cal.alphas, cal.exact_fraction):
        assert _within(frac, alpha, m), (alpha, frac)
