"""``mapguard train`` on real data (then evaluated), and every bad-input case exits 2."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from mapguard._cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_train_then_evaluate_real_data(tmp_path) -> None:
    out = tmp_path / "m.pt"
    r = run(
        "train",
        "--data",
        "builtin:optdigits",
        "--arch",
        "vgg_tiny",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--json",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["test_accuracy"] > 0.3  # chance is 0.1; 2 epochs on 1.4k digits
    r = run(
        "evaluate",
        str(out),
        "--data",
        "builtin:optdigits",
        "--data",
        "builtin:mnist",
        "--quiet",
        "--json",
    )
    assert r.exit_code == 0, r.output
    acc = json.loads(r.output)["accuracy"]
    assert abs(acc["builtin:optdigits"]["accuracy"] - summary["test_accuracy"]) < 1e-9


def _assert_clean_failure(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("mapguard: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_unwritable_output_leaves_nothing(tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions do not bind
            r = run("train", "--data", "builtin:optdigits", "--out", str(tmp_path / "no" / "m.pt"))
            _assert_clean_failure(r, "does not exist")
        else:
            r = run("train", "--data", "builtin:optdigits", "--out", str(ro / "m.pt"))
            _assert_clean_failure(r, "not writable")
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, stat.S_IRWXU)


def test_existing_output_needs_force(tiny_checkpoint) -> None:
    r = run("train", "--data", "builtin:optdigits", "--out", str(tiny_checkpoint))
    _assert_clean_failure(r, "--force")


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--lr", "-1"]])
def test_bad_training_options(bad, tmp_path) -> None:
    r = run("train", "--data", "builtin:optdigits", "--out", str(tmp_path / "m.pt"), *bad)
    _assert_clean_failure(r)
    assert not (tmp_path / "m.pt").exists()
