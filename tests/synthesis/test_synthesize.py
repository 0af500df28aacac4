"""Pseudo-source synthesis: determinism, BN-statistics matching, caching, models without BN."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mapguard._errors import ConfigError, DataError, ModelFileError
from mapguard.synthesis import (
    SynthesisConfig,
    bn_loss,
    load_result,
    save_result,
    synthesize,
)
from mapguard.synthesis import _synthesize as synth_module

FAST = SynthesisConfig(steps=40, batch_size=20)


@pytest.fixture(scope="module")
def fast_result(tiny_model):
    return synthesize(tiny_model, n=40, config=FAST, seed=3, cache=False, progress=False)


def test_same_seed_same_images_bit_for_bit(tiny_model, fast_result) -> None:
    again = synthesize(tiny_model, n=40, config=FAST, seed=3, cache=False, progress=False)
    assert torch.equal(again.images, fast_result.images)
    assert torch.equal(again.labels, fast_result.labels)
    other = synthesize(tiny_model, n=40, config=FAST, seed=4, cache=False, progress=False)
    assert not torch.equal(other.images, fast_result.images)


def test_labels_balanced_and_pixels_in_project_layout(fast_result) -> None:
    assert fast_result.images.dtype == torch.uint8
    assert tuple(fast_result.images.shape) == (40, 3, 32, 32)
    assert torch.bincount(fast_result.labels, minlength=10).tolist() == [4] * 10


def test_bn_statistics_matching_improves_over_iterations(tiny_model, fast_result) -> None:
    curve = fast_result.stats.bn_loss_history
    assert fast_result.stats.has_batchnorm and len(curve) == FAST.steps
    assert curve[-1] < 0.5 * curve[0]
    # the final quantised images are much closer to the stored statistics than the start images
    start = torch.sigmoid(torch.full((20, 3, 32, 32), math.log(0.15 / 0.85)))
    assert fast_result.stats.bn_loss < 0.5 * bn_loss(tiny_model, start)
    # and the source model reads them as their intended classes
    assert fast_result.stats.agreement >= 0.8


def test_cache_hit_skips_optimisation(tiny_model, tmp_path, monkeypatch) -> None:
    cfg = SynthesisConfig(steps=3, batch_size=10)
    first = synthesize(tiny_model, n=10, config=cfg, seed=0, cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(synth_module, "invert", boom)
    hit = synthesize(tiny_model, n=10, config=cfg, seed=0, cache=tmp_path, progress=False)
    assert torch.equal(hit.images, first.images)
    assert hit.stats == first.stats
    with pytest.raises(AssertionError):  # a different option is a different key
        synthesize(
            tiny_model,
            n=10,
            config=cfg.replace(tv_weight=2.0),
            seed=0,
            cache=tmp_path,
            progress=False,
        )


def test_save_load_round_trip_and_corrupt_file(tmp_path, fast_result) -> None:
    path = save_result(fast_result, tmp_path / "r.npz")
    back = load_result(path)
    assert torch.equal(back.images, fast_result.images) and back.config == fast_result.config
    assert back.metadata() == fast_result.metadata()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        load_result(tmp_path / "bad.npz")


def test_split_is_stratified_and_disjoint(fast_result) -> None:
    train, held = fast_result.split(0.25, seed=0)
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert len(train) + len(held) == 40
    assert torch.bincount(fast_result.labels[held], minlength=10).tolist() == [1] * 10


def _fold_batchnorm(model: nn.Module) -> nn.Module:
    """The same function without BatchNorm: every Conv->BN pair folded into one biased Conv."""
    model = copy.deepcopy(model)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        for i, (conv, bn) in enumerate(zip(mods, mods[1:])):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                fused = nn.Conv2d(
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel_size,
                    padding=conv.padding,
                    bias=True,
                )
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * scale[:, None, None, None])
                    fused.bias.copy_(bn.bias - bn.running_mean * scale)
                seq[i], seq[i + 1] = fused, nn.Identity()
    return model.eval()


def test_model_without_batchnorm_relies_on_cross_entropy_and_priors(
    tiny_model, mnist_small
) -> None:
    model = _fold_batchnorm(tiny_model)
    x = mnist_small[1].floats()[:64]
    with torch.no_grad():
        assert torch.allclose(model(x), tiny_model(x), atol=1e-4)  # same function, no BN left
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    cfg = SynthesisConfig(steps=40, batch_size=20, diversity_weight=0.1)
    result = synthesize(model, n=20, config=cfg, seed=0, cache=False, progress=False)
    assert not result.stats.has_batchnorm
    assert result.stats.bn_loss_history == () and math.isnan(result.stats.bn_loss)
    assert result.stats.agreement >= 0.8  # the cross-entropy and the priors still steer the images
    assert result.stats.diversity > 0.05  # images of a class differ


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"resolution": 12}, "resolution"),
        ({"init_level": 1.5}, "init_level"),
        ({"tv_weight": float("nan")}, "tv_weight"),
    ],
)
def test_bad_options_name_the_value(change, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        SynthesisConfig(**change)
    with pytest.raises(ConfigError, match="unknown synthesis option"):
        SynthesisConfig.from_dict({"stepz": 3})


def test_bad_n_and_bad_model(tiny_model) -> None:
    with pytest.raises(ConfigError, match="got 0"):
        synthesize(tiny_model, n=0, cache=False, progress=False)
    with pytest.raises(ModelFileError, match="3x32x32"):
        synthesize(
            nn.Linear(5, 3), n=2, config=SynthesisConfig(steps=1), cache=False, progress=False
        )


def test_images_at_the_models_side_from_the_same_grid(model_64) -> None:
    from mapguard.synthesis._invert import render

    result = synthesize(model_64, n=10, config=SynthesisConfig(steps=2, batch_size=10), seed=0,
                        cache=False, progress=False, size=64)  # fmt: skip
    assert tuple(result.images.shape) == (10, 3, 64, 64)
    z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # at 32 the grid is upscaled exactly as by the 32-only code (commit 4bdc8d8)
    old = torch.sigmoid(nn.functional.interpolate(z, size=(32, 32), mode="bilinear",
                                                  align_corners=False))  # fmt: skip
    assert torch.equal(render(z), old) and render(z, 64).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="resolution 32 exceeds the model's image side 16"):
        synthesize(model_64, n=2, config=SynthesisConfig(resolution=32), cache=False, size=16,
                   progress=False)  # fmt: skip


def test_cache_keys_of_32_pixel_syntheses_are_unchanged() -> None:
    import hashlib
    import json

    from mapguard.synthesis._cache import cache_key

    fields = {"weights_sha256": "ab", "config": {"steps": 1}, "n": 4, "seed": 0}
    old = hashlib.sha256(json.dumps({**fields, "v": 1}, sort_keys=True,
                                    separators=(",", ":")).encode()).hexdigest()  # fmt: skip
    assert cache_key(**fields) == cache_key(**fields, size=32) == old
    assert cache_key(**fields, size=64) != old
