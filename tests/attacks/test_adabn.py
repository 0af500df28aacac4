"""``adabn``: BatchNorm statistics re-estimated on a few unlabelled images of another domain;
every weight unchanged; the CLI refuses bad options in one line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.attacks import AttackConfig, attack, get_attack
from mapguard.attacks._adabn import batch_norm_layers
from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data
from mapguard.watermark._bn_robust import reestimated_buffers


@pytest.fixture(scope="module")
def shifted():
    """Unlabelled images of another domain than the tiny model's (MNIST-M digits)."""
    return load_data("builtin:mnistm", split="train", progress=False)


def test_running_stats_equal_a_fresh_estimate_and_weights_are_unchanged(untouched, shifted,
                                                                        tiny_meta):  # fmt: skip
    attacked, info = attack(untouched, "adabn", data=shifted, config=AttackConfig(n_images=40),
                            meta=tiny_meta, seed=3)  # fmt: skip
    images = shifted.take(40, seed=3).floats()  # the runner's class-balanced draw
    # an independent computation: each layer's batch mean and unbiased variance of its input
    params = dict(untouched.named_parameters())
    fresh = reestimated_buffers(untouched, params, images)
    state = attacked.state_dict()
    layers = batch_norm_layers(untouched)
    assert layers and info.details["bn_layers"] == len(layers) and info.n_images == 40
    for name in layers:
        for stat in ("running_mean", "running_var"):
            assert torch.allclose(state[f"{name}.{stat}"], fresh[f"{name}.{stat}"], atol=1e-5)
        old = untouched.state_dict()[f"{name}.running_mean"]
        assert not torch.allclose(state[f"{name}.running_mean"], old, atol=1e-3)  # it moved
    for name, p in params.items():
        assert torch.equal(state[name], p.detach()), name
    assert not attacked.training


def test_the_estimate_ignores_labels_and_depends_on_the_images(untouched, shifted, tiny_meta):
    cfg = AttackConfig(n_images=20)
    a, _ = attack(untouched, "adabn", data=shifted, config=cfg, meta=tiny_meta, seed=0)
    relabelled = shifted.take(20, seed=0)
    relabelled = dataclasses.replace(relabelled, labels=(relabelled.labels + 1) % 10)
    b, _ = attack(untouched, "adabn", data=relabelled, config=cfg, meta=tiny_meta, seed=0)
    c, _ = attack(untouched, "adabn", data=shifted, config=cfg, meta=tiny_meta, seed=1)
    key = f"{batch_norm_layers(untouched)[0]}.running_mean"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])


def test_defaults_and_data_role():
    kind = get_attack("adabn")
    assert kind.needs_data and kind.data_role == "target"
    assert kind.defaults["n_images"] == 10


def _cli(*args: str):
    return CliRunner().invoke(cli, ["attack", *map(str, args)], catch_exceptions=False)


def test_cli_writes_a_checkpoint_recording_adabn(tiny_checkpoint, tmp_path):
    out = tmp_path / "adabn.pt"
    res = _cli(tiny_checkpoint, "--kind", "adabn", "--data", "builtin:mnistm", "--n-images", "10",
               "--seed", "4", "--out", out, "--quiet", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["kind"] == "adabn" and report["n_images"] == 10 and report["seed"] == 4
    _, meta = load_checkpoint(out)
    assert meta.extra["attack"] == "adabn" and meta.extra["attack_data"] == "builtin:mnistm"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "adabn"], "attack 'adabn' needs --data"),
        (["--kind", "adabn", "--data", "builtin:mnistm", "--n-images", "0"], "n_images"),
        (["--kind", "adabn", "--data", "builtin:mnistm", "--n-images", "10000000"], "exceeds"),
        (["--kind", "adabn", "--data", "builtin:mnistm", "--batch-size", "0"], "batch_size"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(tiny_checkpoint, tmp_path, args, message):
    res = _cli(tiny_checkpoint, *args, "--out", tmp_path / "x.pt")
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.startswith("mapguard: error:")
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_more_images_than_a_batch_use_the_full_batches(untouched, shifted, tiny_meta):
    cfg = AttackConfig(n_images=30, batch_size=16)
    _, info = attack(untouched, "adabn", data=shifted, config=cfg, meta=tiny_meta, seed=0)
    assert info.details["batches"] == 1 and info.details["images_used"] == 16
