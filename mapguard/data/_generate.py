"""``make_folder_benchmark``: ImageFolder trees (PNG) at any resolution, from installed packages.

Nothing is downloaded: every image is drawn from files that ship in wheels the project already
depends on. ``OUT`` receives::

    OUT/benchmark.json                       what was made (size, per_class, seed, sources)
    OUT/digits/<domain>/<0..9>/<nnnnn>.png   mnist, mnistm, optdigits, svhnlike, syn
    OUT/photos/<variant>/<class>/<nnnnn>.png photo, grey, sketch, colourshift

*digits*: the five built-in digit domains (:mod:`mapguard.data._builtin`) drawn at ``size``,
``per_class`` images of each digit; real digits (MNIST, optdigits) are distinct source digits.

*photos*: a 10-class natural-photo task, one class per colour photograph of
:data:`PHOTOGRAPHS` (scikit-image: astronaut, chelsea, coffee, hubble_deep_field, ihc,
motorcycle_left, retina, rocket; scikit-learn: china, flower — the ten colour, natural,
non-duplicate pictures these packages ship; ``motorcycle_right`` is the other half of a stereo
pair and is left out). A sample is a random square crop (side 30-80% of the photograph's
shorter side, random position, mirrored half the time) resized to ``size`` (bilinear,
antialiased). Each variant is a domain with its own crops: ``photo`` as is, ``grey`` (BT.601
luma), ``sketch`` (inverted, normalised Sobel edge magnitude: dark lines on white),
``colourshift`` (hue rotated by a random 90-270 degrees per image).

Load any tree with ``load_data("OUT/photos/sketch", size=...)`` or stream it with
``open_data``. The same arguments give the same files, byte for byte. From a shell::

    python -m mapguard.data.make_benchmark OUT --size 224 --per-class 100 --seed 0
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mapguard._errors import DataError
from mapguard.data._builtin import (
    _grey_to_rgb,
    _mnist_32,
    _svhn_image,
    _syn_image,
    optdigit_image,
)
from mapguard.data._imageset import stable_rng
from mapguard.data._render import luminance, mnist_m, texture_crop
from mapguard.data._resize import resize_array
from mapguard.data._sources import load_optdigits, load_textures, package_dir
from mapguard.data._spec import check_seed, check_size
from protocols.fileio import atomic_dir

__all__ = [
    "BENCHMARK_VERSION",
    "DIGIT_DOMAINS",
    "PHOTOGRAPHS",
    "PHOTO_VARIANTS",
    "FolderBenchmark",
    "make_folder_benchmark",
]

BENCHMARK_VERSION = 1
DIGIT_DOMAINS = ("mnist", "mnistm", "optdigits", "svhnlike", "syn")
#: (package, file): the photo classes, named by the file's stem.
PHOTOGRAPHS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)
PHOTO_VARIANTS = ("photo", "grey", "sketch", "colourshift")
MAX_PER_CLASS = 10_000
_CROP_SCALE = (0.3, 0.8)

Draw = Callable[[np.random.Generator, int], np.ndarray]  # (rng, class) -> uint8 [S, S, 3]


@dataclass(frozen=True, kw_only=True)
class FolderBenchmark:
    """What :func:`make_folder_benchmark` wrote.

    Attributes:
        root: the output folder.
        size, per_class, seed: the arguments.
        digits: ``{domain: folder}`` of the digit ImageFolders.
        photos: ``{variant: folder}`` of the photo ImageFolders.
    """

    root: Path
    size: int
    per_class: int
    seed: int
    digits: dict[str, Path]
    photos: dict[str, Path]


def make_folder_benchmark(
    out: str | os.PathLike[str],
    *,
    size: int = 224,
    per_class: int = 100,
    seed: int = 0,
    force: bool = False,
) -> FolderBenchmark:
    """Write the digit and photo ImageFolder trees described in the module docstring.

    Args:
        out: output folder (created; must be empty or absent unless ``force``).
        size: image side in pixels.
        per_class: images per class in every domain (at most the 174 optdigits of its
            smallest class: real digits are never repeated).
        seed: draws every sample; same arguments, same bytes.
        force: replace an existing ``out``.

    Raises:
        DataError: bad size, per_class or seed; too many images asked of a real digit set.
        protocols.errors.OutputExistsError: ``out`` exists and ``force`` is False.

    Example:
        >>> import tempfile
        >>> bench = make_folder_benchmark(Path(tempfile.mkdtemp()) / "b", size=32, per_class=2)
        >>> sorted(bench.photos), len(list(bench.photos["sketch"].glob("*/*.png")))
        (['colourshift', 'grey', 'photo', 'sketch'], 20)
    """
    size, seed = check_size(size), check_seed(seed)
    if isinstance(per_class, bool) or not isinstance(per_class, int):
        raise DataError(f"per_class must be an integer, got {per_class!r}")
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise DataError(f"per_class must be in 1..{MAX_PER_CLASS}, got {per_class}")
    _check_real_digits(per_class)
    photos = _load_photographs()
    root = Path(out)
    with atomic_dir(root, force=force) as stage:
        for domain in DIGIT_DOMAINS:
            draw = _digit_drawer(domain, size, per_class, seed)
            _write_tree(
                stage / "digits" / domain,
                [str(d) for d in range(10)],
                per_class,
                draw,
                stable_rng(seed, f"bench:digits:{domain}"),
            )
        classes = [Path(rel).stem for _, rel in PHOTOGRAPHS]
        for variant in PHOTO_VARIANTS:
            draw = _photo_drawer(photos, variant, size)
            _write_tree(
                stage / "photos" / variant,
                classes,
                per_class,
                draw,
                stable_rng(seed, f"bench:photos:{variant}"),
            )
        manifest = _manifest(size=size, per_class=per_class, seed=seed, classes=classes)
        (stage / "benchmark.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return FolderBenchmark(
        root=root,
        size=size,
        per_class=per_class,
        seed=seed,
        digits={d: root / "digits" / d for d in DIGIT_DOMAINS},
        photos={v: root / "photos" / v for v in PHOTO_VARIANTS},
    )


def _manifest(*, size: int, per_class: int, seed: int, classes: list[str]) -> dict:
    return {
        "benchmark_version": BENCHMARK_VERSION,
        "size": size,
        "per_class": per_class,
        "seed": seed,
        "digits": list(DIGIT_DOMAINS),
        "photo_variants": list(PHOTO_VARIANTS),
        "photo_classes": {c: f"{pkg}/{rel}" for c, (pkg, rel) in zip(classes, PHOTOGRAPHS)},
    }


def _write_tree(
    root: Path, classes: list[str], per_class: int, draw: Draw, rng: np.random.Generator
) -> None:
    """``per_class`` images of every class, drawn class by class from ``rng``, as PNG."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(draw(rng, label)).save(folder / f"{i:05d}.png", optimize=False)


def _load_photographs() -> list[np.ndarray]:
    photos = []
    for package, rel in PHOTOGRAPHS:
        path = package_dir(package) / rel
        try:
            with Image.open(path) as im:
                photos.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except OSError as exc:
            msg = f"cannot read photograph '{path}' (reinstall {package}): {exc}"
            raise DataError(msg) from exc
    return photos


# --- digits -------------------------------------------------------------------------------


def _check_real_digits(per_class: int) -> None:
    """Refuse, before writing anything, more images per class than a real digit set holds."""
    for what, labels in (("MNIST", _mnist_32()[1]), ("optdigits", load_optdigits()[1])):
        fewest = int(np.bincount(labels, minlength=10).min())
        if per_class > fewest:
            raise DataError(
                f"per_class={per_class} is more than the {fewest} {what} digits of its "
                "smallest class; use fewer"
            )


def _real_digit_picks(
    labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> dict[int, Iterator[int]]:
    """Iterators over ``per_class`` distinct random indices of every class."""
    picks = {}
    for d in range(10):
        members = np.flatnonzero(labels == d)
        picks[d] = iter(rng.permutation(members)[:per_class].tolist())
    return picks


def _digit_drawer(domain: str, side: int, per_class: int, seed: int) -> Draw:
    """How one image of digit ``d`` of ``domain`` is drawn at ``side``."""
    if domain == "syn":
        return lambda rng, d: _syn_image(rng, d, side)
    if domain == "svhnlike":
        textures = load_textures()
        return lambda rng, d: _svhn_image(rng, d, textures, side)
    pick_rng = stable_rng(seed, f"bench:pick:{domain}")
    if domain == "optdigits":
        grids, labels = load_optdigits()
        picks = _real_digit_picks(labels, per_class, pick_rng)
        return lambda rng, d: _grey_to_rgb(optdigit_image(grids[next(picks[d])], side))
    digits, labels, _ = _mnist_32()
    picks = _real_digit_picks(labels, per_class, pick_rng)
    if domain == "mnist":
        return lambda rng, d: _grey_to_rgb(resize_array(digits[next(picks[d])], side))
    textures = load_textures(colour_only=True)

    def mnistm(rng: np.random.Generator, d: int) -> np.ndarray:
        photo = texture_crop(rng, textures, min_side=side, max_side=4 * side, side=side)
        return mnist_m(resize_array(digits[next(picks[d])], side), photo)

    return mnistm


# --- photos -------------------------------------------------------------------------------


def _photo_drawer(photos: list[np.ndarray], variant: str, side: int) -> Draw:
    look = _LOOKS[variant]
    return lambda rng, label: look(_photo_crop(rng, photos[label], side), rng)


def _photo_crop(rng: np.random.Generator, photo: np.ndarray, side: int) -> np.ndarray:
    """A random square crop (30-80% of the shorter side), mirrored half the time, at ``side``."""
    h, w = photo.shape[:2]
    crop = int(round(rng.uniform(*_CROP_SCALE) * min(h, w)))
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    pixels = photo[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return resize_array(np.ascontiguousarray(pixels), side)


def _grey(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _grey_to_rgb(np.clip(np.rint(luminance(rgb)), 0, 255).astype(np.uint8))


def _sketch(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark edges on white: inverted Sobel gradient magnitude of the luma, 99th percentile = ink."""
    luma = ndimage.gaussian_filter(luminance(rgb), sigma=max(rgb.shape[0] / 224, 0.5))
    mag = np.hypot(ndimage.sobel(luma, axis=0), ndimage.sobel(luma, axis=1))
    scale = max(float(np.percentile(mag, 99)), 1e-6)
    ink = np.clip(mag / scale, 0.0, 1.0)
    return _grey_to_rgb(np.rint(255.0 * (1.0 - ink)).astype(np.uint8))


def _colourshift(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue rotated by a random 90-270 degrees (PIL's 8-bit HSV)."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.integers(64, 193))) % 256
    return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"), dtype=np.uint8)


_LOOKS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "photo": lambda rgb, rng: rgb,
    "grey": _grey,
    "sketch": _sketch,
    "colourshift": _colourshift,
}
