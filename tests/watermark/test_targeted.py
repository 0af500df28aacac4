"""The ``targeted_patch`` family, its statistic, and the fake-secret calibration of the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from verification._stats_targeted import reduce_targeted, target_classes
from verification.stats import fake_secret_calibration
from verification.triggers import get_trigger_family, null_secrets, random_secret


def test_targeted_patch_is_deterministic_and_extends_patch():
    fam = get_trigger_family("targeted_patch")
    secret = random_secret(np.random.default_rng(3))
    a, b = fam.derive(secret), fam.derive(secret)
    assert a.fingerprint() == b.fingerprint() and dict(a.details) == dict(b.details)
    d = a.details
    assert (
        4 <= d["size"] <= 6 and 0 <= d["row"] <= 32 - d["size"] and 0 <= d["col"] <= 32 - d["size"]
    )
    assert int(a.support.sum()) == d["size"] ** 2
    # its own HKDF info: not the plain patch of the same secret
    plain = get_trigger_family("patch").derive(secret)
    assert plain.fingerprint() != a.fingerprint() or plain.details["row"] != d["row"]


def test_target_class_is_uniform_over_classes():
    fam = get_trigger_family("targeted_patch")
    keys = null_secrets(b"uniformity", 2000)
    targets = [fam.derive(k, params={"num_classes": 7}).details["target"] for k in keys]
    counts = np.bincount(targets, minlength=7)
    assert counts.size == 7
    assert sps.chisquare(counts).pvalue > 1e-3  # provenance: uniform_int over HKDF output


def test_num_classes_is_validated():
    fam = get_trigger_family("targeted_patch")
    with pytest.raises(ValueError, match="num_classes"):
        fam.derive(bytes(32), params={"num_classes": 1})


def test_reduce_targeted_counts_flips_into_the_target_only():
    labels = torch.tensor([0, 1, 2, 3])
    clean_correct = torch.tensor([True, True, True, False])
    # two triggers with targets 2 and 0; answers under each
    answers = torch.tensor([[2, 2, 2, 2], [0, 0, 1, 0]])
    contrib, acc = reduce_targeted(answers, labels, clean_correct, None, torch.tensor([2, 0]))
    # trigger 0: image 0 and 1 flipped to 2 (image 2 is of class 2, image 3 wrong clean)
    assert contrib[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    # trigger 1: image 1 flipped to 0; image 0 is of class 0; image 2 answered 1 (not target)
    assert contrib[1].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert acc.tolist() == [0.25, 0.25]


def test_reduce_targeted_probabilities():
    labels = torch.tensor([0, 1])
    clean = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    answers = torch.tensor([[[0.5, 0.1, 0.4], [0.1, 0.3, 0.6]]])
    contrib, _ = reduce_targeted(
        answers, labels, torch.tensor([True, True]), clean, torch.tensor([2])
    )
    assert contrib[0].tolist() == pytest.approx([0.35, 0.5])


def test_target_classes_refuses_mixing():
    fam_t, fam_p = get_trigger_family("targeted_patch"), get_trigger_family("patch")
    t, p = fam_t.derive(bytes(32)), fam_p.derive(bytes(32))
    assert target_classes([p, p]) is None
    assert target_classes([t]).tolist() == [t.details["target"]]
    with pytest.raises(ValueError, match="mix"):
        target_classes([t, p])


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
