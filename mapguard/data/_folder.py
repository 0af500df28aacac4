"""User data in torchvision ``ImageFolder`` layout: one sub-folder per class.

``root/<class>/**/<image>`` with class names sorted (their index is the label), or
``root/train/<class>/...`` plus ``root/test/<class>/...`` for a split fixed by the user. Without
``train/`` and ``test/`` the split is a stratified 80/20 one drawn from the seed. Images are read
with PIL, converted to RGB and resized to 32x32 (bilinear with antialiasing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mapguard._errors import DataError
from mapguard.data._imageset import SIDE, ImageSet, stable_rng, stratified_test_mask
from mapguard.data._progress import progress_bar

__all__ = ["IMG_EXTENSIONS", "TEST_FRACTION", "load_folder"]

#: torchvision's ImageFolder extensions (matched case-insensitively).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEST_FRACTION = 0.2
_Files = list[tuple[Path, int]]


def load_folder(root: Path, *, name: str, split: str, seed: int, progress: bool) -> ImageSet:
    """Load split ``split`` of the ImageFolder at ``root`` (``name`` labels the result)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        extra = sorted(set(_class_names(root / "test")) - set(classes))
        if extra:
            raise DataError(f"test classes {extra} of '{name}' have no folder in train/")
        parts = {
            "train": _list_files(root / "train", classes),
            "test": _list_files(root / "test", classes, every_class=False),
        }
        files = parts["train"] + parts["test"] if split == "all" else parts[split]
    else:
        classes = _class_names(root)
        every = _list_files(root, classes)
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
    images = _read_images([p for p, _ in files], name=name, progress=progress)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSet(name=name, split=split, images=images, labels=labels, classes=classes)


def _class_names(root: Path) -> tuple[str, ...]:
    classes = tuple(
        sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    )
    if not classes:
        raise DataError(f"data folder '{root}' has no class sub-folders (expected <class>/<image>)")
    return classes


def _list_files(root: Path, classes: tuple[str, ...], *, every_class: bool = True) -> _Files:
    """Image files of the classes under ``root``, sorted; with ``every_class`` none may lack."""
    files: _Files = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not every_class and not folder.is_dir():
            continue
        found = sorted(
            Path(dirpath) / f
            for dirpath, _, names in os.walk(folder, followlinks=True)
            for f in names
            if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith(".")
        )
        if not found and every_class:
            raise DataError(
                f"class folder '{folder}' contains no images ({', '.join(IMG_EXTENSIONS)})"
            )
        files.extend((p, label) for p in found)
    return files


def _read_images(paths: list[Path], *, name: str, progress: bool) -> torch.Tensor:
    out = np.empty((len(paths), SIDE, SIDE, 3), dtype=np.uint8)
    with progress_bar(
        f"reading {name}", len(paths), enabled=progress and len(paths) > 500
    ) as advance:
        for i, path in enumerate(paths):
            out[i] = _read_image(path)
            advance(1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            if rgb.size != (SIDE, SIDE):
                rgb = rgb.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from exc
