"""``load_data``: one entry point for built-in domains and ImageFolder directories."""

from __future__ import annotations

import os

import numpy as np
import torch

from mapguard._errors import DataError
from mapguard._progress import progress_bar
from mapguard.data import _cache
from mapguard.data._folder import load_folder
from mapguard.data._imageset import SIDE, ImageSet, stable_rng
from mapguard.data._registry import Built, Domain, get_domain
from mapguard.data._resize import resize_array
from mapguard.data._spec import (
    BUILTIN_PREFIX,
    check_seed,
    check_size,
    check_split,
    parse_data_spec,
)

__all__ = ["DIGIT_CLASSES", "load_data"]

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def load_data(
    spec: str | os.PathLike[str],
    *,
    split: str = "train",
    seed: int = 0,
    progress: bool = True,
    size: int = SIDE,
) -> ImageSet:
    """Load one split of a built-in domain or of an ImageFolder directory, held in memory.

    For folders too large for memory use :func:`~mapguard.data.open_data` (same files, order
    and pixels, decoded one at a time).

    Args:
        spec: ``builtin:NAME`` (see :func:`list_domains`) or a path to an ImageFolder directory.
        split: ``"train"``, ``"test"`` or ``"all"``.
        seed: draws the synthetic domains and the split of folders without ``train/``/``test/``;
            the real domains (mnist, optdigits) and their splits do not depend on it.
        progress: show a progress bar (stderr) while a domain is built for the first time.
        size: image side ``S`` in pixels (8..1024). Built-in domains are drawn at that side;
            folder images are resized (shorter side, bilinear, antialiased) and centre-cropped.

    Returns:
        The split as an :class:`ImageSet` of uint8 ``[N, 3, size, size]`` images.

    Raises:
        DataError: unknown domain, missing or empty folder, unreadable image, bad split, seed
            or size.
    """
    parsed = parse_data_spec(spec)
    check_split(split)
    seed = check_seed(seed)
    size = check_size(size)
    if parsed.path is not None:
        return load_folder(
            parsed.path, name=parsed.name, split=split, seed=seed, progress=progress, size=size
        )
    domain = get_domain(parsed.name)
    return _load_builtin(domain, split=split, seed=seed, progress=progress, size=size)


def _load_builtin(
    domain: Domain, *, split: str, seed: int, progress: bool, size: int = SIDE
) -> ImageSet:
    seed = seed if domain.seeded else 0
    path = _cache.cache_file(domain.name, seed if domain.seeded else None, size)
    built = _cache.read(path, size)
    if built is None:
        built = _build(domain, seed, progress=progress, size=size)
        _cache.write(path, built)
    keep = np.ones_like(built.is_test) if split == "all" else built.is_test == (split == "test")
    images = torch.from_numpy(np.ascontiguousarray(built.images[keep])).permute(0, 3, 1, 2)
    return ImageSet(
        name=f"{BUILTIN_PREFIX}{domain.name}",
        split=split,
        images=images.contiguous(),
        labels=torch.from_numpy(built.labels[keep].copy()),
        classes=DIGIT_CLASSES,
    )


def _build(domain: Domain, seed: int, *, progress: bool, size: int = SIDE) -> Built:
    rng = stable_rng(seed, domain.name)
    what = f"building {BUILTIN_PREFIX}{domain.name}" + ("" if size == SIDE else f" at {size}px")
    with progress_bar(what, total=domain.size, enabled=progress) as bar:
        if domain.any_side:
            built = domain.build(rng, bar.advance, size)
        else:
            built = domain.build(rng, bar.advance)
    _check_built(domain.name, built, SIDE if not domain.any_side else size)
    if size != SIDE and not domain.any_side:
        images = np.stack([resize_array(img, size) for img in built.images])
        built = Built(images=images, labels=built.labels, is_test=built.is_test)
    return built


def _check_built(name: str, built: Built, side: int) -> None:
    n = len(built.labels)
    if (
        built.images.dtype != np.uint8
        or built.images.shape != (n, side, side, 3)
        or built.labels.dtype != np.int64
        or built.is_test.shape != (n,)
        or built.is_test.dtype != np.bool_
    ):
        raise DataError(
            f"domain '{name}' built images {built.images.dtype} {list(built.images.shape)}, "
            f"labels {built.labels.dtype}, is_test {built.is_test.dtype}; expected uint8 "
            f"[N, {side}, {side}, 3], int64 [N], bool [N]"
        )
