"""The pair-preference family: byte layout re-derived independently, what the pair difference
means, and the owner's torch shift agreeing with the verifier's numpy statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mapguard.watermark import torch_preference
from verification._errors import TriggerError
from verification.tilt import (
    PREFERENCE_INFO,
    PairPreferenceFamily,
    PreferenceReference,
    lowfreq_features,
    preference_values,
)


def test_key_follows_the_documented_byte_layout(hkdf) -> None:  # noqa: ANN001
    family = PairPreferenceFamily(num_classes=4, regions=2, grid=4, order=2)
    c, d, r = 4, family.dim, 2
    m = c * (c - 1) // 2
    n = r * m + (r - 1) * d
    secret = bytes(range(32))
    stream = hkdf(secret, PREFERENCE_INFO, 8 * n)
    u = [(int.from_bytes(stream[4 * i : 4 * i + 4], "big") + 0.5) / 2**32 for i in range(2 * n)]
    normals = [
        math.sqrt(-2 * math.log(u[2 * j])) * math.cos(2 * math.pi * u[2 * j + 1]) for j in range(n)
    ]
    key = family.derive(secret)
    it = iter(normals)
    for region in range(r):
        for a in range(c):
            for b in range(a + 1, c):
                value = next(it)
                assert key.prefs[region, a, b] == pytest.approx(value, rel=1e-12)
                assert key.prefs[region, b, a] == pytest.approx(-value, rel=1e-12)
        assert np.all(np.diag(key.prefs[region]) == 0)
    splits = np.array(list(it)).reshape(r - 1, d)
    np.testing.assert_allclose(key.splits, splits / np.linalg.norm(splits, axis=1, keepdims=True))
    assert not np.allclose(family.derive(bytes(32)).prefs, key.prefs)


def test_one_region_prefers_the_same_class_everywhere_and_splits_make_it_local() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    feats = lowfreq_features(images, grid=8, order=3)
    pairs = np.tile([[2, 5]], (40, 1))
    secret = bytes(range(32))
    flat = PairPreferenceFamily(num_classes=10, regions=1)
    key = flat.derive(secret)
    ref = PreferenceReference.from_features(key, feats)
    values = preference_values(flat, key, ref, feats, pairs)
    np.testing.assert_allclose(values, key.prefs[0, 2, 5])  # one number for the pair
    np.testing.assert_allclose(
        preference_values(flat, key, ref, feats, pairs[:, ::-1]), -values
    )  # antisymmetric
    local = PairPreferenceFamily(num_classes=10, regions=4)
    key4 = local.derive(secret)
    ref4 = PreferenceReference.from_features(key4, feats)
    values4 = preference_values(local, key4, ref4, feats, pairs)
    assert values4.std() > 0.3 * np.abs(key4.prefs[:, 2, 5]).mean()  # varies with the image


@pytest.mark.parametrize("regions", [1, 3])
def test_owner_shift_moves_a_boundary_gap_by_the_verifiers_preference(regions: int) -> None:
    """At an image where the original is split evenly between ``a`` and ``b``, the owner's
    torch shift changes the gap ``a - b`` by exactly the verifier's ``pref(x; a, b)``."""
    family = PairPreferenceFamily(num_classes=4, regions=regions)
    key = family.derive(bytes(range(32)))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
    feats = lowfreq_features(images, grid=8, order=3)
    ref = PreferenceReference.from_features(key, feats)

    class _Even(nn.Module):  # logits equal for classes 1 and 3, far below for 0 and 2
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([-50.0, 0.0, -50.0, 0.0]).expand(len(x), 4)

    shift = torch_preference(family, key, ref, 32, _Even())
    x = torch.tensor(images, dtype=torch.float32) / 255
    t = shift(x).double().numpy()
    pairs = np.tile([[1, 3]], (30, 1))
    expect = preference_values(family, key, ref, feats, pairs)[0]
    assert np.abs(expect).max() > 0.05  # a shift to see
    np.testing.assert_allclose(t[:, 1] - t[:, 3], expect, atol=1e-5)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(TriggerError, match="regions"):
        PairPreferenceFamily(num_classes=10, regions=0)
    with pytest.raises(TriggerError, match="sharpness"):
        PairPreferenceFamily(num_classes=10, sharpness=0)
    with pytest.raises(TriggerError, match="HKDF"):
        PairPreferenceFamily(num_classes=200)
    with pytest.raises(TriggerError, match="32 bytes"):
        PairPreferenceFamily(num_classes=10).derive(b"short")
