"""``EmbedConfig.awp`` (issue 15 item 2, experimental, off): the adversarial weight perturbation
term runs inside the recipe, is learned against and changes the mask; validated, recorded only
when on."""

from __future__ import annotations

import numpy as np
import torch

from mapguard.checkpoint import ModelMeta
from mapguard.watermark._recipe import draw_triggers, learn, load_inputs


def test_the_awp_term_is_learned_against_and_changes_the_mask(tiny_model, mnist_small,
                                                               tiny_config):  # fmt: skip
    train, test = mnist_small
    inp = load_inputs(tiny_model, (train.take(320, seed=1), test), ModelMeta(arch="vgg_tiny"))
    cfg = tiny_config()
    params = cfg.family_params(10)
    _, triggers = draw_triggers(cfg, params, np.random.default_rng(3))
    with_term = learn(inp, triggers, params, cfg.replace(awp=0.05), torch.device("cpu"), False)
    without = learn(inp, triggers, params, cfg, torch.device("cpu"), False)
    values = [h["awp"] for h in with_term.history]
    assert len(values) == cfg.mask.epochs and all(np.isfinite(values))
    assert values[-1] < values[0], values
    assert all("awp" not in h for h in without.history)
    assert not with_term.mask.equals(without.mask)
