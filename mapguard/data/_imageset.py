"""The :class:`ImageSet` value: labelled square RGB images of one split of one data source."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mapguard._errors import DataError

__all__ = ["SIDE", "ImageSet", "stable_rng", "stratified_test_mask"]

#: The default image side (pixels); every other side is asked for with ``size=``.
SIDE = 32


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Labelled images of one split, as stored: uint8 pixels, int64 labels.

    Attributes:
        name: where the data came from, e.g. ``"builtin:mnist"`` or a folder path.
        split: ``"train"``, ``"test"`` or ``"all"``.
        images: uint8 ``[N, 3, S, S]``, ``S`` the side (32 unless loaded with ``size=``).
        labels: int64 ``[N]``, indices into ``classes``.
        classes: class names; ``("0", ..., "9")`` for the built-in domains.

    Equality is identity (tensors have no single truth value); compare ``images`` and ``labels``
    with :func:`torch.equal`.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        imgs, labels = self.images, self.labels
        if (
            imgs.dtype != torch.uint8
            or imgs.ndim != 4
            or imgs.shape[1] != 3
            or imgs.shape[2] != imgs.shape[3]
            or imgs.shape[2] < 1
        ):
            raise DataError(
                f"images of '{self.name}' must be uint8 [N, 3, S, S] (square), "
                f"got {imgs.dtype} {list(imgs.shape)}"
            )
        if labels.dtype != torch.int64 or tuple(labels.shape) != (imgs.shape[0],):
            raise DataError(
                f"labels of '{self.name}' must be int64 [{imgs.shape[0]}], "
                f"got {labels.dtype} {list(labels.shape)}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DataError(
                f"labels of '{self.name}' must lie in 0..{len(self.classes) - 1}, "
                f"got {int(labels.min())}..{int(labels.max())}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"classes={len(self.classes)})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def side(self) -> int:
        """Image side ``S`` in pixels (images are ``[N, 3, S, S]``)."""
        return int(self.images.shape[-1])

    def floats(self) -> torch.Tensor:
        """Pixels as float32 ``[N, 3, S, S]`` in ``[0, 1]`` (the project's pixel convention)."""
        return self.images.to(torch.float32).div_(255.0)

    def subset(self, idx: torch.Tensor | Sequence[int] | np.ndarray) -> ImageSet:
        """The images at ``idx`` (integer indices or a boolean mask), in that order."""
        index = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
        if index.dtype != torch.bool:
            index = index.to(torch.int64)
        return ImageSet(
            name=self.name,
            split=self.split,
            images=self.images[index].contiguous(),
            labels=self.labels[index].contiguous(),
            classes=self.classes,
        )

    def take(self, n: int, *, seed: int) -> ImageSet:
        """A deterministic random subset of ``n`` images with class proportions kept.

        Every class contributes about ``n * share`` images; the result keeps the original order.

        Raises:
            DataError: ``n`` is not an integer in ``1..len(self)``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(self):
            raise DataError(f"cannot take n={n!r} images from '{self.name}' ({len(self)} images)")
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        keys = np.empty(len(labels), dtype=np.float64)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            ranks = rng.permutation(len(members)) + rng.random(len(members))
            keys[members] = ranks / len(members)
        chosen = np.sort(np.argsort(keys, kind="stable")[:n])
        return self.subset(torch.from_numpy(chosen))


def stable_rng(seed: int, *tags: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and string tags, stable across runs and platforms.

    Tags are hashed with SHA-256 (Python's ``hash()`` is salted per process).
    """
    words = [int(seed)]
    for tag in tags:
        words.append(int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little"))
    return np.random.default_rng(np.random.SeedSequence(words))


def stratified_test_mask(
    labels: np.ndarray, rng: np.random.Generator, *, test_fraction: float = 0.2
) -> np.ndarray:
    """Boolean mask holding out ``round(test_fraction * n_c)`` random images of every class c."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        mask[rng.permutation(members)[:n_test]] = True
    return mask
