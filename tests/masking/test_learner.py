"""The mask learner on a real (tiny) model: frozen weights, binary masks, determinism, effect."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from mapguard._errors import ConfigError, TrainingError
from mapguard.checkpoint import weights_digest
from mapguard.masking import (
    MaskConfig,
    ObjectiveTerm,
    StepView,
    TensorSource,
    apply_mask,
    bn_distance,
    learn_mask,
)
from mapguard.training import accuracy

FAST = MaskConfig(epochs=2, batch_size=32, max_steps_per_epoch=6, lr=0.05)


@pytest.fixture(scope="module")
def learned(tiny_model, sources):
    """One short learning run plus the model state before it."""
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    flags = {n: (p.requires_grad, _clone(p.grad)) for n, p in tiny_model.named_parameters()}
    keep, degrade = sources
    result = learn_mask(tiny_model, keep=keep, degrade=degrade, config=FAST, progress=False)
    return result, state, flags


def _clone(t):
    return None if t is None else t.clone()


def test_original_weights_stay_bit_identical(tiny_model, learned):
    result, state, flags = learned
    after = tiny_model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert weights_digest(after) == result.mask.weights_sha256
    for n, p in tiny_model.named_parameters():  # flags and .grad untouched too
        assert p.requires_grad == flags[n][0]
        assert (p.grad is None and flags[n][1] is None) or torch.equal(p.grad, flags[n][1])
    assert not tiny_model.training


def test_mask_is_binary_and_baked_in_exactly(tiny_model, learned):
    result = learned[0]
    assert 0.0 < result.pruned_fraction < 0.5  # it did prune, at lr 0.05 over 12 steps
    protected = result.apply(tiny_model)
    params = dict(tiny_model.named_parameters())
    for layer in result.mask.layers:
        assert layer.bits.dtype == torch.bool
        w = dict(protected.named_parameters())[layer.name]
        assert torch.equal(w, params[layer.name] * layer.bits)
        zeros = (w == 0) & (params[layer.name] != 0)
        assert torch.equal(zeros, ~layer.bits.expand_as(w))  # zeroed exactly where the mask is 0


def test_history_and_throughput_are_recorded(learned):
    result = learned[0]
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.steps == 12 and result.images == 12 * 64
    assert set(result.history[0]) >= {"keep", "degrade", "prune", "loss", "pruned_fraction"}
    assert result.images_per_second > 0


def test_same_seed_same_mask_bit_for_bit(tiny_model, sources, learned):
    keep, degrade = sources
    again = learn_mask(tiny_model, keep=keep, degrade=degrade, config=FAST, progress=False)
    assert again.mask.equals(learned[0].mask)


def test_learning_lowers_target_accuracy_and_keeps_source(
    tiny_model, sources, mnist_small, mnistm_small
):
    keep, degrade = sources
    cfg = MaskConfig(epochs=2, batch_size=32, max_steps_per_epoch=10)  # default objective
    result = learn_mask(tiny_model, keep=keep, degrade=degrade, config=cfg, progress=False)
    protected = result.apply(tiny_model)
    src_before, src_after = (
        accuracy(tiny_model, mnist_small[1]),
        accuracy(protected, mnist_small[1]),
    )
    tgt_before, tgt_after = (
        accuracy(tiny_model, mnistm_small[1]),
        accuracy(protected, mnistm_small[1]),
    )
    assert tgt_before > 0.3
    assert tgt_after < tgt_before - 0.1, (tgt_before, tgt_after)
    assert src_after > src_before - 0.1, (src_before, src_after)


def test_several_targets_and_keeps_are_drawn_every_step(tiny_model, sources, mnistm_small):
    keep, degrade = sources
    noise = TensorSource(torch.rand(64, 3, 32, 32), torch.zeros(64, dtype=torch.long), seed=4)
    cfg = FAST.replace(epochs=1, max_steps_per_epoch=3)
    result = learn_mask(
        tiny_model, keep=[keep, keep], degrade=[degrade, noise], config=cfg, progress=False
    )
    assert result.images == 3 * 4 * 32


def test_callback_can_stop_and_sees_the_current_mask(tiny_model, sources):
    seen = []

    def stop_after_first(info):
        seen.append((info.epoch, info.current_mask().pruned_fraction, info.pruned_fraction))
        return True

    keep, degrade = sources
    result = learn_mask(
        tiny_model,
        keep=keep,
        degrade=degrade,
        config=FAST,
        callbacks=[stop_after_first],
        progress=False,
    )
    assert len(result.history) == 1 and result.steps == 6
    assert seen[0][0] == 1 and seen[0][1] == pytest.approx(seen[0][2], abs=1e-6)


class _ExtraTerm(ObjectiveTerm):
    name = "extra"

    def __init__(self, source):
        self.weight, self.source, self.sizes = 0.5, source, []

    def value(self, view: StepView) -> torch.Tensor:
        logits, batch = view.extra[self.name]
        self.sizes.append((logits.shape[0], batch.x.shape[0]))
        return logits.logsumexp(1).mean()


def test_extra_term_gets_logits_of_its_own_batches(tiny_model, sources):
    keep, degrade = sources
    term = _ExtraTerm(TensorSource(torch.rand(40, 3, 32, 32), seed=3, name="noise"))
    cfg = FAST.replace(epochs=1)
    result = learn_mask(
        tiny_model, keep=keep, degrade=degrade, config=cfg, extra_terms=[term], progress=False
    )
    assert term.sizes == [(32, 32)] * 6
    assert "extra" in result.history[0]


def test_bn_term_and_bn_update_leave_the_original_untouched(tiny_model, sources):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    keep, degrade = sources
    cfg = FAST.replace(epochs=1, bn_weight=0.1, update_bn=True)
    result = learn_mask(tiny_model, keep=keep, degrade=degrade, config=cfg, progress=False)
    assert "bn" in result.history[0] and result.history[0]["bn"] > 0
    assert all(torch.equal(state[k], v) for k, v in tiny_model.state_dict().items())
    moved = [
        n for n, b in result.buffers.items() if "running_mean" in n and not torch.equal(b, state[n])
    ]
    assert moved  # BN statistics adapted in the private copy ...
    protected = result.apply(tiny_model)
    assert torch.equal(protected.state_dict()[moved[0]], result.buffers[moved[0]])  # ... and ship


def test_bn_distance_is_zero_at_the_running_statistics():
    m, v = torch.rand(4), torch.rand(4) + 0.1
    assert float(bn_distance(((m, v, m.clone(), v.clone()),))) == 0.0
    assert float(bn_distance(((m + 1, v, m, v),))) == pytest.approx(2.0)  # ||1||_2 over 4 dims


def test_nan_loss_raises_training_error(tiny_model, sources):
    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        dict(broken.named_parameters())["1.0.weight"][0, 0, 0, 0] = float("nan")
    keep, degrade = sources
    with pytest.raises(TrainingError, match="NaN"):
        learn_mask(broken, keep=keep, degrade=degrade, config=FAST, progress=False)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"init_score": 0.4}, "all ones"),
        ({"granularity": "row"}, "granularity"),
        ({"keep_weight": 0.0, "degrade_weight": 0.0}, "both be 0"),
        ({"exclude": "1.*"}, "exclude"),
        ({"weight_noise": -0.1}, "weight_noise"),
    ],
)
def test_bad_config_names_the_bad_value(changes, match):
    with pytest.raises(ConfigError, match=match):
        MaskConfig(**changes)


def test_config_round_trips_through_a_dict():
    cfg = MaskConfig(epochs=3, exclude=("1.0*",), granularity="channel")
    assert MaskConfig.from_dict(cfg.to_dict()) == cfg
    assert MaskConfig.from_dict({"exclude": "1.0*"}).exclude == ("1.0*",)
    with pytest.raises(ConfigError, match="unknown mask option"):
        MaskConfig.from_dict({"epoch": 3})


def test_apply_mask_on_channel_granularity(tiny_model, sources):
    keep, degrade = sources
    cfg = FAST.replace(epochs=1, granularity="channel", lr=0.2)
    result = learn_mask(tiny_model, keep=keep, degrade=degrade, config=cfg, progress=False)
    protected = apply_mask(tiny_model, result.mask)
    for layer in result.mask.layers:
        w = dict(protected.named_parameters())[layer.name]
        dead = ~layer.bits.flatten()
        assert bool((w[dead] == 0).all())


def test_weight_noise_is_seeded_training_only_and_leaves_the_model_alone(tiny_model, sources):
    from mapguard.masking import MaskedModel, MaskScores, maskable_weights

    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    params = dict(tiny_model.named_parameters())
    shapes = {n: tuple(params[n].shape) for n in maskable_weights(tiny_model)}
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        ref = tiny_model.eval()(x)
        noisy = [MaskedModel(tiny_model, MaskScores(shapes), weight_noise=0.1, seed=5).train()
                 for _ in range(2)]  # fmt: skip
        a1, a2, b1 = noisy[0](x), noisy[0](x), noisy[1](x)
        clean = noisy[0].eval()(x)
    assert torch.allclose(clean, ref, atol=1e-6)  # eval passes carry no noise
    assert not torch.allclose(a1, ref, atol=1e-3) and not torch.allclose(a1, a2, atol=1e-3)
    assert torch.equal(a1, b1)  # the same seed draws the same noise
    keep, degrade = sources
    cfg = FAST.replace(epochs=1, weight_noise=0.1)
    result = learn_mask(tiny_model, keep=keep, degrade=degrade, config=cfg, progress=False)
    assert result.config.weight_noise == 0.1
    assert all(torch.equal(state[k], v) for k, v in tiny_model.state_dict().items())


@pytest.mark.parametrize("arch", ["small_vit", "resnet18"])
def test_torchvision_models_learn_save_and_apply(arch, request, tmp_path):
    from mapguard.masking import load_mask, mask_summary, save_mask

    model = request.getfixturevalue(arch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    keep = TensorSource(torch.rand(16, 3, 32, 32, generator=gen), seed=0, name="keep")
    labels = torch.randint(0, 10, (16,), generator=gen)
    degrade = TensorSource(torch.rand(16, 3, 32, 32, generator=gen), labels, seed=1, name="deg")
    cfg = MaskConfig(epochs=1, batch_size=8, max_steps_per_epoch=2, lr=0.05, init_score=0.52)
    moved = []

    def scores_moved(info):  # every layer's scores got a gradient through the model
        moved.extend(n for n, s in zip(info.scores.names, info.scores.scores) if (s != 0.52).any())

    result = learn_mask(
        model, keep=keep, degrade=degrade, config=cfg, callbacks=[scores_moved], progress=False
    )
    assert moved == [layer.name for layer in result.mask.layers]
    assert 0.0 < result.pruned_fraction < 1.0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    save_mask(result.mask, tmp_path / "mask.bin")
    back = load_mask(tmp_path / "mask.bin")
    assert back.equals(result.mask)
    protected = apply_mask(model, back)
    params = dict(model.named_parameters())
    for layer in back.layers:
        w = protected.get_parameter(layer.name)
        assert torch.equal(w, params[layer.name] * layer.bits)
    kinds = {s.kind for s in mask_summary(model, back)}
    expected = {"Conv2d", "Linear"}
    if arch == "small_vit":
        expected |= {"MultiheadAttention", "NonDynamicallyQuantizableLinear"}
    assert kinds == expected


def test_progress_lines_in_a_log(tiny_model, sources, capsys, monkeypatch):
    monkeypatch.setenv("MAPGUARD_PROGRESS_INTERVAL", "0")  # capsys' stderr is no terminal
    keep, degrade = sources
    cfg = FAST.replace(epochs=1, max_steps_per_epoch=3)
    learn_mask(tiny_model, keep=keep, degrade=degrade, config=cfg, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[..] learning mask (3 steps)"
    pattern = (
        r"\[\.\.\] learning mask: step {}/3 \(\d+%\), loss -?\d+\.\d{{4}}, \d+\.\d images/s, "
        r"elapsed \d+s, ETA \d+s"
    )
    assert all(re.fullmatch(pattern.format(i + 1), line) for i, line in enumerate(err[1:4])), err
    assert re.fullmatch(r"\[ok\] learning mask: 3 steps in \d+s, \d+\.\d images/s", err[4]), err
