"""open_data / data_loader: same files, order, pixels as load_data; seeded order; bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mapguard._errors import DataError
from mapguard.data import FolderDataset, ImageSetDataset, data_loader, load_data, open_data

MIXED = [(20, 20), (64, 48), (48, 64), (33, 97), (300, 120), (40, 40), (50, 70), (90, 90)]


@pytest.fixture
def mixed(tmp_path: Path, noise_folder) -> Path:
    return noise_folder(tmp_path / "mixed", MIXED, classes=4, seed=1)


@pytest.mark.parametrize("split", ["train", "test", "all"])
@pytest.mark.parametrize("size", [32, 64])
def test_stream_equals_load_data(mixed: Path, split: str, size: int) -> None:
    held = load_data(mixed, split=split, seed=3, size=size, progress=False)
    stream = open_data(mixed, split=split, seed=3, size=size)
    assert isinstance(stream, FolderDataset) and len(stream) == len(held)
    assert stream.classes == held.classes and torch.equal(stream.labels, held.labels)
    floats = held.floats()
    for i in range(len(stream)):
        x, label = stream[i]
        assert x.dtype == torch.float32 and torch.equal(x, floats[i])  # same pixels, bit for bit
        assert label == int(held.labels[i])
    assert torch.equal(stream[-1][0], floats[-1])


def test_stream_keeps_paths_compact_and_picklable(mixed: Path) -> None:
    import pickle

    stream = open_data(mixed, split="all", size=40)
    paths = [stream.path(i) for i in range(len(stream))]
    assert paths == sorted(mixed.glob("*/*.png"))
    again = pickle.loads(pickle.dumps(stream))
    assert torch.equal(again[5][0], stream[5][0]) and "size=40" in repr(stream)
    with pytest.raises(IndexError):
        stream[len(stream)]


def test_builtin_specs_are_served_from_memory() -> None:
    stream = open_data("builtin:optdigits", split="test", size=48, progress=False)
    held = load_data("builtin:optdigits", split="test", size=48, progress=False)
    assert isinstance(stream, ImageSetDataset) and stream.size == 48
    assert torch.equal(stream[3][0], held.floats()[3]) and stream[3][1] == int(held.labels[3])


def _order(loader) -> list[int]:  # noqa: ANN001
    return [int(v) for x, y in loader for v in (x.flatten(1)[:, :4].sum(1) * 1e4).long()]


def test_loader_order_is_seeded_and_independent_of_workers(mixed: Path) -> None:
    data = open_data(mixed, split="all", size=16)
    first = _order(data_loader(data, batch_size=5, seed=7))
    assert first == _order(data_loader(data, batch_size=5, seed=7))
    assert first == _order(data_loader(data, batch_size=5, seed=7, workers=2))
    assert first != _order(data_loader(data, batch_size=5, seed=8))
    loader = data_loader(data, batch_size=5, seed=7)
    epochs = [_order(loader), _order(loader)]  # every pass draws the next permutation
    assert epochs[0] == first and epochs[1] != first and sorted(epochs[1]) == sorted(first)
    plain = data_loader(data, batch_size=32, seed=0, shuffle=False)
    x, y = next(iter(plain))
    assert x.shape == (32, 3, 16, 16) and torch.equal(y, data.labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0, "seed": 0}, "batch size must be a positive integer, got 0"),
        ({"batch_size": 2, "seed": -1}, "seed must be a non-negative integer"),
        ({"batch_size": 2, "seed": 0, "workers": -1}, "workers must be a non-negative integer"),
    ],
)
def test_loader_arguments_are_checked(mixed: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data_loader(open_data(mixed), **kwargs)


def test_open_data_checks_like_load_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image size must be an integer from 8 to 1024"):
        open_data("builtin:mnist", size=4)
    with pytest.raises(DataError, match="does not exist"):
        open_data(str(tmp_path / "none") + "/")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not a png")
    stream = open_data(tmp_path / "bad", split="all")  # listed fine: read when used
    with pytest.raises(DataError, match="cannot read image"):
        stream[0]


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from pathlib import Path
    from PIL import Image
    from mapguard.data import data_loader, open_data

    root, n = Path(sys.argv[1]), int(sys.argv[2])
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for c in range(2):
        (root / str(c)).mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(pixels).save(root / str(c) / f"{i:05d}.png", compress_level=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen = 0
    for x, y in data_loader(open_data(root, split="all", size=96), batch_size=50, seed=0):
        seen += len(y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seen": seen, "growth_kib": after - before}))
    """
)


def _peak_growth(root: Path, n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(root), str(n)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_streaming_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    # Held in memory, 2,000 images of 96x96 are 55 MB of uint8 (221 MB as floats); streamed,
    # the peak is one batch (50 x 3 x 96 x 96 floats = 5.5 MB) whatever the count.
    small = _peak_growth(tmp_path / "small", 200)
    large = _peak_growth(tmp_path / "large", 2000)
    assert (small["seen"], large["seen"]) == (200, 2000)
    assert large["growth_kib"] - small["growth_kib"] < 12 * 1024, (small, large)
