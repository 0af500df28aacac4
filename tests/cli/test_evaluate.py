"""``mapguard evaluate``: every bad model or data input exits 2 with one line; pickles run
in the isolated worker (or in process with --unsafe-load)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mapguard._cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


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


def test_a_64_pixel_model_is_evaluated_on_64_pixel_data(checkpoint_64, model_64, tiny_checkpoint):
    from mapguard.data import load_data
    from mapguard.training import accuracy

    r = run("evaluate", str(checkpoint_64), "--data", "builtin:optdigits", "--reference",
            str(checkpoint_64), "--json", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)["accuracy"]["builtin:optdigits"]
    test = load_data("builtin:optdigits", split="test", progress=False, size=64)
    assert row["accuracy"] == row["reference_accuracy"] == accuracy(model_64, test)
    r = run("evaluate", str(checkpoint_64), "--data", "builtin:optdigits", "--reference",
            str(tiny_checkpoint))  # fmt: skip
    _assert_clean_failure(r, "takes 32x32 images, the model 64x64")
