"""The recipe adapts to the model before the secrets are drawn; the stopping rule (issue 14)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch

from mapguard.checkpoint import ModelMeta
from mapguard.models import create_model
from mapguard.watermark import EmbedConfig, embed
from mapguard.watermark._adapt import SMALL_MODEL, STOP_CHECKS, adapt_recipe, profile
from mapguard.watermark._recipe import draw_triggers, draw_verification_set, learn, load_inputs
from mapguard.watermark._stopping import StopRule, draw_tuning_set
from protocols import dsse, keys, statements
from protocols.errors import InputError


def test_profile_counts_the_maskable_weights_and_tells_large_from_small(tiny_model):
    small = profile(tiny_model)
    assert (small.weights, small.layers, small.large) == (47_664, 5, False)
    big = profile(create_model("torchvision:resnet18", num_classes=10))
    assert big.weights == 11_172_032 and big.layers == 21 and big.batchnorm == 20
    assert big.large and not big.attention and big.weights > SMALL_MODEL


def test_small_models_keep_the_fixed_recipe(tiny_model):
    cfg = EmbedConfig()
    got = adapt_recipe(cfg, tiny_model, n_train=4000, n_spare=500)
    assert dataclasses.replace(got, adapted="") == cfg.for_data(4000)
    assert got.adapted.startswith("small model") and got.stop_every is None
    off = adapt_recipe(EmbedConfig(adapt="off"), tiny_model, n_train=4000, n_spare=500)
    assert off == EmbedConfig(adapt="off").for_data(4000) and off.adapted == ""


def test_large_models_get_the_stopping_rule():
    net = create_model("torchvision:resnet18", num_classes=10)
    cfg = EmbedConfig()
    got = adapt_recipe(cfg, net, n_train=800, n_spare=136)
    assert got.mask.epochs == cfg.for_data(800).mask.epochs == 80
    assert got.stop_every == 80 * 800 // STOP_CHECKS
    assert dataclasses.replace(got, adapted="", stop_every=None) == cfg.for_data(800)
    assert "large model" in got.adapted and "stopping rule" in got.adapted
    assert adapt_recipe(got, net, n_train=800, n_spare=136) == got  # idempotent
    # too few spare held-out images: no rule, and it says so
    assert adapt_recipe(cfg, net, n_train=800, n_spare=10).stop_every is None
    # what the user set is theirs
    mine = cfg.with_options({"stop_every": 5})
    assert adapt_recipe(mine, net, n_train=800, n_spare=136).stop_every == 5
    assert adapt_recipe(EmbedConfig(adapt="off"), net, n_train=800, n_spare=136).stop_every is None


def test_the_adaptation_cannot_see_the_secrets():
    """Its inputs are the recipe, the model and two counts: nothing drawn."""
    assert list(inspect.signature(adapt_recipe).parameters) == ["cfg", "model", "n_train",
                                                                "n_spare"]  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"adapt": "maybe"},
        {"stop_rule": "best"},
        {"stop_every": 0},
        {"stop_margin": 2},
        {"mask.update_bn": True},
    ],  # fmt: skip
)
def test_bad_options_are_refused(bad):
    with pytest.raises(InputError):
        EmbedConfig().with_options(bad)


EPOCH = 400 // 32 * 32


@pytest.fixture(scope="module")
def data(mnist_small):
    """400 training digits (an epoch: EPOCH of them, in full batches of 32) and 400 held-out."""
    return mnist_small[0].take(400, seed=1), mnist_small[1]


@pytest.mark.slow
def test_rehearsing_does_not_change_what_is_learned(tiny_model, data, tiny_config):
    cfg = tiny_config(mask=tiny_config().mask.replace(epochs=2), stop_every=1,
                      stop_rule="record")  # fmt: skip
    inp = load_inputs(tiny_model, data, ModelMeta(arch="vgg_tiny"))
    params = cfg.family_params(10)
    secrets, triggers = draw_triggers(cfg, params, np.random.default_rng(3))
    tuning = draw_tuning_set(inp, cfg, draw_verification_set(inp, cfg))
    assert not set(tuning.indices) & set(draw_verification_set(inp, cfg).indices)
    cpu = torch.device("cpu")
    stop = StopRule(inp, cfg, tuning, secrets, triggers, params, cpu)
    plain = learn(inp, triggers, params, cfg, cpu, False)
    rehearsed = learn(inp, triggers, params, cfg, cpu, False, callbacks=[stop])
    for x, y in zip(plain.mask.layers, rehearsed.mask.layers, strict=True):
        assert torch.equal(x.bits, y.bits), x.name
    assert [r["train_images"] for r in stop.rehearsals] == [EPOCH, 2 * EPOCH]
    assert all(len(r["effects"]) == 3 for r in stop.rehearsals)


def test_embed_records_the_recipe_it_fixed_before_the_draw_and_stops_on_it(
    tiny_model, data, owner, tmp_path, tiny_config
):
    """embed-config.json is what adapt_recipe gives without any secret, the commitment states
    the rule, and learning ends at the first rehearsal that meets it (alpha 0.99 and no floor:
    the first one, a mechanics test)."""
    easy = {"alpha": 0.99, "effect_floor": 0.0, "stop_margin": 0.0, "max_accuracy_drop": 1.0}
    mask = tiny_config().mask.replace(epochs=4)
    cfg = tiny_config(mask=mask, stop_every=EPOCH, export=False, **easy)
    out = tmp_path / "wm"
    embed(tiny_model, data, owner.key(), cfg, out=out, meta=ModelMeta(arch="vgg_tiny"),
          progress=False, secret_rng=np.random.default_rng(3))  # fmt: skip
    train, holdout = data
    expected = adapt_recipe(cfg, tiny_model, n_train=len(train),
                            n_spare=len(holdout) - cfg.n_verification)  # fmt: skip
    written = json.loads((out / "embed-config.json").read_text())
    assert written == json.loads(json.dumps(expected.to_dict()))
    assert written["stop_every"] == EPOCH and written["adapted"].startswith("small model")
    env = dsse.read_envelope(out / "commitment.dsse.json")
    stmt = statements.verify_statement(env, keys.load_public_key(owner.public))
    recipe = stmt["predicate"]["method"]["parameters"]["recipe"]
    assert recipe["stop"]["every_images"] == EPOCH and recipe["stop"]["rule"] == "level"
    learning = json.loads((out / "metrics.json").read_text())["learning"]
    rehearsals = learning["rehearsals"]
    assert [r["met"] for r in rehearsals] == [True], rehearsals
    assert learning["epochs"] == 1 and learning["met_at_train_images"] == EPOCH


def test_a_stopping_rule_without_spare_held_out_images_is_refused(
    tiny_model, data, owner, tmp_path, tiny_config
):
    cfg = tiny_config(stop_every=100, export=False)
    tight = (data[0], data[1].take(cfg.n_verification, seed=0))  # all of it for verification
    with pytest.raises(InputError, match="stopping rule .* needs held-out images"):
        embed(tiny_model, tight, owner.key(), cfg, out=tmp_path / "wm",
              meta=ModelMeta(arch="vgg_tiny"), progress=False)  # fmt: skip
    assert not (tmp_path / "wm").exists()


def _accuracy(right: int, n: int = 200) -> float:
    """As mapguard computes it: a float32 mean of hits."""
    return float((torch.arange(n) < right).float().mean())


def test_a_cost_of_exactly_the_limit_is_within_it():
    """2 of 200 images lost is 1.00 point: within a 1-point limit, though float32 makes the
    difference 0.0100000501 (an embedding measured in benchmarks.embed_real was marked not ready
    for it); 3 images are over."""
    from mapguard.watermark._embed import readiness

    check = {"evidenced": True}
    two = {"clean_accuracy_before": _accuracy(195), "clean_accuracy_after": _accuracy(193)}
    assert two["clean_accuracy_before"] - two["clean_accuracy_after"] > 0.01
    assert readiness(EmbedConfig(), two, check, attempt=1) == ()
    three = two | {"clean_accuracy_after": _accuracy(192)}
    (reason, _) = readiness(EmbedConfig(), three, check, attempt=1)
    assert reason.startswith("clean accuracy cost 1.50 points > limit 1.00")


def test_the_rehearsal_cost_is_measured_against_the_reference(tiny_model, data, tiny_config):
    """With a committed channel the mask applies to taught weights; the rule's cost must be
    against the original model (``reference``), not the weights the mask applies to: two rules
    on one run differ by exactly the reference's accuracy difference on the tuning images."""
    import copy

    cfg = tiny_config(mask=tiny_config().mask.replace(epochs=1), stop_every=1,
                      stop_rule="record")  # fmt: skip
    taught = copy.deepcopy(tiny_model)
    with torch.no_grad():  # weights that read the digits worse than the original
        last = [m for m in taught.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.add_(
            0.5 * torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(0))
        )
    inp = load_inputs(taught, data, ModelMeta(arch="vgg_tiny"))
    params = cfg.family_params(10)
    secrets, triggers = draw_triggers(cfg, params, np.random.default_rng(3))
    tuning = draw_tuning_set(inp, cfg, draw_verification_set(inp, cfg))
    cpu = torch.device("cpu")
    plain = StopRule(inp, cfg, tuning, secrets, triggers, params, cpu)
    versus = StopRule(inp, cfg, tuning, secrets, triggers, params, cpu, reference=tiny_model)
    learn(inp, triggers, params, cfg, cpu, False, callbacks=[plain, versus])
    x, y = tuning.floats(), torch.from_numpy(tuning.labels)
    with torch.no_grad():
        gap = float((tiny_model(x).argmax(1) == y).float().mean()) - float(
            (taught.eval()(x).argmax(1) == y).float().mean()
        )
    assert gap > 0.02, gap  # the taught copy is measurably worse
    got = versus.rehearsals[0]["cost"] - plain.rehearsals[0]["cost"]
    assert abs(got - gap) < 1e-6, (got, gap)
