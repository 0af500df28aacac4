"""The ``targeted_patch`` trigger family: determinism, its own HKDF info, uniform target classes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

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
