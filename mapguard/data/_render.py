"""Pixel recipes shared by the synthetic domains: backgrounds, colours, compositing, finishing.

All functions work on float32 RGB arrays ``[S, S, 3]`` in ``[0, 255]`` (``S`` the image side, 32
by default) and draw every random number from the ``rng`` they are given; at a given side each
draws the same random numbers, so the random stream does not depend on the side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

__all__ = [
    "composite",
    "contrasting_colour",
    "finish",
    "gradient_background",
    "luminance",
    "mnist_m",
    "texture_crop",
]

SIDE = 32
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB values (last axis)."""
    return np.asarray(rgb, dtype=np.float32) @ _LUMA


def contrasting_colour(
    rng: np.random.Generator, background: float, *, contrast: float
) -> np.ndarray:
    """A random RGB colour whose luma differs from ``background`` by at least ``contrast``.

    The colour is drawn on the side (lighter or darker) that has room for the contrast; its
    luma is uniform in the admissible range and its hue random.
    """
    lighter = background + contrast <= 255 and (background - contrast < 0 or rng.random() < 0.5)
    lo, hi = (background + contrast, 255.0) if lighter else (0.0, max(background - contrast, 0.0))
    target = rng.uniform(lo, hi)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    colour += target - luminance(colour)  # shift grey level onto the target luma
    return np.clip(colour, 0, 255)


def gradient_background(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """A ``side x side`` linear gradient between two related random colours, random direction."""
    first = rng.uniform(0, 255, size=3)
    second = np.clip(first + rng.normal(0, 40, size=3), 0, 255)
    theta = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(side, dtype=np.float32) - (side - 1) / 2) / side
    ramp = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None] + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    return ((1 - ramp) * first + ramp * second).astype(np.float32)


def texture_crop(
    rng: np.random.Generator,
    textures: tuple[np.ndarray, ...],
    *,
    min_side: int = SIDE,
    max_side: int = SIDE,
    side: int = SIDE,
) -> np.ndarray:
    """A random square crop of a random photograph, resized to ``side x side`` (bilinear).

    The crop's side is drawn from ``min_side..max_side``, both capped by the photograph's
    shorter side.
    """
    photo = textures[int(rng.integers(len(textures)))]
    h, w = photo.shape[:2]
    high = min(max_side, h, w)
    crop_side = int(rng.integers(min(min_side, high), high + 1))
    y, x = int(rng.integers(0, h - crop_side + 1)), int(rng.integers(0, w - crop_side + 1))
    crop = photo[y : y + crop_side, x : x + crop_side]
    if crop_side != side:
        crop = np.asarray(
            Image.fromarray(crop).resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8
        )
    return crop.astype(np.float32)


def composite(background: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paint ``colour`` (RGB or per-pixel RGB) over ``background`` with coverage ``alpha``."""
    a = alpha[..., None]
    return background * (1 - a) + np.asarray(colour, dtype=np.float32) * a


def finish(image: np.ndarray, rng: np.random.Generator, *, blur: float, noise: float) -> np.ndarray:
    """Gaussian blur (sigma ``blur`` px), additive Gaussian noise (sigma ``noise``), to uint8."""
    if blur > 0:
        image = gaussian_filter(image, sigma=(blur, blur, 0), mode="nearest")
    if noise > 0:
        image = image + rng.normal(0, noise, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def mnist_m(digit: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The MNIST-M blend of Ganin & Lempitsky (2015): ``|background - binarised digit|``.

    Args:
        digit: uint8 ``[S, S]`` grey digit (white ink on black).
        background: ``[S, S, 3]`` photograph crop.

    Returns:
        uint8 ``[S, S, 3]``: the photograph, colour-inverted where the digit has ink.
    """
    ink = (digit > 0).astype(np.float32)[..., None] * 255.0
    return np.abs(background.astype(np.float32) - ink).astype(np.uint8)
