"""The experimental unlearning-thief term (``EmbedConfig.resist_weight``): it runs inside the mask
learner, its simulated thief really changes the weights it judges, and it changes the mask."""

from __future__ import annotations

import numpy as np
import pytest

from mapguard.masking import MaskConfig, TensorSource, learn_mask
from mapguard.masking._adversary import AdversaryConfig
from mapguard.watermark import EmbedConfig
from mapguard.watermark._resist import POOL, SimulatedUnlearn, random_key_pool
from mapguard.watermark._sources import SecretTriggerSource
from verification.triggers import get_trigger_family, random_secret


@pytest.fixture(scope="module")
def parts(mnist_small):
    family = get_trigger_family("targeted_patch")
    params = EmbedConfig().family_params(10)
    rng = np.random.default_rng(3)
    secrets = [family.derive(random_secret(rng), params=params) for _ in range(2)]
    x, y = mnist_small[0].floats()[:256], mnist_small[0].labels[:256]
    targets = [int(t.details["target"]) for t in secrets]
    src = SecretTriggerSource(x, y, secrets, seed=1, targets=targets, name="targets")
    alpha, pattern = random_key_pool(family, params, seed=0)
    return x, y, src, alpha, pattern


def _learn(tiny_model, parts, weight: float):
    x, y, src, alpha, pattern = parts
    term = SimulatedUnlearn(data=TensorSource(x, y, seed=2, name="thief"),
                            config=AdversaryConfig(weight=weight, steps=2, batch_size=32),
                            secrets=src, alpha=alpha, pattern=pattern, seed=4)  # fmt: skip
    cfg = MaskConfig(epochs=1, batch_size=32, max_steps_per_epoch=4, seed=0)
    return learn_mask(tiny_model, keep=TensorSource(x, seed=0), degrade=src, config=cfg,
                      extra_terms=[term], device="cpu", progress=False)  # fmt: skip


def test_the_term_is_learned_against_and_changes_the_mask(tiny_model, parts):
    with_term, without = _learn(tiny_model, parts, 5.0), _learn(tiny_model, parts, 0.0)
    values = [h["resist"] for h in with_term.history]
    assert all(np.isfinite(v) and v > 0 for v in values)
    assert not with_term.mask.equals(without.mask)
    assert parts[3].shape[0] == POOL


def test_resist_weight_is_validated():
    from protocols.errors import InputError

    with pytest.raises(InputError, match="resist_weight"):
        EmbedConfig(resist_weight=float("nan"))
