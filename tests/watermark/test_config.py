"""``EmbedConfig``: every bad value named, the dict round trip, options by name."""

from __future__ import annotations

import pytest

from mapguard.watermark._config import EmbedConfig


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="negative_teacher"):
        EmbedConfig(negative_teacher="teacher")
    with pytest.raises(ValueError, match="n_secrets"):
        EmbedConfig(n_secrets=0)
    with pytest.raises(ValueError, match="margin"):
        EmbedConfig(family="patch", margin=2)
    cfg = EmbedConfig().replace(epochs=2)
    assert cfg.mask.epochs == 2 and EmbedConfig.from_dict(cfg.to_dict()) == cfg


def test_with_options_sets_fields_and_mask_fields():
    cfg = EmbedConfig().with_options({"target_weight": 2.0, "mask.weight_noise": 0.05})
    assert cfg.target_weight == 2.0 and cfg.mask.weight_noise == 0.05
    assert cfg.mask.lr == EmbedConfig().mask.lr  # the other mask options stay
    with pytest.raises(ValueError, match="unknown mask option"):
        EmbedConfig().with_options({"mask.nope": 1})


def test_the_mask_budget_is_in_images_seen_and_explicit_epochs_turn_it_off():
    cfg = EmbedConfig()
    assert cfg.mask_images == 64_000
    assert cfg.for_data(4_000).mask.epochs == 16  # the measured MNIST recipe
    assert cfg.for_data(50_000).mask.epochs == 2
    assert cfg.for_data(200_000).mask.epochs == 1
    assert cfg.for_data(1_000).mask.epochs == 64
    assert cfg.for_data(4_000).mask_images == 64_000  # kept for the record
    for explicit in (cfg.replace(epochs=3), cfg.with_options({"mask.epochs": 3})):
        assert explicit.mask_images is None and explicit.for_data(50_000).mask.epochs == 3
    both = cfg.with_options({"mask.epochs": 3, "mask_images": 9_000})
    assert both.for_data(3_000).mask.epochs == 3
    with pytest.raises(ValueError, match="mask_images"):
        EmbedConfig(mask_images=0)
