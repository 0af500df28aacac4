"""Query-time transforms: deterministic, bounded, shape-preserving, and they do what they say."""

from __future__ import annotations

import pytest
import torch

from protocols.errors import InputError
from verification.backends import ModuleBackend, TransformedBackend
from verification.transforms import (
    DEFAULT_SUITE,
    list_transforms,
    make_transform,
    parse_transform,
)

SUITE = [make_transform(name, **params) for name, params in DEFAULT_SUITE]


def _images(seed: int = 0, n: int = 6) -> torch.Tensor:
    """Smooth random images plus an all-black and an all-white one (the range's edges)."""
    gen = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=gen), size=32,
                                             mode="bilinear", align_corners=False)  # fmt: skip
    return torch.cat([smooth, torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)])


@pytest.mark.parametrize("transform", SUITE, ids=lambda t: t.label)
def test_transforms_are_deterministic_bounded_and_keep_shape(transform):
    x = _images()
    y = transform(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, transform(x.clone()))
    assert torch.equal(y[2:4], transform(x[2:4]))  # per image: batch composition does not matter
    assert not torch.equal(y, x)  # it does change the images


@pytest.mark.parametrize("transform", SUITE, ids=lambda t: t.label)
def test_transforms_are_mild_on_natural_images(transform):
    x = _images(1)[:6]
    assert float((transform(x) - x).abs().mean()) < 0.12


def test_noise_depends_on_seed_and_std_zero_is_identity():
    x = _images()
    a, b = make_transform("noise", std=0.1, seed=1), make_transform("noise", std=0.1, seed=2)
    assert not torch.equal(a(x), b(x))
    assert torch.equal(make_transform("noise", std=0.0)(x), x)
    mid = torch.full((64, 3, 32, 32), 0.5) + torch.arange(64).view(-1, 1, 1, 1) * 1e-3
    assert float((a(mid) - mid).std()) == pytest.approx(0.1, rel=0.05)


def test_blur_resize_and_jpeg_behave_as_named():
    flat = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(make_transform("blur", sigma=2.0)(flat), flat, atol=1e-6)
    assert torch.allclose(make_transform("resize", scale=0.5)(flat), flat, atol=1e-6)
    checker = (torch.arange(32).view(1, -1) + torch.arange(32).view(-1, 1)) % 2
    x = checker.float().expand(1, 3, 32, 32).contiguous()
    assert float(make_transform("blur", sigma=1.0)(x).std()) < 0.1 * float(x.std())
    assert float(make_transform("resize", scale=0.5)(x).std()) < 0.1 * float(x.std())
    smooth = _images(2)[:4]
    high, low = make_transform("jpeg", quality=95), make_transform("jpeg", quality=10)
    assert (high(smooth) - smooth).abs().mean() < (low(smooth) - smooth).abs().mean()
    assert float((high(smooth) - smooth).abs().mean()) < 0.04


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gamma", {}, "unknown transform 'gamma'; choose one of: blur, jpeg, noise, resize"),
        ("jpeg", {"quality": 0}, "quality must lie in"),
        ("jpeg", {"quality": 50.5}, "quality must be an integer"),
        ("blur", {"sigma": -1.0}, "sigma must lie in"),
        ("noise", {"std": float("nan")}, "std must be a number"),
        ("resize", {"scale": 2.0}, "scale must lie in"),
        ("resize", {"factor": 0.5}, "transform 'resize' takes scale=0.5"),
    ],
)
def test_bad_parameters_are_refused_with_the_value(name, params, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make_transform(name, **params)


def test_parse_transform_and_listing():
    t = parse_transform("noise:std=0.1,seed=3")
    assert (t.name, dict(t.params)) == ("noise", {"std": 0.1, "seed": 3})
    assert parse_transform("jpeg").params == {"quality": 75}
    assert set(list_transforms()) == {"blur", "jpeg", "noise", "resize"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_transform("jpeg:50")
    with pytest.raises(InputError, match="transform input must be a float tensor"):
        t(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_transformed_backend_queries_the_transformed_images():
    seen = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x.flatten(1)[:, :10]

    t = make_transform("resize", scale=0.5)
    suspect = TransformedBackend(ModuleBackend(net, digest="sha256:x"), t, name=t.label)
    x = _images()
    suspect.query(x)
    assert torch.equal(seen[-1], t(x)) and suspect.query_count == len(x)
    assert "resize(scale=0.5)" in suspect.description
