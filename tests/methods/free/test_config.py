"""``FreeConfig``: bad SF-MAP / DF-MAP options are refused with the bad value's name."""

from __future__ import annotations

import pytest

from mapguard._errors import ConfigError
from mapguard.methods.free import FreeConfig


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"n_pseudo": 2}, "n_pseudo"),
        ({"held_out": 1.0}, "held_out"),
        ({"stop_kl": 0}, "stop_kl"),
        ({"families": ("downsample",)}, "downsample"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"keep_mixup": 1.5}, "keep_mixup"),
        ({"stop_mixup": "yes"}, "stop_mixup"),
        ({"boundary": -1}, "boundary"),
        ({"boundary_fraction": 1.5}, "boundary_fraction"),
        ({"boundary_keep": -0.1}, "boundary_keep"),
        ({"stop_disagreement": 2.0}, "stop_disagreement"),
        ({"hard_neighbours": 0}, "hard_neighbours"),
    ],
)
def test_bad_free_options(change, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        FreeConfig(**change)
