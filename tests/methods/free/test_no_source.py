"""SF-MAP / DF-MAP never read source training images: ``--source`` is optional, and when given
only its test split is read (to measure the drop); MAP and NTL still require it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mapguard._cli import cli
from mapguard.data import load_data

QUICK = [
    "-o", "n_pseudo=20", "-o", "synthesis_steps=3", "-o", "synthesis_batch_size=20",
    "-o", "steps_per_epoch=2", "--epochs", "2", "--batch-size", "16",
    "-o", "restyle=16", "-o", "restyle_steps=3",  # the default 200 x 100 steps: minutes here
]  # fmt: skip


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def broken_source(tmp_path_factory):
    """An MNIST folder (3 test images per digit) whose train images are not images at all: any
    attempt to read its train split fails."""
    root = tmp_path_factory.mktemp("digits") / "mnist"
    test = load_data("builtin:mnist", split="test", progress=False)
    for c in range(10):
        for split in ("train", "test"):
            (root / split / str(c)).mkdir(parents=True)
        for i, r in enumerate(np.nonzero(test.labels.numpy() == c)[0][:3]):
            (root / "train" / str(c) / f"{i}.png").write_bytes(b"this is not a PNG file")
            Image.fromarray(test.images[r].permute(1, 2, 0).numpy()).save(
                root / "test" / str(c) / f"{i}.png"
            )
    return root


def _protect(checkpoint, tmp_path, name, *args):
    metrics = tmp_path / f"{name}.json"
    res = invoke("protect", checkpoint, *args, "--target", "builtin:mnistm", "--method",
                 "sf-map", "--out", tmp_path / f"{name}.pt", "--metrics-out", metrics,
                 *QUICK)  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output, json.loads(metrics.read_text())


def test_sf_map_never_reads_source_training_images(tiny_checkpoint, broken_source, tmp_path):
    with pytest.raises(Exception, match="image|PNG|identify|decode"):  # the train split is bad
        load_data(str(broken_source), split="train", progress=False)
    _, a = _protect(tiny_checkpoint, tmp_path, "with", "--source", broken_source, "--quiet")
    text, b = _protect(tiny_checkpoint, tmp_path, "without")
    assert a["mask_sha256"] == b["mask_sha256"]  # the same run, with or without the source
    ma, mb = a["metrics"], b["metrics"]
    assert ma["source_accuracy"]["before"] == ma["source_before"] > 0.5  # its test split, read
    assert mb["source_accuracy"] is None and mb["source_before"] is None and mb["st_d"] is None
    est = mb["estimated_source_drop"]
    assert est == ma["estimated_source_drop"]
    assert 0.0 <= est["low"] <= est["estimate"] <= est["high"] <= 1.0
    assert mb["targets"] == ma["targets"] and set(mb["others"]) >= {"builtin:optdigits"}
    lines = [line for line in text.splitlines() if line.startswith("sf-map:")]
    assert lines and lines[0].startswith("sf-map: no source data given; estimated source drop")


@pytest.mark.parametrize("method", ["map", "ntl"])
def test_methods_that_read_the_source_still_require_it(tiny_checkpoint, tmp_path, method):
    res = invoke("protect", tiny_checkpoint, "--target", "builtin:mnistm", "--method", method,
                 "--out", tmp_path / "p.pt", *QUICK)  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapguard: error:"), lines
    assert f"method '{method}' needs --source" in lines[0]
    assert list(tmp_path.iterdir()) == []
