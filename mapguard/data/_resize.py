"""The one resize of the data package: shorter side to ``size``, then a centre square crop.

``torchvision.transforms.v2.Resize(size, interpolation=BILINEAR, antialias=True)`` followed by
``v2.CenterCrop(size)``, applied to PIL images (so the resampling is PIL's antialiased bilinear
filter, and a square image is resized exactly as ``Image.resize((size, size), BILINEAR)``).
Aspect ratio is kept; the longer side loses ``(long - short) * size / short`` pixels, half on
each side. An image already ``size x size`` is returned unchanged.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

__all__ = ["resize_array", "resize_crop"]


@functools.lru_cache(maxsize=16)
def _transform(size: int):  # noqa: ANN202 (torchvision types stay out of the signature)
    from torchvision.transforms import v2  # imported on first use: torchvision is slow to load

    return v2.Compose(
        [
            v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.CenterCrop(size),
        ]
    )


def resize_crop(image: Image.Image, size: int) -> Image.Image:
    """``image`` brought to ``size x size``: shorter side resized (bilinear), centre crop.

    Example:
        >>> resize_crop(Image.new("RGB", (64, 48)), 32).size
        (32, 32)
    """
    if image.size == (size, size):
        return image
    return _transform(size)(image)


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """:func:`resize_crop` of a uint8 ``[H, W]`` or ``[H, W, 3]`` array, as such an array."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(resize_crop(Image.fromarray(pixels), size), dtype=np.uint8)
