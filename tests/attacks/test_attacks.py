"""Every attack kind runs on the tiny model and does what its name says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mapguard.attacks import AttackConfig, attack, get_attack, list_attacks
from mapguard.attacks._quantize import int8_round_trip
from mapguard.masking import maskable_weights
from mapguard.training import accuracy, predict_logits
from protocols.errors import InputError

KINDS = {
    "distill", "distill-arch", "extract", "fine-prune", "ftal", "ftll", "prune", "quantize",
    "regrow", "rtal", "target-ft", "unlearn-triggers", "wrk", "adabn",
}  # fmt: skip


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in maskable_weights(model)}


def test_registry_lists_every_kind_with_a_description():
    kinds = list_attacks()
    assert set(kinds) == KINDS
    assert all(desc for desc in kinds.values())
    assert not get_attack("prune").needs_data and get_attack("ftal").needs_data
    assert get_attack("target-ft").data_role == "target"


def test_unknown_kind_names_the_valid_ones(tiny_model):
    with pytest.raises(InputError, match="unknown attack kind 'ftxx'.*distill.*target-ft"):
        attack(tiny_model, "ftxx")


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.7])
def test_prune_zeroes_the_smallest_weights_of_every_layer(untouched, amount):
    pruned, info = attack(untouched, "prune", config=AttackConfig(amount=amount))
    before, after = _weights(untouched), _weights(pruned)
    for name, w in before.items():
        zero = after[name] == 0
        assert int(zero.sum()) == round(amount * w.numel()), name
        assert w[zero].abs().max() <= w[~zero].abs().min(), name  # magnitude order respected
        assert torch.equal(after[name][~zero], w[~zero])  # survivors untouched
    assert info.details["zero_fraction"] == pytest.approx(amount, abs=0.002)
    assert info.n_images == 0 and info.data is None


def test_quantize_puts_weights_on_an_int8_grid_and_keeps_outputs(untouched, mnist_small):
    quant, info = attack(untouched, "quantize")
    modules = dict(quant.named_modules())
    for name, w in _weights(quant).items():
        layer = modules[name.rsplit(".", 1)[0]]
        rows = w.reshape(1, -1) if isinstance(layer, nn.Linear) else w.reshape(w.shape[0], -1)
        assert all(len(torch.unique(r)) <= 256 for r in rows), name
    x = mnist_small[1].floats()
    ref, out = predict_logits(untouched, x), predict_logits(quant, x)
    assert (ref.argmax(1) == out.argmax(1)).float().mean() >= 0.98
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert 0 < info.details["max_abs_weight_change"] < 0.05
    assert info.notes and "activations are not quantized" in info.notes[0]


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("seed", range(5))
def test_int8_round_trip_matches_torch_quantize_per_tensor(seed):
    w = torch.randn(64, 32, generator=torch.Generator().manual_seed(seed))
    scale = (w.abs().max() / 127.5).item()  # float32 arithmetic, as torch's observers
    ref = torch.quantize_per_tensor(w, scale, 0, torch.qint8).dequantize()
    assert torch.allclose(int8_round_trip(w, per_channel=False), ref, atol=1e-6)


def test_ftll_changes_only_the_last_layer(untouched, mnist_small, tiny_meta):
    tuned, info = attack(untouched, "ftll", data=mnist_small[0], meta=tiny_meta, seed=1)
    before, after = untouched.state_dict(), tuned.state_dict()
    changed = {k for k in before if not before[k].equal(after[k])}
    assert changed == {"1.15.weight", "1.15.bias"}  # vgg_tiny's classifier
    assert info.n_images == round(0.1 * len(mnist_small[0]))
    assert accuracy(tuned, mnist_small[1]) > 0.8


def test_rtal_reinitialises_the_last_layer(untouched, mnist_small, tiny_meta):
    still = AttackConfig(epochs=1, lr=1e-9)  # no training: only the re-initialisation shows
    model, _ = attack(untouched, "rtal", data=mnist_small[0], config=still, meta=tiny_meta)
    old, new = untouched[1][15].weight, model[1][15].weight
    corr = torch.corrcoef(torch.stack([old.flatten(), new.flatten()]))[0, 1]
    assert abs(float(corr.detach())) < 0.2  # a fresh draw, unrelated to the trained head
    assert new.abs().max() <= 1 / 64**0.5 + 1e-6  # kaiming-uniform bound of a 64-input layer
    assert torch.allclose(model[1][13].weight, untouched[1][13].weight, atol=1e-6)
    trained, _ = attack(untouched, "rtal", data=mnist_small[0], meta=tiny_meta)
    assert accuracy(trained, mnist_small[1]) > 0.5  # the head was re-learned


def test_ftal_changes_every_layer_keeps_accuracy_and_is_reproducible(
    untouched, mnist_small, tiny_meta
):
    cfg = AttackConfig(n_images=128, epochs=2)
    a, _ = attack(untouched, "ftal", data=mnist_small[0], config=cfg, meta=tiny_meta, seed=3)
    b, _ = attack(untouched, "ftal", data=mnist_small[0], config=cfg, meta=tiny_meta, seed=3)
    before = _weights(untouched)
    assert all(not w.equal(_weights(a)[n]) for n, w in before.items())
    assert all(w.equal(_weights(b)[n]) for n, w in _weights(a).items())
    assert accuracy(a, mnist_small[1]) > accuracy(untouched, mnist_small[1]) - 0.05


def test_fine_prune_removes_the_least_active_channels(untouched, mnist_small, tiny_meta):
    cfg = AttackConfig(amount=0.25, n_images=128, epochs=2)
    model, info = attack(untouched, "fine-prune", data=mnist_small[0], config=cfg, meta=tiny_meta)
    conv, bn = model[1][8], model[1][9]  # vgg_tiny's last conv block
    dead = conv.weight.flatten(1).abs().sum(1) == 0
    assert int(dead.sum()) == info.details["pruned_channels"] == 8
    assert bool((bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all())
    assert accuracy(model, mnist_small[1]) > 0.7


def test_regrow_refills_every_zeroed_weight(untouched, mnist_small, tiny_meta):
    masked, _ = attack(untouched, "prune", config=AttackConfig(amount=0.4))  # stands in for MAP
    cfg = AttackConfig(n_images=128, epochs=1)
    regrown, info = attack(masked, "regrow", data=mnist_small[0], config=cfg, meta=tiny_meta)
    zeros = {n: w == 0 for n, w in _weights(masked).items()}
    assert info.details["refilled_weights"] == sum(int(z.sum()) for z in zeros.values())
    for name, w in _weights(regrown).items():
        assert not (w[zeros[name]] == 0).any(), name
    assert accuracy(regrown, mnist_small[1]) > 0.7


def test_distill_student_is_new_and_agrees_with_teacher(untouched, mnist_small, tiny_meta):
    cfg = AttackConfig(n_images=400, epochs=3, batch_size=32)
    student, info = attack(untouched, "distill", data=mnist_small[0], config=cfg, meta=tiny_meta)
    assert info.arch == "vgg_tiny" and info.details["student_arch"] == "vgg_tiny"
    assert not student[1][0].weight.equal(untouched[1][0].weight)
    x = mnist_small[1].floats()
    agree = predict_logits(student, x).argmax(1) == predict_logits(untouched, x).argmax(1)
    assert agree.float().mean() > 0.6  # chance is 0.1


def test_extract_learns_from_hard_labels(untouched, mnist_small, tiny_meta):
    cfg = AttackConfig(n_images=400, epochs=3, batch_size=32)
    student, info = attack(untouched, "extract", data=mnist_small[0], config=cfg, meta=tiny_meta)
    x = mnist_small[1].floats()
    agree = predict_logits(student, x).argmax(1) == predict_logits(untouched, x).argmax(1)
    assert agree.float().mean() > 0.4 and info.kind == "extract"


def test_distill_arch_changes_architecture(untouched, mnist_small, tiny_meta):
    cfg = AttackConfig(n_images=64, epochs=1)
    student, info = attack(
        untouched, "distill-arch", data=mnist_small[0], config=cfg, meta=tiny_meta
    )
    assert info.arch == "vgg_small" and student(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(InputError, match="other than 'vgg_tiny'"):
        attack(untouched, "distill-arch", data=mnist_small[0],
               config=AttackConfig(arch="vgg_tiny"), meta=tiny_meta)  # fmt: skip


def test_target_ft_learns_the_target_domain(untouched, tiny_meta):
    from mapguard.data import load_data

    target = load_data("builtin:mnistm", split="train", progress=False)
    test = load_data("builtin:mnistm", split="test", progress=False).take(300, seed=0)
    cfg = AttackConfig(epochs=12)
    tuned, info = attack(untouched, "target-ft", data=target, config=cfg, meta=tiny_meta)
    assert info.n_images == 100 and info.data == "builtin:mnistm"
    assert accuracy(tuned, test) > accuracy(untouched, test) + 0.1


@pytest.mark.parametrize("kind", ["ftll", "ftal", "rtal", "regrow", "fine-prune", "distill",
                                  "distill-arch", "extract", "target-ft"])  # fmt: skip
def test_kinds_that_train_refuse_to_run_without_data(tiny_model, kind):
    with pytest.raises(InputError, match=f"attack '{kind}' needs --data"):
        attack(tiny_model, kind)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fraction": 0.0}, r"fraction must be a number in \(0, 1\], got 0.0"),
        ({"fraction": 1.5}, r"fraction .* got 1.5"),
        ({"amount": 1.0}, r"amount must be a number in \[0, 1\), got 1.0"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"lr": float("nan")}, "lr must be"),
        ({"n_images": True}, "n_images must be an integer"),
    ],
)
def test_bad_options_are_refused_with_the_value(options, message):
    with pytest.raises(InputError, match=message):
        AttackConfig(**options)


def test_too_many_images_and_class_mismatch_are_refused(tiny_model, mnist_small):
    with pytest.raises(InputError, match="n_images=5000 exceeds the 1200 images"):
        attack(tiny_model, "ftal", data=mnist_small[0], config=AttackConfig(n_images=5000))
    binary = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    with pytest.raises(InputError, match="2 classes but data 'builtin:mnist' has 10"):
        attack(binary, "ftal", data=mnist_small[0])


def test_info_records_resolved_config_for_the_checkpoint(tiny_model):
    _, info = attack(tiny_model, "prune", config=AttackConfig(amount=0.3), seed=4)
    extra = info.to_extra()
    assert extra["attack"] == "prune" and extra["attack_seed"] == "4"
    assert (
        '"amount": 0.3' in extra["attack_config"] and '"batch_size": 64' in extra["attack_config"]
    )
    assert all(isinstance(v, str) for v in extra.values())


def test_a_64_pixel_victim_is_attacked_on_64_pixel_data(checkpoint_64, mnist_64, mnist_small,
                                                        tmp_path):  # fmt: skip
    from mapguard.attacks import attack_file
    from mapguard.checkpoint import load_checkpoint

    out = tmp_path / "ftll.pt"
    cfg = AttackConfig(n_images=32, epochs=1)
    info, meta = attack_file(checkpoint_64, "ftll", data="builtin:mnist", config=cfg, out=out,
                             progress=False)  # fmt: skip
    assert meta.input_size == (3, 64, 64) and info.n_images == 32
    model, victim = load_checkpoint(checkpoint_64)
    with pytest.raises(InputError, match="takes 64x64 images but data 'builtin:mnist' has 32x32"):
        attack(model, "ftll", data=mnist_small[0], config=cfg, meta=victim)
    with pytest.raises(InputError, match="student architecture 'vgg_small' does not take 64x64"):
        attack(model, "distill-arch", data=mnist_64[0], config=cfg, meta=victim)
    # without metadata the class count is probed at the data's side
    attacked, info = attack(model, "ftll", data=mnist_64[0], config=cfg)
    assert info.arch == "unknown" and attacked(torch.rand(1, 3, 64, 64)).shape == (1, 10)
