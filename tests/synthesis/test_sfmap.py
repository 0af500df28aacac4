"""SF-MAP and DF-MAP on a tiny model: targets degrade, the real source survives, stopping rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.checkpoint import weights_digest
from mapguard.data import load_data
from mapguard.masking import Mask, MaskConfig, MaskLayer, apply_mask, maskable_weights
from mapguard.sfmap import (
    FreeConfig,
    HeldOutKLStop,
    NeighbourSource,
    _FeatureShiftHook,
    data_free_mask,
    masked_logits,
    source_free_mask,
)
from mapguard.synthesis import SynthesisConfig
from mapguard.training import accuracy


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


def test_feature_shift_hook_touches_only_armed_rows(tiny_model) -> None:
    conv = next(m for m in tiny_model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = _FeatureShiftHook(conv)
    x = torch.rand(8, 3, 32, 32)
    try:
        with torch.no_grad():
            plain = tiny_model(x)
            hook.arm(torch.tensor([5, 7]), torch.Generator().manual_seed(0))
            shifted = tiny_model(x)
            after = tiny_model(x)  # the hook disarms itself after one forward pass
    finally:
        hook.close()
    changed = (shifted - plain).abs().amax(1) > 1e-4
    assert changed.tolist() == [False] * 5 + [True, False, True]
    assert torch.equal(after, plain)


def test_neighbour_source_is_deterministic_and_labels_clean_predictions(mnist_small) -> None:
    x, y = mnist_small[1].floats()[:40], mnist_small[1].labels[:40]
    src = NeighbourSource(x, y, families=("colour", "texture"), steps_per_epoch=2, seed=0)
    a = list(src.batches(epoch=0, batch_size=8))
    b = list(src.batches(epoch=0, batch_size=8))
    assert len(a) == 2 and all(
        torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(a, b)
    )
    halves = [list(src.batches(epoch=0, batch_size=8, rank=r, world_size=2))[0] for r in (0, 1)]
    assert torch.equal(torch.cat([h.x for h in halves]), a[0].x)


TINY_FREE = FreeConfig(
    n_pseudo=60, synthesis=SynthesisConfig(steps=60, batch_size=30), steps_per_epoch=4
)


@pytest.fixture(scope="module")
def mnistm():
    train = load_data("builtin:mnistm", split="train", progress=False).take(1200, seed=0)
    test = load_data("builtin:mnistm", split="test", progress=False).take(400, seed=0)
    return train, test


def test_tiny_sf_map_lowers_target_and_keeps_source(tiny_model, mnist_small, mnistm) -> None:
    source_test = mnist_small[1]
    before_s, before_t = accuracy(tiny_model, source_test), accuracy(tiny_model, mnistm[1])
    out = source_free_mask(
        tiny_model,
        target=mnistm[0],
        mask_config=MaskConfig(epochs=12, batch_size=32),
        config=TINY_FREE,
        cache=False,
        progress=False,
    )
    protected = apply_mask(tiny_model, out.mask)
    after_s, after_t = accuracy(protected, source_test), accuracy(protected, mnistm[1])
    assert before_t >= 0.3  # an informative pair to start with (tiny model: ~41 %)
    # measured here: 41.2 -> 30.0 % at epoch 2 (the rule's choice; epoch 3 would cost the source
    # 8 points); 8 points on 400 images is > 3 standard errors
    assert after_t <= before_t - 0.08, (before_t, after_t)
    # stated bound for this tiny 3-epoch model and 60 pseudo-source images: <= 4 points lost
    assert after_s >= before_s - 0.04, (before_s, after_s)
    assert len(out.held_out_kl) == len(out.learned.history) == len(out.degrade_accuracy)
    kl = out.held_out_kl
    if out.within_threshold:  # the rule's own record explains the choice
        assert kl[out.chosen_epoch - 1] <= TINY_FREE.stop_kl
    else:
        assert kl[out.chosen_epoch - 1] == min(kl) > TINY_FREE.stop_kl


def test_tiny_df_map_lowers_unseen_domain_and_keeps_source(tiny_model, mnist_small, mnistm) -> None:
    source_test = mnist_small[1]
    before_s, before_t = accuracy(tiny_model, source_test), accuracy(tiny_model, mnistm[1])
    out = data_free_mask(
        tiny_model,
        mask_config=MaskConfig(epochs=8, batch_size=32, lr=0.02),
        config=dataclasses.replace(TINY_FREE, steps_per_epoch=10),
        cache=False,
        progress=False,
    )
    protected = apply_mask(tiny_model, out.mask)
    after_s, after_t = accuracy(protected, source_test), accuracy(protected, mnistm[1])
    # measured here: 41.2 -> 28.5 %; a domain it never saw
    assert after_t <= before_t - 0.08, (before_t, after_t)
    assert after_s >= before_s - 0.04, (before_s, after_s)  # stated bound: <= 4 points lost


def test_sf_map_without_target_is_a_config_error(tiny_model) -> None:
    with pytest.raises(ConfigError, match="SF-MAP needs target data"):
        source_free_mask(tiny_model, target=None, config=TINY_FREE, cache=False, progress=False)


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
    ],
)
def test_bad_free_options(change, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        FreeConfig(**change)


def test_mix_pairs_mixes_only_the_first_rows_inside_the_pair_hull() -> None:
    from mapguard.sfmap import mix_pairs

    x = torch.rand(8, 3, 4, 4)
    a = mix_pairs(x, 3, torch.Generator().manual_seed(1))
    b = mix_pairs(x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a[3:], x[3:]) and not torch.equal(a[:3], x[:3])
    # every mixed row is l*x_i + (1-l)*x_j with l in [0.3, 0.7]: within the pixelwise hull
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    assert bool((a[:3] >= lo - 1e-6).all() and (a[:3] <= hi + 1e-6).all())
    assert torch.equal(mix_pairs(x, 0, torch.Generator()), x)


def test_pseudo_source_with_mixup_computes_teacher_logits_per_batch(tiny_model) -> None:
    from mapguard.sfmap import PseudoSource

    x = torch.rand(16, 3, 32, 32)
    src = PseudoSource(x, steps_per_epoch=2, seed=0, mixup=0.5)
    assert src.with_teacher(tiny_model) is src  # mixed images have no precomputed logits
    batches = list(src.batches(epoch=1, batch_size=8))
    assert len(batches) == 2 and all(b.teacher is None for b in batches)
    assert not any(any(torch.equal(row, xi) for xi in x) for row in batches[0].x[:4])
