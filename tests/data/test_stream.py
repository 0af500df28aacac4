"""DatasetSource: the mask learner's batches from a Dataset, as TensorSource would give them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mapguard._errors import ConfigError
from mapguard.data import DatasetSource, load_data, open_data
from mapguard.masking import BatchSource, TensorSource


@pytest.fixture
def folder(tmp_path: Path, noise_folder) -> Path:
    return noise_folder(tmp_path / "f", [(30, 40)] * 7, classes=3, seed=2)  # 21 images


@pytest.mark.parametrize("world_size", [1, 2])
def test_batches_equal_tensor_source_batches(folder: Path, world_size: int) -> None:
    held = load_data(folder, split="all", size=24, progress=False)
    stream = DatasetSource(open_data(folder, split="all", size=24), seed=4, name="keep")
    tensors = TensorSource(held.floats(), held.labels, seed=4)
    assert isinstance(stream, BatchSource) and stream.steps_per_epoch(8) == 2 == len(stream) // 8
    for epoch in (0, 1):
        for rank in range(world_size):
            kw = {"epoch": epoch, "batch_size": 8, "rank": rank, "world_size": world_size}
            ours, theirs = list(stream.batches(**kw)), list(tensors.batches(**kw))
            assert len(ours) == len(theirs) == 2
            for a, b in zip(ours, theirs):
                assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.teacher is None


def test_tiny_sets_repeat_and_unlabelled_sources_drop_labels(folder: Path) -> None:
    data = open_data(folder, split="test", size=16)  # 3 images
    src = DatasetSource(data, seed=0, labelled=False, workers=1)
    (batch,) = src.batches(epoch=0, batch_size=8)
    assert batch.x.shape == (8, 3, 16, 16) and batch.y is None and src.y is None
    assert torch.equal(DatasetSource(data).y, data.labels)
    assert src.with_teacher(lambda x: x) is src and "workers=1" in repr(src)


def test_bad_sources_are_refused(folder: Path) -> None:
    data = open_data(folder, split="all", size=16)
    with pytest.raises(ConfigError, match="workers must be >= 0"):
        DatasetSource(data, workers=-1)
    with pytest.raises(ConfigError, match="not divisible by 3 processes"):
        next(DatasetSource(data).batches(epoch=0, batch_size=8, world_size=3))
    with pytest.raises(ConfigError, match="non-empty dataset"):
        DatasetSource(torch.utils.data.TensorDataset(torch.zeros(0, 3, 8, 8)), name="empty")


def test_module_example_runs() -> None:
    import doctest

    from mapguard.data import _dataset, _stream

    for module in (_stream, _dataset):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
