"""Restyled target images (SF-MAP's ``restyle``): target digits moved towards the model's
BatchNorm statistics keep their class and come closer to those statistics; SF-MAP keeps them next
to the pseudo-source; DF-MAP, which has no target, refuses the option."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from mapguard.methods.free import FreeConfig, data_free_mask, source_free_mask
from mapguard.synthesis import SynthesisConfig, bn_loss, restyle

SMALL = FreeConfig(
    n_pseudo=40, synthesis=SynthesisConfig(steps=20, batch_size=20), steps_per_epoch=3,
    stop_kl=100.0, degrade_goal=0.0, patience=100, restyle_steps=40,
)  # fmt: skip


def test_restyled_targets_move_towards_the_bn_statistics(tiny_model, mnist_small, mnistm) -> None:
    """An MNIST model's BatchNorm statistics are far from MNIST-M's coloured backgrounds: the
    restyled images are nearer (measured: the distance falls by more than half), and the model
    still reads them as their labels at least as well as the originals."""
    x, y = mnistm[0].floats()[:30], mnistm[0].labels[:30]
    cfg = SynthesisConfig(batch_size=30)
    images, seconds = restyle(tiny_model, x, y, config=cfg, steps=40, seed=0,
                              device=torch.device("cpu"))  # fmt: skip
    assert images.dtype == torch.uint8 and images.shape == x.shape and seconds > 0
    styled = images.float() / 255.0
    assert bn_loss(tiny_model, styled, batch_size=30) < 0.5 * bn_loss(tiny_model, x, batch_size=30)
    with torch.no_grad():
        before = (tiny_model(x).argmax(1) == y).float().mean()
        after = (tiny_model(styled).argmax(1) == y).float().mean()
    assert after >= before, (before, after)
    few, _ = restyle(tiny_model, x[:10], y[:10], config=cfg, steps=5, seed=0,
                     device=torch.device("cpu"))  # fmt: skip
    again, _ = restyle(tiny_model, x[:10], y[:10], config=cfg, steps=5, seed=0,
                       device=torch.device("cpu"))  # fmt: skip
    assert torch.equal(few, again)  # seeded: the same images


def test_sf_map_keeps_the_restyled_images(tiny_model, mnistm) -> None:
    out = source_free_mask(
        tiny_model, target=mnistm[0], mask_config=MaskConfig(epochs=2, batch_size=32),
        config=dataclasses.replace(SMALL, restyle=24), cache=False, progress=False,
    )  # fmt: skip
    assert out.restyled == 24 and out.restyle_seconds > 0
    assert out.summary()["restyled"]["n"] == 24
    drop = out.restyled_drop  # 12 held-out probe images restyled: the mask's loss on them
    assert drop["n"] == 12 and drop["estimate"] == drop["before"] - drop["after"]
    assert 0.0 <= drop["after"] <= 1.0 and drop["before"] >= 0.5, drop
    assert drop["low"] <= drop["estimate"] <= drop["high"] and sum(drop["table"]) == 12


def test_restyle_is_an_sf_map_option(tiny_model) -> None:
    with pytest.raises(ConfigError, match="SF-MAP option"):
        data_free_mask(tiny_model, config=dataclasses.replace(SMALL, restyle=8), cache=False,
                       progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="restyle"):
        FreeConfig(restyle=-1)
