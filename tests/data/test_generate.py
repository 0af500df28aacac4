"""make_folder_benchmark: the expected ImageFolder trees, byte-identical for the same arguments."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mapguard._errors import DataError
from mapguard.data import load_data, make_folder_benchmark
from mapguard.data._generate import DIGIT_DOMAINS, PHOTO_VARIANTS, PHOTOGRAPHS
from mapguard.data.make_benchmark import main

PHOTO_CLASSES = sorted(Path(rel).stem for _, rel in PHOTOGRAPHS)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return make_folder_benchmark(tmp_path_factory.mktemp("b") / "bench", size=64, per_class=4)


def test_tree_layout_and_manifest(bench) -> None:
    root = bench.root
    assert sorted(p.name for p in (root / "digits").iterdir()) == sorted(DIGIT_DOMAINS)
    assert sorted(p.name for p in (root / "photos").iterdir()) == sorted(PHOTO_VARIANTS)
    for folder in [*bench.digits.values(), *bench.photos.values()]:
        classes = sorted(p.name for p in folder.iterdir())
        expected = [str(d) for d in range(10)] if "digits" in folder.parts else PHOTO_CLASSES
        assert classes == expected, folder
        for cls in classes:
            files = sorted((folder / cls).glob("*.png"))
            assert [f.name for f in files] == [f"{i:05d}.png" for i in range(4)]
            with Image.open(files[0]) as im:
                assert im.size == (64, 64) and im.mode == "RGB"
    manifest = json.loads((root / "benchmark.json").read_text())
    assert (manifest["size"], manifest["per_class"], manifest["seed"]) == (64, 4, 0)
    assert sorted(manifest["photo_classes"]) == PHOTO_CLASSES


def test_trees_load_and_variants_differ(bench) -> None:
    photo = load_data(bench.photos["photo"], split="all", size=64, progress=False)
    assert photo.images.shape == (40, 3, 64, 64) and tuple(photo.classes) == tuple(PHOTO_CLASSES)
    grey = load_data(bench.photos["grey"], split="all", size=64, progress=False).images
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    sketch = load_data(bench.photos["sketch"], split="all", size=64, progress=False).images
    assert sketch.float().mean() > 150  # mostly white paper, dark edges
    shifted = load_data(bench.photos["colourshift"], split="all", size=64, progress=False)
    assert shifted.images.float().std() > 20
    digits = load_data(bench.digits["svhnlike"], split="all", size=32, progress=False)
    assert digits.images.shape == (40, 3, 32, 32)  # read at 64, resized on load


def test_same_arguments_same_bytes(bench, tmp_path: Path) -> None:
    again = make_folder_benchmark(tmp_path / "again", size=64, per_class=4)
    assert _digest(again.root) == _digest(bench.root)
    other = make_folder_benchmark(tmp_path / "other", size=64, per_class=4, seed=1)
    assert _digest(other.root) != _digest(bench.root)


def test_real_digits_are_distinct(bench) -> None:
    for domain in ("mnist", "optdigits"):
        data = load_data(bench.digits[domain], split="all", size=64, progress=False)
        keys = {img.numpy().tobytes() for img in data.images}
        assert len(keys) == 40 and np.asarray(data.images).std() > 20


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="per_class must be in 1..10000, got 0"):
        make_folder_benchmark(tmp_path / "x", per_class=0)
    with pytest.raises(DataError, match="per_class=300 is more than the 174 optdigits digits"):
        make_folder_benchmark(tmp_path / "x", size=8, per_class=300)
    assert not (tmp_path / "x").exists()  # nothing left behind


def test_command_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main([str(out), "--size", "16", "--per-class", "1"]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "benchmark.json").is_file()
    assert main([str(out), "--size", "16", "--per-class", "1"]) == 2  # exists, no --force
    assert capsys.readouterr().err.startswith("make_benchmark: error:")
    assert main([str(out), "--size", "16", "--per-class", "1", "--force"]) == 0
