"""ImageFolder symbolic links: loops are walked once, no image is listed twice, walks are bounded.

Found by probing (issue 11): a self-link in a class folder listed each image ~40 times across both
the train and the test split (inflating test accuracy), and two links to the parent made
``mapguard train`` hang at 2 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mapguard._cli import cli
from mapguard.data import _folder, load_data

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
ROOT = Path(__file__).resolve().parents[2]


def _write_images(folder: Path, label: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.full((32, 32, 3), 60 * label, dtype=np.uint8)
        pixels[:8] = 5 * i + 1  # a top band makes every image unique
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """10 distinct images in each of a/, b/, c/ (b's in a sub-folder)."""
    root = tmp_path / "data"
    _write_images(root / "a", 0, 10)
    _write_images(root / "b" / "sub", 1, 10)
    _write_images(root / "c", 2, 10)
    return root


def _keys(images: torch.Tensor) -> list[bytes]:
    return [img.numpy().tobytes() for img in images]


def test_self_links_list_every_image_once_and_keep_the_split_disjoint(flat: Path) -> None:
    before = {s: load_data(flat, split=s, progress=False) for s in ("all", "train", "test")}
    os.symlink(".", flat / "a" / "loop")  # a/loop -> a
    os.symlink("..", flat / "b" / "sub" / "back")  # b/sub/back -> b
    os.symlink("img000.png", flat / "c" / "dup.png")  # the same file under a second name
    after = {s: load_data(flat, split=s, progress=False) for s in ("all", "train", "test")}
    assert torch.bincount(after["all"].labels).tolist() == [10, 10, 10]
    for split in ("all", "train", "test"):  # the very same images, in the same order
        assert torch.equal(after[split].images, before[split].images)
    assert len(after["train"]) == 24 and len(after["test"]) == 6
    assert not set(_keys(after["train"].images)) & set(_keys(after["test"].images))
    assert len(set(_keys(after["all"].images))) == 30


def test_links_into_other_folders_are_not_walked(flat: Path) -> None:
    os.symlink("..", flat / "a" / "up")  # the data root: would list b/ and c/ as class a
    os.symlink("../c", flat / "b" / "sideways")  # another class folder
    os.symlink("../../..", flat / "c" / "way-up")  # above the data root
    every = load_data(flat, split="all", progress=False)
    assert torch.bincount(every.labels).tolist() == [10, 10, 10]


def test_fixed_split_cannot_pull_test_images_into_train(tmp_path: Path) -> None:
    root = tmp_path / "split"
    for label, cls in enumerate("ab"):
        _write_images(root / "train" / cls, label, 8)
        _write_images(root / "test" / cls / "t", label + 2, 3)
    os.symlink("../../test/a", root / "train" / "a" / "leak")
    os.symlink("../..", root / "test" / "b" / "t" / "loop")  # test/b/t/loop -> test/
    train = load_data(root, split="train", progress=False)
    test = load_data(root, split="test", progress=False)
    assert len(train) == 16 and len(test) == 6
    assert not set(_keys(train.images)) & set(_keys(test.images))


def test_two_links_to_the_parent_do_not_hang_train(flat: Path, tmp_path: Path) -> None:
    """The probe's folder, through the real CLI in a child process (a hang fails the timeout)."""
    os.symlink("..", flat / "a" / "up1")
    os.symlink("..", flat / "a" / "up2")
    os.symlink("..", flat / "b" / "sub" / "up")
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(flat), "--arch", "vgg_tiny", "--epochs", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "mapguard", *args, "--out", str(out), "--quiet", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["out"] == str(out) and out.is_file()


def test_too_many_images_is_one_clear_error(flat: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_folder, "MAX_FILES", 25)  # the limit, not the walk, is made small
    result = CliRunner().invoke(
        cli, ["train", "--data", str(flat), "--out", str(tmp_path / "m.pt"), "--quiet"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "more than 25 images" in lines[0] and str(flat) in lines[0], lines
    assert not (tmp_path / "m.pt").exists()


def test_too_many_folders_is_one_clear_error(flat: Path, tmp_path: Path, monkeypatch) -> None:
    deep = flat / "c"
    for i in range(12):
        deep = deep / f"d{i}"
        deep.mkdir()
    monkeypatch.setattr(_folder, "MAX_DIRS", 10)
    result = CliRunner().invoke(
        cli, ["train", "--data", str(flat), "--out", str(tmp_path / "m.pt"), "--quiet"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "more than 10 sub-folders" in lines[0], lines
