"""Every variant the fine-tuning-resistance benchmark can name is a valid protection config."""

from __future__ import annotations

import pytest

import mapguard.methods  # noqa: F401  (registers the methods)
from benchmarks._finetune_variants import NFT_DEFAULTS
from benchmarks.finetune_resistance import FULL, QUICK, VARIANTS, variant
from mapguard._errors import ConfigError
from mapguard.methods._registry import get_method


@pytest.mark.parametrize("label", sorted(VARIANTS))
@pytest.mark.parametrize("budget", [QUICK, FULL], ids=["quick", "full"])
def test_every_variant_validates(label, budget):
    method, options, seed = variant(label)
    validate = get_method(method).validate
    assert validate is not None, f"{method} has no option check"
    validate({**budget.protect, **options}, seed)


def test_horizon_variants_differ_from_e2_only_in_horizon():
    base = VARIANTS["nft-weights+src-s6-e2"][1]
    for label, horizon in (("nft-weights+src-s6-e2-h50", 50), ("nft-weights+src-s6-e2-h100", 100)):
        method, options, seed = variant(f"{label}@s1")
        assert (method, seed) == ("nft-weights", 1)
        assert {**base, "horizon": horizon} == options
        cfg = get_method(method).validate({**QUICK.protect, **options}, seed)
        assert cfg.horizon == horizon and cfg.source_thief_every == 2 and cfg.source_weight == 6.0


def test_a_bad_variant_option_is_refused():
    validate = get_method("nft-weights").validate
    with pytest.raises(ConfigError):
        validate({"horizon": -1}, 0)


def test_the_defaults_label_is_nft_weights_defaults_and_old_labels_keep_their_meaning():
    """A cached model is found by its label: ``NFT_DEFAULTS`` must stay today's defaults, and every
    other nft-weights label the options it was measured with (defaults changed in session 14)."""
    from benchmarks._finetune_variants import NFT_DEFAULTS
    from mapguard.methods.nft_weights import NFTWeightsConfig

    validate = get_method("nft-weights").validate
    assert validate(VARIANTS[NFT_DEFAULTS][1], 0) == NFTWeightsConfig()
    assert NFT_DEFAULTS in QUICK.variants
    old = validate(VARIANTS["nft-weights"][1], 0)
    assert (old.source_weight, old.source_thieves, old.horizon, old.inner_steps) == (3.0, (), 20, 3)
    assert old.source_guard is None and old.source_thief_every == 1


def test_every_plotted_model_gets_its_own_colour():
    """Session 17's FULL figure drew a variant in the unprotected model's blue: colours are now
    distinct for any set of models (named ones keep theirs)."""
    from benchmarks.finetune_resistance_source import COLOURS, colours

    models = ["unprotected", "map", NFT_DEFAULTS, f"{NFT_DEFAULTS}@s1", "map-nft", "scratch"]
    palette = colours(models)
    assert len(set(palette.values())) == len(models)
    assert all(palette[m] == COLOURS[m] for m in models if m in COLOURS)
