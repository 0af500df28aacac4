"""Streaming data: ``open_data`` gives a torch ``Dataset`` that decodes images one at a time.

An ImageFolder split is listed (same rules, limits, split and order as :func:`load_data`) and
each image is read, resized and centre-cropped in ``__getitem__``, so memory does not grow with
the number of images: only the list of paths is held, packed into one byte string. A built-in
domain is drawn in memory as usual (it is made, not read) and served from its uint8 pixels.

:func:`data_loader` wraps either in a ``DataLoader`` with ``workers`` processes and an order
drawn from ``seed`` (a ``torch.Generator``): the same seed gives the same batches whatever the
number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mapguard._errors import DataError
from mapguard.data._folder import list_folder, read_image
from mapguard.data._imageset import SIDE, ImageSet
from mapguard.data._load import load_data
from mapguard.data._spec import check_seed, check_size, check_split, parse_data_spec

__all__ = ["FolderDataset", "ImageSetDataset", "data_loader", "load_or_stream", "open_data"]

Item = tuple[torch.Tensor, int]


def _to_floats(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[S, S, 3]`` (numpy) or ``[3, S, S]`` (torch) to float32 ``[3, S, S]`` in [0, 1]."""
    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(pixels).permute(2, 0, 1)
    return pixels.to(torch.float32).div_(255.0)  # as ImageSet.floats(): bit-identical pixels


class FolderDataset(Dataset[Item]):
    """One split of an ImageFolder directory, decoded lazily: ``dataset[i] -> (x, label)``.

    ``x`` is float32 ``[3, size, size]`` in ``[0, 1]``, equal to ``load_data(...).floats()[i]``
    for the same spec, split, seed and size. Build it with :func:`open_data`.

    Attributes:
        name, split, classes, size: as the matching :class:`ImageSet` (``size`` its side).
        labels: int64 ``[N]``.
    """

    def __init__(
        self,
        files: Sequence[tuple[Path, int]],
        *,
        name: str,
        split: str,
        classes: tuple[str, ...],
        size: int,
    ) -> None:
        self.name, self.split, self.classes, self.size = name, split, classes, size
        encoded = [os.fsencode(path) for path, _ in files]
        self._paths = b"".join(encoded)  # one object, not N: compact, and cheap to pickle
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.labels = torch.tensor([label for _, label in files], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def side(self) -> int:
        """The image side (as :attr:`ImageSet.side`)."""
        return self.size

    def path(self, index: int) -> Path:
        """The file of image ``index``."""
        start = int(self._ends[index - 1]) if index else 0
        return Path(os.fsdecode(self._paths[start : int(self._ends[index])]))

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        return _to_floats(read_image(self.path(index), self.size)), int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"FolderDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"classes={len(self.classes)}, size={self.size})"
        )


class ImageSetDataset(Dataset[Item]):
    """An in-memory :class:`ImageSet` as a ``Dataset``: ``dataset[i] -> (x, label)``.

    Pixels stay uint8 until an item is taken (a quarter of the memory of ``floats()``).
    """

    def __init__(self, data: ImageSet) -> None:
        self.data = data
        self.name, self.split, self.classes = data.name, data.split, data.classes
        self.size, self.labels = data.side, data.labels

    def __len__(self) -> int:
        return len(self.data)

    @property
    def side(self) -> int:
        """The image side (as :attr:`ImageSet.side`)."""
        return self.size

    def __getitem__(self, index: int) -> Item:
        return _to_floats(self.data.images[index]), int(self.labels[index])

    def __repr__(self) -> str:
        return f"ImageSetDataset({self.data!r}, size={self.size})"


def open_data(
    spec: str | os.PathLike[str],
    *,
    split: str = "train",
    seed: int = 0,
    size: int = SIDE,
    progress: bool = True,
) -> FolderDataset | ImageSetDataset:
    """One split of a data spec as a ``torch.utils.data.Dataset`` of ``(x, label)`` items.

    Folders are streamed (:class:`FolderDataset`: listed now, decoded on access); built-in
    domains are drawn in memory (:class:`ImageSetDataset`). Files, order, split and pixels are
    those of :func:`load_data` with the same arguments.

    Args:
        spec: ``builtin:NAME`` or a path to an ImageFolder directory.
        split: ``"train"``, ``"test"`` or ``"all"``.
        seed: the split of folders without ``train/``/``test/``; the synthetic domains.
        size: image side in pixels (8..1024).
        progress: progress bar while a built-in domain is built for the first time.

    Raises:
        DataError: as :func:`load_data` (bad spec, split, seed or size; empty folder or split).
            An unreadable image is reported when it is read.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for cls in ("a", "b"):
        ...     (root / cls).mkdir()
        ...     for i in range(5):
        ...         Image.new("RGB", (80, 60), (40 * i, 0, 0)).save(root / cls / f"{i}.png")
        >>> data = open_data(root, split="all", size=64)
        >>> x, label = data[7]
        >>> len(data), tuple(x.shape), label
        (10, (3, 64, 64), 1)
    """
    parsed = parse_data_spec(spec)
    check_split(split)
    seed = check_seed(seed)
    size = check_size(size)
    if parsed.path is None:
        return ImageSetDataset(
            load_data(spec, split=split, seed=seed, size=size, progress=progress)
        )
    files, classes = list_folder(parsed.path, name=parsed.name, split=split, seed=seed)
    return FolderDataset(files, name=parsed.name, split=split, classes=classes, size=size)


def load_or_stream(
    spec: str | os.PathLike[str],
    *,
    split: str = "train",
    seed: int = 0,
    size: int = SIDE,
    progress: bool = True,
) -> ImageSet | FolderDataset:
    """A built-in domain held in memory (an :class:`ImageSet`: drawn, small), a folder streamed.

    What the commands read their data with: a built-in spec gives exactly
    :func:`load_data`'s ``ImageSet`` (so their results on built-in data do not change), a folder
    a :class:`FolderDataset` whose images are decoded only when a batch needs them.
    """
    if parse_data_spec(spec).path is None:
        return load_data(spec, split=split, seed=seed, size=size, progress=progress)
    return open_data(spec, split=split, seed=seed, size=size, progress=progress)  # type: ignore[return-value]


def data_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    workers: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` with a deterministic order and ``workers`` processes.

    The order comes from a ``torch.Generator`` seeded with ``seed``: every pass over the loader
    draws the next permutation from it, so a fresh loader with the same seed repeats the same
    sequence of epochs, whatever ``workers`` is. Batches are ``(x [B, 3, S, S], labels [B])``.

    Raises:
        DataError: ``batch_size`` below 1, ``workers`` negative, bad seed.

    Example:
        >>> data = ImageSetDataset(load_data("builtin:optdigits", split="test", progress=False))
        >>> x, y = next(iter(data_loader(data, batch_size=8, seed=0)))
        >>> tuple(x.shape), y.dtype
        ((8, 3, 32, 32), torch.int64)
    """
    seed = check_seed(seed)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"workers must be a non-negative integer, got {workers!r}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
