"""``EmbedConfig.trigger_batch``: fewer negative-key and secret-trigger images per mask step
(issue 14: a cheaper step for large models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapguard.checkpoint import ModelMeta
from mapguard.watermark import EmbedConfig
from mapguard.watermark._recipe import draw_triggers, learn, load_inputs
from protocols.errors import InputError

CPU = torch.device("cpu")


def test_a_fraction_of_the_batch_of_keys_and_triggers_per_step(tiny_model, mnist_small,
                                                                 tiny_config):  # fmt: skip
    """Each step takes the whole batch of clean images and a quarter as many negative-key and
    secret-trigger images (plus the degrade placeholder); the mask still learns."""
    inp = load_inputs(tiny_model, (mnist_small[0].take(320, seed=1), mnist_small[1]),
                      ModelMeta(arch="vgg_tiny"))  # fmt: skip
    cfg = tiny_config(mask=tiny_config().mask.replace(epochs=1))
    params = cfg.family_params(10)
    _, triggers = draw_triggers(cfg, params, np.random.default_rng(3))
    full = learn(inp, triggers, params, cfg, CPU, False)
    quarter = learn(inp, triggers, params, cfg.replace(trigger_batch=0.25), CPU, False)
    steps = 320 // 32
    assert full.images == steps * (32 + 32 + 32 + 1)
    assert quarter.images == steps * (32 + 8 + 8 + 1)
    assert quarter.mask.pruned_fraction > 0
    assert quarter.mask.sha256 != full.mask.sha256


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "half"])
def test_a_bad_fraction_is_refused(bad):
    with pytest.raises(InputError, match="trigger_batch"):
        EmbedConfig().with_options({"trigger_batch": bad})
