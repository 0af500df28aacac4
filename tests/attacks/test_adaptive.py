"""``unlearn-triggers``, the attacker who knows the trigger family but not the key: it removes
more of a family backdoor than plain fine-tuning with the same data, steps and seed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mapguard.attacks import AttackConfig, attack
from mapguard.attacks._adaptive import POOL
from mapguard.training import accuracy
from mapguard.watermark import EmbedConfig
from verification.triggers import get_trigger_family, random_secret


@pytest.fixture(scope="module")
def backdoored(tiny_model, mnist_small):
    """The tiny model taught that three keys of the default family send digits to their targets
    (a stand-in for a watermark; the keys are not in the attacker's pool, which is seeded)."""
    family = get_trigger_family(EmbedConfig().family)
    params = EmbedConfig().family_params(10)
    rng = np.random.default_rng(2024)
    keys = [family.derive(random_secret(rng), params=params) for _ in range(3)]
    model, (train, _) = copy.deepcopy(tiny_model), mnist_small
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen, x_all = torch.Generator().manual_seed(0), train.floats()
    model.train()
    for _ in range(2):
        for n, idx in enumerate(torch.randperm(len(x_all), generator=gen).split(32)):
            key, half = keys[n % 3], len(idx) // 2
            x = torch.cat([key.apply(x_all[idx[:half]]), x_all[idx[half:]]])
            y = torch.cat([torch.full((half,), key.details["target"]), train.labels[idx[half:]]])
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval(), keys


def _key_accuracy(model, keys, test) -> float:
    with torch.no_grad():
        hits = [
            (model(k.apply(test.floats())).argmax(1) == test.labels).float().mean() for k in keys
        ]
    return float(torch.stack(hits).mean())


def test_unlearning_the_family_removes_more_than_fine_tuning(backdoored, mnist_small, tiny_meta):
    model, keys = backdoored
    train, test = mnist_small
    before = _key_accuracy(model, keys, test)
    cfg = AttackConfig(n_images=512, epochs=3, lr=0.01)
    ftal, _ = attack(model, "ftal", data=train, config=cfg, meta=tiny_meta, seed=0)
    unlearned, info = attack(model, "unlearn-triggers", data=train, config=cfg, meta=tiny_meta,
                             seed=0)  # fmt: skip
    assert before < 0.5  # the backdoor works before the attack
    assert _key_accuracy(unlearned, keys, test) > _key_accuracy(ftal, keys, test) + 0.05
    assert accuracy(unlearned, test) > accuracy(model, test) - 0.05
    assert (
        info.details["random_keys"] == POOL and info.details["trigger_family"] == "targeted_patch"
    )


def test_unlearn_triggers_needs_data(tiny_model):
    from protocols.errors import InputError

    with pytest.raises(InputError, match="attack 'unlearn-triggers' needs --data"):
        attack(tiny_model, "unlearn-triggers")
