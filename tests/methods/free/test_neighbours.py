"""Neighbour-domain families: label-preserving shifts, deterministic for a generator, registry."""

from __future__ import annotations

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.methods.free import FeatureStyleShift, create_family, list_families
from mapguard.methods.free._neighbours import FeatureShiftHook


@pytest.fixture(scope="module")
def digits(mnist_small) -> torch.Tensor:
    return mnist_small[1].floats()[:16]


def test_registry_lists_the_generic_families_and_no_downsampling() -> None:
    assert list_families() == ["amplitude", "colour", "random_conv", "texture"]
    with pytest.raises(
        ConfigError, match="unknown neighbour family 'blur'; choose one of: amplitude"
    ):
        create_family("blur")


@pytest.mark.parametrize("name", ["amplitude", "colour", "random_conv", "texture"])
def test_family_shifts_appearance_deterministically(name, digits) -> None:
    family = create_family(name)
    out = family.apply(digits, torch.Generator().manual_seed(0))
    again = family.apply(digits, torch.Generator().manual_seed(0))
    other = family.apply(digits, torch.Generator().manual_seed(1))
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert float((out - digits).abs().mean()) > 0.02  # a real shift, not a no-op


def test_feature_shift_changes_channel_statistics() -> None:
    f = torch.randn(6, 8, 16, 16)
    g = FeatureStyleShift()(f, torch.Generator().manual_seed(0))
    assert g.shape == f.shape
    assert not torch.allclose(g.mean(dim=(2, 3)), f.mean(dim=(2, 3)), atol=1e-2)
    # the spatial pattern inside each channel is kept (an affine map per channel)
    corr = torch.nn.functional.cosine_similarity(
        (f - f.mean(dim=(2, 3), keepdim=True)).flatten(2),
        (g - g.mean(dim=(2, 3), keepdim=True)).flatten(2),
        dim=2,
    )
    assert bool((corr > 0.999).all())


def test_feature_shift_hook_touches_only_armed_rows(tiny_model) -> None:
    conv = next(m for m in tiny_model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = FeatureShiftHook(conv)
    x = torch.rand(8, 3, 32, 32)
    try:
        with torch.no_grad():
            plain = tiny_model(x)
            hook.arm(torch.tensor([5, 7]), torch.Generator().manual_seed(0))
            shifted = tiny_model(x)
            after = tiny_model(x)  # the hook disarms itself after one forward pass
    finally:
        hook.close()
    changed = (shifted - plain).abs().amax(1) > 1e-4
    assert changed.tolist() == [False] * 5 + [True, False, True]
    assert torch.equal(after, plain)
