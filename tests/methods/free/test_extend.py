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
    # best of epochs 4-6 (30 %) below best of 1-3 (50 %): extend; 5-7 (35 %) vs 2-4 (30 %): stop
    probe = _Probe([0.6, 0.5, 0.5, 0.3, 0.4, 0.35, 0.4, 0.2])
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], probe, budget=6)
    assert [stop(_Info(e, None)) for e in range(1, 7)] == [False] * 6  # budget, then extend
    assert stop(_Info(7, None)) is True  # no progress over the last window: stop
    # not the last epoch (40 %): the accepted epoch from the budget (6) on with the lowest probe
    assert stop.selection()[1:] == (6, True) and not stop.reached_goal
    assert probe.values == [0.2]  # epoch 8 never ran


def test_without_a_budget_the_rule_is_the_old_one(tiny_model, mnist_small) -> None:
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], _Probe([0.6] * 8), budget=None)
    assert [stop(_Info(e, None)) for e in range(1, 9)] == [False] * 8


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
    probe = _Probe([0.6, 0.5, 0.4, 0.1])
    stop = _stop(tiny_model, mnist_small[1].floats()[:20], probe, budget=3, patience=3)
    assert [stop(_Info(e, None)) for e in (1, 2)] == [False, False]
    assert stop(_Info(3, _all_pruned(tiny_model))) is True  # KL far above 0.15, past budget
    assert stop.selection()[1:] == (2, True)


def test_negative_extension_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="extend_epochs"):
        FreeConfig(extend_epochs=-1)


TINY = dict(n_pseudo=60, synthesis=SynthesisConfig(steps=60, batch_size=30), steps_per_epoch=2)


def _run(model, target, cache, **options):
    return source_free_mask(
        model,
        target=target,
        mask_config=MaskConfig(epochs=6, batch_size=32),
        config=FreeConfig(**TINY, **options),
        cache=cache,  # one synthesis for the four runs
        progress=False,
    )


def test_extension_leaves_the_budget_epochs_unchanged(tiny_model, mnistm, tmp_path) -> None:
    # an unreachable goal: the budget ends without it, so the extension may run
    base = _run(tiny_model, mnistm[0], tmp_path, degrade_goal=0.0)
    more = _run(tiny_model, mnistm[0], tmp_path, degrade_goal=0.0, extend_epochs=4)
    n = len(base.held_out_kl)
    assert n == 6 and not base.reached_goal
    assert more.held_out_kl[:n] == base.held_out_kl  # same epochs, bit for bit
    assert more.degrade_accuracy[:n] == base.degrade_accuracy
    assert n <= len(more.held_out_kl) <= n + 4
    acc = more.degrade_accuracy
    for e in range(n, len(acc)):  # every extension epoch followed progress over a window
        assert min(acc[e - 3 : e]) < min(acc[e - 6 : e - 3]), acc
    # with a goal met inside the budget the extension changes nothing
    met = _run(tiny_model, mnistm[0], tmp_path, degrade_goal=1.0, extend_epochs=4)
    same = _run(tiny_model, mnistm[0], tmp_path, degrade_goal=1.0)
    assert met.chosen_epoch == same.chosen_epoch == 1 and met.reached_goal
    assert all(
        torch.equal(a.bits, b.bits) for a, b in zip(met.mask.layers, same.mask.layers, strict=True)
    )
