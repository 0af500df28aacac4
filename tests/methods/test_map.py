"""MAP's options: every MaskConfig field, the run's seed, unknown names refused before work."""

from __future__ import annotations

import pytest

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from mapguard.methods.map import map_config


def test_map_config_takes_mask_options_and_the_seed() -> None:
    cfg = map_config({"epochs": 2, "exclude": "1.0*"}, 7)
    assert cfg == MaskConfig(epochs=2, exclude=("1.0*",), seed=7)
    assert map_config({"seed": 3}, 7).seed == 3  # an explicit option wins


def test_map_config_refuses_unknown_options() -> None:
    with pytest.raises(ConfigError, match="unknown mask option"):
        map_config({"epoch": 2}, 0)
