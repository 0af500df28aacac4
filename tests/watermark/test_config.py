"""``EmbedConfig``: every bad value named, the dict round trip, options by name."""

from __future__ import annotations

import pytest

from mapguard.watermark._config import EmbedConfig
from protocols.errors import InputError

#: The experimental embedding terms (issues 15 and 18): a bad value each, and a value "on".
TERMS = {
    "awp": ([-0.1, 1.5, float("nan"), "x"], 0.05),
    "bn_robust": ([-1.0, float("nan"), "x", True], 2.5),
}


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


@pytest.mark.parametrize(("name", "bad"), [(n, b) for n, (bads, _) in TERMS.items() for b in bads])
def test_experimental_terms_are_validated(name, bad):
    with pytest.raises(InputError, match=name):
        EmbedConfig(**{name: bad})


@pytest.mark.parametrize("name", list(TERMS))
def test_experimental_terms_are_recorded_only_when_on(name):
    """Off, the option is left out of ``to_dict`` (commitments and caches as before it)."""
    assert name not in EmbedConfig().to_dict()
    on = EmbedConfig().with_options({name: TERMS[name][1]})
    assert on.to_dict()[name] == TERMS[name][1]
    assert EmbedConfig.from_dict(on.to_dict()) == on
