"""``DatasetSource``: the mask learner's batches drawn from a ``Dataset`` through a DataLoader.

A :class:`~mapguard.masking.BatchSource` like :class:`~mapguard.masking.TensorSource`, with the
same order (``torch.randperm`` from ``seed * 1_000_003 + epoch``), the same number of steps and
the same per-rank slicing, but the images are decoded by ``workers`` processes as they are
needed: a folder too large for memory can be learned from. Every rank decodes only its own
share of each global batch.

Imported lazily by :mod:`mapguard.data` (``mapguard.masking`` itself imports the data package).

Example:
    >>> from mapguard.data import DatasetSource, load_data
    >>> from mapguard.data._dataset import ImageSetDataset
    >>> data = ImageSetDataset(load_data("builtin:optdigits", split="test", progress=False))
    >>> src = DatasetSource(data, seed=0, name="keep")
    >>> [tuple(b.x.shape) for b in src.batches(epoch=0, batch_size=128)][:2]
    [(128, 3, 32, 32), (128, 3, 32, 32)]
    >>> src.steps_per_epoch(128)
    2
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from mapguard._errors import ConfigError
from mapguard.masking._sources import Batch, BatchSource, epoch_order

__all__ = ["DatasetSource"]


class DatasetSource(BatchSource):
    """Batches of ``(x, label)`` items of ``dataset``, reshuffled each epoch from ``seed``.

    Args:
        dataset: a sized ``Dataset`` of ``(float [3, S, S], int)`` items, e.g. from
            :func:`~mapguard.data.open_data`.
        seed: the shuffling seed (with the epoch).
        name: for messages; defaults to the dataset's ``name`` attribute.
        workers: DataLoader worker processes (0: decode in this process).
        labelled: False to drop the labels (the learner then uses the teacher's logits).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int = 0,
        name: str | None = None,
        workers: int = 0,
        labelled: bool = True,
    ) -> None:
        self.name = name or str(getattr(dataset, "name", "dataset"))
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ConfigError(f"source '{self.name}' needs a non-empty dataset")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"source '{self.name}': workers must be >= 0, got {workers!r}")
        self.dataset, self.seed, self.workers, self.labelled = dataset, seed, workers, labelled

    @property
    def y(self) -> torch.Tensor | None:
        """The dataset's labels, or None for an unlabelled source (what the learner checks)."""
        return getattr(self.dataset, "labels", None) if self.labelled else None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        order, _, share = epoch_order(len(self), seed=self.seed, epoch=epoch,
                                      batch_size=batch_size, world_size=world_size)  # fmt: skip
        starts = range(0, self.steps_per_epoch(batch_size) * batch_size, batch_size)
        mine = [order[s + rank * share : s + (rank + 1) * share].tolist() for s in starts]
        loader = DataLoader(self.dataset, batch_sampler=mine, num_workers=self.workers)
        for x, y in loader:
            yield Batch(x, y.to(torch.int64) if self.labelled else None)

    def __repr__(self) -> str:
        return f"DatasetSource({self.name!r}, n={len(self)}, workers={self.workers})"
