"""Fixtures of the protection-method tests: MNIST-M subsets (the tiny model gets ~40% on them)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnistm_small():
    """(train, test) ImageSets: 600 / 400 MNIST-M digits."""
    from mapguard.data import load_data

    train = load_data("builtin:mnistm", split="train", progress=False).take(600, seed=0)
    test = load_data("builtin:mnistm", split="test", progress=False).take(400, seed=0)
    return train, test


@pytest.fixture(scope="session")
def run_method():
    """``run(method, model, source, target, **options)``: a registered method's output on the
    tiny model (seed 0, no progress bar; ``options`` include the budget)."""
    from mapguard.checkpoint import ModelMeta
    from mapguard.methods import MethodInputs, get_method

    def run(method, model, source, target, **options):  # noqa: ANN001, ANN202
        inputs = MethodInputs(model=model, meta=ModelMeta(arch="vgg_tiny"), source=source,
                              targets=(target,), options=options, seed=0,
                              progress=False)  # fmt: skip
        return get_method(method).run(inputs)

    return run


@pytest.fixture
def protect_refusal(tiny_checkpoint, tmp_path):
    """``check(method, option, needle)``: ``mapguard protect --method METHOD -o OPTION`` exits 2
    with one line naming ``needle`` and writes nothing."""
    from click.testing import CliRunner

    from mapguard._cli import cli

    def check(method: str, option: str, needle: str) -> None:
        out = tmp_path / "p.pt"
        res = CliRunner().invoke(cli, ["protect", str(tiny_checkpoint), "--source",
                                       "builtin:mnist", "--target", "builtin:mnistm", "--method",
                                       method, "--out", str(out), "-o", option, "--quiet"],
                                 catch_exceptions=False)  # fmt: skip
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mapguard: error:"), lines
        assert needle in lines[0], lines
        assert not out.exists()

    return check


@pytest.fixture(scope="session")
def against_map(run_method, tiny_model, mnist_small, mnistm_small):
    """``pair(method, **options)``: ``{"map": ..., method: ...}``, the tiny model protected by MAP
    and by ``method`` with the same seed and options (MNIST kept, MNIST-M degraded)."""

    def pair(method: str, **options):  # noqa: ANN202
        return {m: run_method(m, tiny_model, mnist_small[0], mnistm_small[0], **options)
                for m in ("map", method)}  # fmt: skip

    return pair


@pytest.fixture(scope="session")
def after_target_ft(mnistm_small):
    """``accuracy(model)`` on the MNIST-M test subset after the ``target-ft`` thief: 10 SGD steps
    (lr 0.01) on 100 labelled MNIST-M training images, seed 0."""
    from mapguard.attacks import AttackConfig, attack
    from mapguard.training import accuracy

    def after(model) -> float:  # noqa: ANN001
        cfg = AttackConfig(n_images=100, epochs=10, lr=0.01)
        tuned, _ = attack(model, "target-ft", data=mnistm_small[0], config=cfg, seed=0)
        return accuracy(tuned, mnistm_small[1])

    return after
