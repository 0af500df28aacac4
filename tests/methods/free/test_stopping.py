"""The source-free stopping rule: held-out drift of the masked model, the degrade goal."""

from __future__ import annotations

import torch

from mapguard.checkpoint import weights_digest
from mapguard.masking import Mask, MaskLayer, apply_mask, maskable_weights
from mapguard.methods.free import HeldOutKLStop, masked_logits


def _mask(model, fill: bool) -> Mask:
    params = dict(model.named_parameters())
    layers = tuple(
        MaskLayer(
            name=n, weight_shape=tuple(params[n].shape), bits=torch.full(params[n].shape, fill)
        )
        for n in maskable_weights(model)
    )
    return Mask(
        granularity="weight", layers=layers, weights_sha256=weights_digest(model.state_dict())
    )


class _Info:
    def __init__(self, epoch, mask):
        self.epoch, self._mask = epoch, mask

    def current_mask(self):
        return self._mask


def test_masked_logits_match_the_baked_model(tiny_model, mnist_small) -> None:
    mask = _mask(tiny_model, True)
    first = mask.layers[0]
    bits = first.bits.clone()
    bits[0] = False
    mask = Mask(
        granularity="weight",
        layers=(
            MaskLayer(name=first.name, weight_shape=first.weight_shape, bits=bits),
            *mask.layers[1:],
        ),
        weights_sha256=mask.weights_sha256,
    )
    x = mnist_small[1].floats()[:32]
    with torch.no_grad():
        assert torch.allclose(
            masked_logits(tiny_model, mask, x), apply_mask(tiny_model, mask)(x), atol=1e-5
        )


def test_stopping_rule_keeps_last_epoch_under_threshold(tiny_model, mnist_small) -> None:
    x = mnist_small[1].floats()[:40]
    stop = HeldOutKLStop(tiny_model, x, threshold=0.15, patience=1)
    ones, zeros = _mask(tiny_model, True), _mask(tiny_model, False)
    assert stop(_Info(1, ones)) is False
    assert stop(_Info(2, ones)) is False
    assert stop(_Info(3, zeros)) is True  # KL far above 0.15: stop
    mask, epoch, ok = stop.selection()
    assert (epoch, ok) == (2, True) and mask is ones
    assert stop.kl[0] < 1e-6 < 0.15 < stop.kl[2]


class _FakeProbe:
    def __init__(self, values):
        self.values = list(values)

    def __call__(self, mask):
        return self.values.pop(0)


def test_stopping_rule_stops_once_the_degrade_goal_is_reached(tiny_model, mnist_small) -> None:
    x = mnist_small[1].floats()[:40]
    probe = _FakeProbe([0.5, 0.12, 0.05])
    stop = HeldOutKLStop(tiny_model, x, threshold=0.15, probe=probe, goal=0.15)
    ones = _mask(tiny_model, True)
    assert stop(_Info(1, ones)) is False  # accepted, target still at 50 %
    assert stop(_Info(2, ones)) is True  # accepted and at 12 % <= 15 %: enough, stop
    assert stop.selection()[1:] == (2, True) and stop.reached_goal
    assert stop.degrade_accuracy == [0.5, 0.12]


def test_stopping_rule_ignores_the_goal_on_a_rejected_epoch(tiny_model, mnist_small) -> None:
    stop = HeldOutKLStop(
        tiny_model,
        mnist_small[1].floats()[:20],
        threshold=0.15,
        patience=3,
        probe=_FakeProbe([0.5, 0.0]),
        goal=0.15,
    )
    assert stop(_Info(1, _mask(tiny_model, True))) is False
    assert stop(_Info(2, _mask(tiny_model, False))) is False  # broken model: KL too high
    assert stop.selection()[1] == 1 and not stop.reached_goal


def test_stopping_rule_falls_back_to_lowest_kl(tiny_model, mnist_small) -> None:
    stop = HeldOutKLStop(tiny_model, mnist_small[1].floats()[:20], threshold=1e-9, patience=2)
    zeros = _mask(tiny_model, False)
    assert stop(_Info(1, zeros)) is False and stop(_Info(2, zeros)) is True
    assert stop.selection()[1:] == (1, False)
