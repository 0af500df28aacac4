"""The cosine-tilt family: byte layout re-derived independently, features relative to the side."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from verification._errors import TriggerError
from verification.tilt import TILT_INFO, CosineTiltFamily, lowfreq_features


def test_key_follows_the_documented_byte_layout(hkdf) -> None:  # noqa: ANN001
    family = CosineTiltFamily(num_classes=4, grid=4, order=2)
    d, c = family.dim, 4
    secret = bytes(range(32))
    stream = hkdf(secret, TILT_INFO, 4 * (2 * d * c + c + 1))
    u = [
        (int.from_bytes(stream[4 * i : 4 * i + 4], "big") + 0.5) / 2**32
        for i in range(2 * d * c + c + 1)
    ]
    normals = [
        math.sqrt(-2 * math.log(u[2 * j])) * math.cos(2 * math.pi * u[2 * j + 1])
        for j in range(d * c)
    ]
    dirs = np.array(normals).reshape(d, c)
    dirs /= np.linalg.norm(dirs, axis=0)
    key = family.derive(secret)
    np.testing.assert_allclose(key.directions, dirs, rtol=1e-12)
    np.testing.assert_allclose(key.phases, [2 * math.pi * x for x in u[2 * d * c : 2 * d * c + c]])
    assert key.omega == pytest.approx(0.5 + 0.5 * u[-1])
    other = family.derive(bytes(32))
    assert not np.allclose(other.directions, key.directions)


@pytest.mark.parametrize("side", [32, 30, 64])
def test_features_are_torch_adaptive_pooling_then_dct(side: int) -> None:
    x = np.random.default_rng(side).random((3, 3, side, side))
    feats = lowfreq_features(x, grid=8, order=3)
    pooled = F.adaptive_avg_pool2d(torch.tensor(x), 8).numpy()
    i = np.arange(8)
    dct = (
        np.cos(math.pi * (2 * i[None] + 1) * i[:, None] / 16)
        * np.where(i == 0, 1 / 8, 2 / 8)[:, None] ** 0.5
    )
    coef = np.einsum("us,ncst,vt->ncuv", dct, pooled, dct)
    family = CosineTiltFamily(num_classes=10)
    expect = np.stack([coef[:, :, u, v] for u, v in family.coefficients], axis=2).reshape(3, -1)
    np.testing.assert_allclose(feats, expect, atol=1e-12)


def test_features_do_not_depend_on_resolution() -> None:
    """The same picture at 32 and 64 pixels (each pixel doubled) has the same features."""
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    big = x.repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_allclose(
        lowfreq_features(x, grid=8, order=3), lowfreq_features(big, grid=8, order=3), atol=1e-12
    )


def test_bad_parameters_and_inputs_are_refused() -> None:
    with pytest.raises(TriggerError, match="num_classes"):
        CosineTiltFamily(num_classes=1)
    with pytest.raises(TriggerError, match="omega"):
        CosineTiltFamily(num_classes=10, omega_min=3.0, omega_max=2.0)
    with pytest.raises(TriggerError, match="order"):
        CosineTiltFamily(num_classes=10, grid=2, order=3)
    with pytest.raises(TriggerError, match=r"\[n, 3, S, S\]"):
        lowfreq_features(np.zeros((2, 1, 32, 32)), grid=8, order=3)
    with pytest.raises(TriggerError, match="32 bytes"):
        CosineTiltFamily(num_classes=10).derive(b"short")


def test_whitened_key_projects_standardised_features() -> None:
    natural = np.random.default_rng(1).normal(size=(50, 27)) * np.linspace(0.1, 5.0, 27)
    plain = CosineTiltFamily(num_classes=10)
    white = CosineTiltFamily(num_classes=10, whiten=True)
    secret = bytes(range(32))
    key = white.derive(secret, natural=natural)
    np.testing.assert_allclose(
        key.directions, plain.derive(secret).directions / natural.std(axis=0)[:, None]
    )
    standardised = (natural - natural.mean(0)) / natural.std(0)
    proj = natural @ key.directions
    np.testing.assert_allclose(
        proj - proj.mean(0), standardised @ plain.derive(secret).directions, atol=1e-9
    )
    with pytest.raises(TriggerError, match="natural"):
        white.derive(secret)
