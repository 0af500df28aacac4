"""``extend_epochs``: more epochs past the mask budget only while the target still falls."""

from __future__ import annotations

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.checkpoint import weights_digest
from mapguard.masking import Mask, MaskConfig, MaskLayer, maskable_weights
from mapguard.methods.free import FreeConfig, HeldOutKLStop, source_free_mask
from mapguard.synthesis import SynthesisConfig


class _Info:
    def __init__(self, epoch: int, mask) -> None:
        self.epoch, self._mask = epoch, mask

    def current_mask(self):
        return self._mask


class _Probe:  # the target probe's accuracies, in order (the rule under test is real)
    def __init__(self, values) -> None:
        self.values = list(values)

    def __call__(self, mask) -> float:
        return self.values.pop(0)


def _stop(model, images, probe, *, budget, patience=1) -> HeldOutKLStop:
    return HeldOutKLStop(
        model, images, threshold=0.15, patience=patience, probe=probe, goal=0.2, budget=budget
    )


def test_extension_goes_on_only_while_the_probe_falls(tiny_model, mnist_small) -> None:
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], _Probe([0.6, 0.4, 0.3, 0.3]), budget=2)
    assert stop(_Info(1, None)) is False  # inside the budget
    assert stop(_Info(2, None)) is False  # end of budget, 40 % -> fell from 60 %: extend
    assert stop(_Info(3, None)) is False  # 30 %, still falling
    assert stop(_Info(4, None)) is True  # 30 % again: no progress, stop
    assert stop.selection()[1:] == (4, True) and not stop.reached_goal


def test_without_a_budget_the_rule_is_the_old_one(tiny_model, mnist_small) -> None:
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], _Probe([0.6, 0.6, 0.6]), budget=None)
    assert [stop(_Info(e, None)) for e in (1, 2, 3)] == [False, False, False]


def _all_pruned(model) -> Mask:
    params = dict(model.named_parameters())
    layers = tuple(
        MaskLayer(name=n, weight_shape=tuple(p.shape), bits=torch.zeros(p.shape, dtype=torch.bool))
        for n, p in params.items()
        if n in maskable_weights(model)
    )
    return Mask(
        granularity="weight", layers=layers, weights_sha256=weights_digest(model.state_dict())
    )


def test_a_rejected_epoch_past_the_budget_ends_learning(tiny_model, mnist_small) -> None:
    zeros = _all_pruned(tiny_model)
    probe = _Probe([0.6, 0.4, 0.1])
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], probe, budget=2, patience=3)
    assert stop(_Info(1, None)) is False
    assert stop(_Info(2, None)) is False
    assert stop(_Info(3, zeros)) is True  # KL far above 0.15: patience 3 does not extend it
    assert stop.selection()[1:] == (2, True)


def test_negative_extension_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="extend_epochs"):
        FreeConfig(extend_epochs=-1)


TINY = dict(n_pseudo=60, synthesis=SynthesisConfig(steps=60, batch_size=30), steps_per_epoch=4)


def _run(model, target, **options):
    return source_free_mask(
        model,
        target=target,
        mask_config=MaskConfig(epochs=3, batch_size=32),
        config=FreeConfig(**TINY, **options),
        cache=False,
        progress=False,
    )


def test_extension_leaves_the_budget_epochs_unchanged(tiny_model, mnistm) -> None:
    # an unreachable goal: the budget ends without it, so the extension may run
    base = _run(tiny_model, mnistm[0], degrade_goal=0.0)
    more = _run(tiny_model, mnistm[0], degrade_goal=0.0, extend_epochs=4)
    n = len(base.held_out_kl)
    assert n == 3 and not base.reached_goal
    assert more.held_out_kl[:n] == base.held_out_kl  # same epochs, bit for bit
    assert more.degrade_accuracy[:n] == base.degrade_accuracy
    assert n <= len(more.held_out_kl) <= n + 4
    acc = more.degrade_accuracy
    for e in range(n, len(acc) - 1):  # every extension epoch but the last lowered the probe
        assert acc[e] < acc[e - 1], acc
    # with a goal met inside the budget the extension changes nothing
    met = _run(tiny_model, mnistm[0], degrade_goal=1.0, extend_epochs=4)
    same = _run(tiny_model, mnistm[0], degrade_goal=1.0)
    assert met.chosen_epoch == same.chosen_epoch == 1 and met.reached_goal
    assert all(
        torch.equal(a.bits, b.bits) for a, b in zip(met.mask.layers, same.mask.layers, strict=True)
    )
