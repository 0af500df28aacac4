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
