"""Folder data streamed by ``protect``, ``train`` and ``evaluate`` (issue 14 item 4): nothing
materialises a folder split, and results do not depend on ``--workers``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mapguard.data import FolderDataset, load_data, load_or_stream, open_data
from mapguard.models import create_model
from mapguard.training import accuracy, train_model

ARCH = "test_only_64px"  # registered in conftest: refuses any side but 64
QUICK = ["--epochs", "1", "--batch-size", "8", "-o", "max_steps_per_epoch=2", "--quiet", "--json"]


def run(*args) -> dict:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def model3(tmp_path_factory):
    """An untrained 3-class 64-pixel checkpoint (the classes of ``folders_64``)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m3") / "m.pt"
    meta = ModelMeta(arch=ARCH, num_classes=3, classes=("cat", "dog", "owl"),
                     input_size=(3, 64, 64))  # fmt: skip
    save_checkpoint(create_model(ARCH, num_classes=3).eval(), meta, path)
    return path


@pytest.fixture
def no_folder_in_memory(monkeypatch):
    """Make holding a whole folder split in memory an error."""

    def refuse(*args, **kwargs):
        raise AssertionError("a folder split was loaded into memory")

    monkeypatch.setattr("mapguard.data._load.load_folder", refuse)


def test_folders_stream_and_builtins_stay_in_memory(folders_64) -> None:
    assert isinstance(load_or_stream(folders_64["src"], split="test", size=64), FolderDataset)
    held = load_or_stream("builtin:optdigits", split="test", size=16, progress=False)
    assert torch.equal(held.images, load_data("builtin:optdigits", split="test", size=16).images)


def test_streamed_accuracy_equals_in_memory_accuracy(folders_64) -> None:
    torch.manual_seed(0)
    model = create_model(ARCH, num_classes=3).eval()
    held = load_data(folders_64["src"], split="all", size=64, progress=False)
    stream = open_data(folders_64["src"], split="all", size=64)
    expected = accuracy(model, held)
    assert accuracy(model, stream, batch_size=5) == expected
    assert accuracy(model, stream, workers=2, batch_size=7) == expected


def test_training_on_a_folder_does_not_depend_on_workers(folders_64) -> None:
    data = open_data(folders_64["src"], split="train", size=64)  # 24 images: 3 batches of 8
    weights = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = train_model(create_model(ARCH, num_classes=3), data, epochs=2, batch_size=8,
                            seed=3, progress=False, workers=workers)  # fmt: skip
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("method", ["map", "ntl"])
def test_protect_streams_a_folder_and_workers_do_not_matter(
    method, model3, folders_64, tmp_path, no_folder_in_memory
) -> None:
    reports = []
    for workers in (0, 2):
        out = tmp_path / f"p{workers}.pt"
        reports.append(run("protect", model3, "--source", folders_64["src"], "--target",
                           folders_64["tgt"], "--method", method, "--out", out, "--workers",
                           workers, "--seed", "5", *QUICK))  # fmt: skip
        reports[-1]["weights"] = load_checkpoint(out)[1].weights_sha256
    a, b = reports
    assert a["metrics"] == b["metrics"] and a["weights"] == b["weights"]
    assert a["mask_sha256"] == b["mask_sha256"] and (method == "ntl") == (a["mask_sha256"] is None)


def test_train_and_evaluate_stream_and_agree(model3, folders_64, tmp_path, no_folder_in_memory):
    src, tgt = folders_64["src"], folders_64["tgt"]
    train = ["train", "--data", src, "--arch", ARCH, "--size", "64", "--epochs", "1",
             "--batch-size", "8", "--quiet", "--json"]  # fmt: skip
    trained = [run(*train, "--out", tmp_path / f"m{w}.pt", "--workers", w) for w in (0, 2)]
    assert trained[0]["weights_sha256"] == trained[1]["weights_sha256"]
    evaluate = ["evaluate", model3, "--data", src, "--data", tgt, "--reference",
                tmp_path / "m0.pt", "--source", src, "--quiet", "--json"]  # fmt: skip
    reports = [run(*evaluate, "--workers", w) for w in (0, 2)]
    assert reports[0] == reports[1] and set(reports[0]["accuracy"]) == {str(src), str(tgt)}


def test_a_copied_folder_is_still_the_same_images(model3, folders_64, tmp_path) -> None:
    copy = shutil.copytree(folders_64["src"], tmp_path / "copy")
    args = ["protect", model3, "--source", folders_64["src"], "--target", copy, "--out",
            tmp_path / "p.pt"]  # fmt: skip
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 2 and "hold the same images" in r.output


def test_negative_workers_are_refused(model3, folders_64, tmp_path) -> None:
    r = CliRunner().invoke(cli, ["evaluate", str(model3), "--data", str(folders_64["src"]),
                                 "--workers", "-1"])  # fmt: skip
    assert r.exit_code == 2 and "--workers" in r.output
