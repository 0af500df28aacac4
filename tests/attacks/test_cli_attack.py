"""``mapguard attack``: writes a loadable checkpoint that records the attack; bad input exits 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.checkpoint import load_checkpoint
from mapguard.masking import maskable_weights


def _run(*args: str):
    return CliRunner().invoke(cli, ["attack", *map(str, args)], catch_exceptions=False)


def test_prune_writes_a_loadable_checkpoint_recording_the_attack(tiny_checkpoint, tmp_path):
    out = tmp_path / "pruned.pt"
    res = _run(tiny_checkpoint, "--kind", "prune", "--amount", "0.7", "--seed", "2", "--out", out)
    assert res.exit_code == 0, res.output
    model, meta = load_checkpoint(out)
    params = dict(model.named_parameters())
    zeros = sum(int((params[n] == 0).sum()) for n in maskable_weights(model))
    total = sum(params[n].numel() for n in maskable_weights(model))
    assert zeros / total == pytest.approx(0.7, abs=0.002)
    _, original = load_checkpoint(tiny_checkpoint)
    assert meta.extra["attack"] == "prune" and meta.extra["attack_seed"] == "2"
    assert json.loads(meta.extra["attack_config"])["amount"] == 0.7
    assert meta.extra["attacked_from_sha256"] == original.weights_sha256
    assert json.loads(meta.extra["attacked_from_extra"]) == original.extra


def test_ftll_with_data_and_json_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "ftll.pt"
    res = _run(tiny_checkpoint, "--kind", "ftll", "--data", "builtin:mnist", "--n-images", "96",
               "--epochs", "1", "--out", out, "--quiet", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["kind"] == "ftll" and report["n_images"] == 96
    assert report["data"] == "builtin:mnist" and report["config"]["epochs"] == 1
    _, meta = load_checkpoint(out)
    assert meta.weights_sha256 == report["weights_sha256"] and meta.arch == "vgg_tiny"


def test_unknown_kind_lists_valid_kinds_and_exits_2(tiny_checkpoint, tmp_path):
    res = _run(tiny_checkpoint, "--kind", "melt", "--out", tmp_path / "x.pt")
    assert res.exit_code == 2
    assert "unknown attack kind 'melt'" in res.output and "ftal" in res.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "ftal", "--data", "builtin:mnist", "--fraction", "1.5"], "got 1.5"),
        (["--kind", "ftal", "--data", "builtin:mnist", "--fraction", "0"], "got 0.0"),
        (["--kind", "prune", "--amount", "-0.1"], "got -0.1"),
        (["--kind", "ftal"], "attack 'ftal' needs --data"),
        (["--kind", "target-ft"], "attack 'target-ft' needs --data"),
        (["--kind", "ftal", "--data", "builtin:nope"], "nope"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_checkpoint, tmp_path, args, message):
    res = _run(tiny_checkpoint, *args, "--out", tmp_path / "x.pt")
    assert res.exit_code == 2
    assert message in res.output and res.output.startswith("mapguard: error:")
    assert not (tmp_path / "x.pt").exists()


def test_existing_output_needs_force_and_missing_model_is_an_error(tiny_checkpoint, tmp_path):
    out = tmp_path / "q.pt"
    out.write_bytes(b"keep me")
    res = _run(tiny_checkpoint, "--kind", "quantize", "--out", out)
    assert res.exit_code == 2 and out.read_bytes() == b"keep me"
    assert _run(tiny_checkpoint, "--kind", "quantize", "--out", out, "--force").exit_code == 0
    assert load_checkpoint(out)[1].extra["attack"] == "quantize"
    missing = _run(tmp_path / "none.pt", "--kind", "quantize", "--out", tmp_path / "y.pt")
    assert missing.exit_code == 2 and "none.pt" in missing.output


def test_help_lists_every_kind():
    res = CliRunner().invoke(cli, ["attack", "--help"])
    assert res.exit_code == 0
    for kind in ("ftll", "rtal", "fine-prune", "distill-arch", "regrow", "target-ft"):
        assert kind in res.output


def test_wrk_epsilon_adds_the_boundary_branch(tiny_checkpoint, tmp_path):
    out = tmp_path / "wrk.pt"
    res = _run(tiny_checkpoint, "--kind", "wrk", "--data", "builtin:mnist", "--n-images", "40",
               "--epochs", "1", "--epsilon", "0.03", "--out", out, "--quiet", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["config"]["epsilon"] == 0.03 and report["details"]["epsilon"] == 0.03
    assert report["details"]["boundary_samples"] > 0
    assert json.loads(load_checkpoint(out)[1].extra["attack_config"])["epsilon"] == 0.03


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_wrk_bad_epsilon_exits_2_in_one_line(tiny_checkpoint, tmp_path, value):
    res = _run(tiny_checkpoint, "--kind", "wrk", "--data", "builtin:mnist", "--epsilon", value,
               "--out", tmp_path / "x.pt")  # fmt: skip
    assert res.exit_code == 2
    assert res.output.startswith("mapguard: error:") and "epsilon" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()
