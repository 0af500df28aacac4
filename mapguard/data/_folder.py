"""User data in torchvision ``ImageFolder`` layout: one sub-folder per class.

``root/<class>/**/<image>`` with class names sorted (their index is the label), or
``root/train/<class>/...`` plus ``root/test/<class>/...`` for a split fixed by the user. Without
``train/`` and ``test/`` the split is a stratified 80/20 one drawn from the seed. Images are read
with PIL, converted to RGB and resized to 32x32 (bilinear with antialiasing).

Symbolic links are followed, but every real directory is walked once: a link to a folder already
walked, to a class folder or to one that holds the data (``cat/loop -> .``, ``cat/up -> ..``) is
skipped. Every real file is listed once per class, so a link can neither loop nor put the same
image into both splits. At most :data:`MAX_FILES` images and :data:`MAX_DIRS` directories.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mapguard._errors import DataError
from mapguard._progress import progress_bar
from mapguard.data._imageset import SIDE, ImageSet, stable_rng, stratified_test_mask
from mapguard.data._resize import resize_crop

__all__ = [
    "IMG_EXTENSIONS",
    "MAX_DIRS",
    "MAX_FILES",
    "TEST_FRACTION",
    "list_folder",
    "load_folder",
    "read_image",
]

#: torchvision's ImageFolder extensions (matched case-insensitively).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEST_FRACTION = 0.2
#: Listing limits: 1,000,000 images are ~3 GB as 32x32 RGB (load_data holds them; open_data
#: streams them); a walk that meets more directories has most likely been led astray by a link
#: (to ``/``, say).
MAX_FILES = 1_000_000
MAX_DIRS = 100_000
_Files = list[tuple[Path, int]]
_DirIds = set[tuple[int, int]]


def load_folder(
    root: Path, *, name: str, split: str, seed: int, progress: bool, size: int = SIDE
) -> ImageSet:
    """Load split ``split`` of the ImageFolder at ``root`` (``name`` labels the result)."""
    files, classes = list_folder(root, name=name, split=split, seed=seed)
    images = _read_images([p for p, _ in files], name=name, progress=progress, size=size)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSet(name=name, split=split, images=images, labels=labels, classes=classes)


def list_folder(
    root: Path, *, name: str, split: str, seed: int
) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """``([(file, label), ...], classes)`` of split ``split``, in the order load_folder reads.

    Raises:
        DataError: no class folders, a class without images, too many files, an empty split.
    """
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        extra = sorted(set(_class_names(root / "test")) - set(classes))
        if extra:
            raise DataError(f"test classes {extra} of '{name}' have no folder in train/")
        seen = _dir_ids(*_root_and_up(root), root / "train", root / "test")
        seen |= _dir_ids(*(root / part / c for part in ("train", "test") for c in classes))
        parts = {
            "train": _list_files(root / "train", classes, seen=seen),
            "test": _list_files(root / "test", classes, every_class=False, seen=seen),
        }
        files = parts["train"] + parts["test"] if split == "all" else parts[split]
    else:
        classes = _class_names(root)
        seen = _dir_ids(*_root_and_up(root), *(root / c for c in classes))
        every = _list_files(root, classes, seen=seen)
        labels = np.array([label for _, label in every], dtype=np.int64)
        is_test = stratified_test_mask(
            labels, stable_rng(seed, "folder:split"), test_fraction=TEST_FRACTION
        )
        keep = np.ones_like(is_test) if split == "all" else is_test == (split == "test")
        files = [f for f, k in zip(every, keep) if k]
    if not files:
        raise DataError(
            f"split '{split}' of data folder '{name}' is empty; add images or provide "
            "train/ and test/ sub-folders"
        )
    return files, classes


def _class_names(root: Path) -> tuple[str, ...]:
    classes = tuple(
        sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    )
    if not classes:
        raise DataError(f"data folder '{root}' has no class sub-folders (expected <class>/<image>)")
    return classes


def _list_files(
    root: Path, classes: tuple[str, ...], *, seen: _DirIds, every_class: bool = True
) -> _Files:
    """Image files of the classes under ``root``, sorted; with ``every_class`` none may lack.

    ``seen`` holds the real directories already walked or not to be entered (the data root and
    every class folder); the walk adds to it.
    """
    files: _Files = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not every_class and not folder.is_dir():
            continue
        found = _image_files(folder, seen, listed=len(files))
        if not found and every_class:
            raise DataError(
                f"class folder '{folder}' contains no images ({', '.join(IMG_EXTENSIONS)})"
            )
        files.extend((p, label) for p in found)
    return files


def _root_and_up(root: Path) -> list[Path]:
    """The data root and every folder above it: a link to any of them leads back into the data."""
    real = Path(os.path.realpath(root))
    return [real, *real.parents]


def _dir_ids(*folders: Path) -> _DirIds:
    """``(st_dev, st_ino)`` of each existing folder (links followed)."""
    ids = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            st = folder.stat()
            ids.add((st.st_dev, st.st_ino))
    return ids


def _image_files(folder: Path, seen: _DirIds, *, listed: int) -> list[Path]:
    """Image files under ``folder``, sorted, one per real file; folders in ``seen`` are skipped."""
    found = []
    for dirpath, dirnames, names in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _first_visit(Path(dirpath) / d, seen))
        found += [Path(dirpath) / f for f in names if _is_image(f)]
        if len(seen) > MAX_DIRS:
            raise DataError(
                f"data folder '{folder}' has more than {MAX_DIRS:,} sub-folders (a symbolic "
                "link to a large tree?); use a smaller folder"
            )
        if listed + len(found) > MAX_FILES:
            raise DataError(
                f"data folder '{folder.parent}' has more than {MAX_FILES:,} images; use a subset"
            )
    unique: dict[str, Path] = {}
    for path in sorted(found):
        unique.setdefault(os.path.realpath(path), path)  # one entry per real file
    return list(unique.values())


def _first_visit(folder: Path, seen: _DirIds) -> bool:
    """Mark ``folder`` (its real directory) as walked; False if it was already."""
    try:
        st = folder.stat()
    except OSError:
        return False  # vanished, or a link loop the OS refuses to resolve
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _read_images(paths: list[Path], *, name: str, progress: bool, size: int) -> torch.Tensor:
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with progress_bar(
        f"reading {name}", total=len(paths), enabled=progress and len(paths) > 500
    ) as bar:
        for i, path in enumerate(paths):
            out[i] = read_image(path, size)
            bar.advance()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_image(path: Path, size: int = SIDE) -> np.ndarray:
    """The image at ``path`` as uint8 ``[size, size, 3]`` (RGB, resized and centre-cropped).

    Raises:
        DataError: the file cannot be read or decoded as an image.
    """
    try:
        with Image.open(path) as im:
            return np.array(resize_crop(im.convert("RGB"), size), dtype=np.uint8)  # writable
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from exc
