"""CLI of the foundation: train / evaluate on real data, and every bad-input case exits 2."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from mapguard import _cli_commands  # noqa: F401  (registers commands)
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


def test_missing_model_file(tmp_path) -> None:
    _assert_clean_failure(
        run("evaluate", str(tmp_path / "nope.pt"), "--data", "builtin:mnist"), "nope.pt"
    )


def test_corrupt_model_file(tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 64)
    _assert_clean_failure(run("evaluate", str(bad), "--data", "builtin:mnist"), "bad.pt")


def test_unknown_builtin(tiny_checkpoint) -> None:
    _assert_clean_failure(run("evaluate", str(tiny_checkpoint), "--data", "builtin:mnst"), "mnst")


def test_wrong_class_count(tiny_checkpoint, tmp_path) -> None:
    from PIL import Image

    for cls in ("a", "b", "c"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    r = run("evaluate", str(tiny_checkpoint), "--data", str(tmp_path / "imgs"), "--split", "all")
    _assert_clean_failure(r, "10 classes", "3")


def test_empty_data_folder(tiny_checkpoint, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    _assert_clean_failure(run("evaluate", str(tiny_checkpoint), "--data", str(tmp_path / "empty")))


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


def test_pickles_are_evaluated_in_the_worker_or_in_process_with_unsafe_load(
    tiny_model, tmp_path
) -> None:
    import torch

    path = tmp_path / "m.pkl"
    torch.save(tiny_model, path)
    args = ("evaluate", str(path), "--data", "builtin:optdigits", "--json", "--quiet")
    isolated = run(*args)
    assert isolated.exit_code == 0, isolated.output
    unsafe = run(*args, "--unsafe-load")
    assert unsafe.exit_code == 0, unsafe.output
    assert json.loads(isolated.output)["accuracy"] == json.loads(unsafe.output)["accuracy"]
    r = run("synthesize", str(path), "--n", "2", "--out", str(tmp_path / "s"))
    _assert_clean_failure(r, "--unsafe-load")


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--lr", "-1"]])
def test_bad_training_options(bad, tmp_path) -> None:
    r = run("train", "--data", "builtin:optdigits", "--out", str(tmp_path / "m.pt"), *bad)
    _assert_clean_failure(r)
    assert not (tmp_path / "m.pt").exists()
