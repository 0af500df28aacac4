"""The one resize of the data package: shorter side to ``size``, then a centre square crop.

Exactly ``torchvision.transforms.v2.Compose([v2.Resize(size, interpolation=BILINEAR,
antialias=True), v2.CenterCrop(size)])`` applied to a PIL image, written with PIL alone:
importing torchvision costs seconds (it loads ``torch._dynamo``), and on PIL images v2 calls
PIL's antialiased bilinear ``Image.resize`` and ``Image.crop`` with the sizes computed below
(``tests/data/test_resize.py`` checks the equality against torchvision). The longer side becomes
``int(size * long / short)``; the crop starts at ``int(round((long' - size) / 2))``. A square
image is resized exactly as ``Image.resize((size, size), BILINEAR)``; an image already
``size x size`` is returned unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["resize_array", "resize_crop"]


def resize_crop(image: Image.Image, size: int) -> Image.Image:
    """``image`` brought to ``size x size``: shorter side resized (bilinear), centre crop.

    Example:
        >>> resize_crop(Image.new("RGB", (64, 48)), 32).size
        (32, 32)
    """
    w, h = image.size
    if (w, h) == (size, size):
        return image
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """:func:`resize_crop` of a uint8 ``[H, W]`` or ``[H, W, 3]`` array, as such an array."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(resize_crop(Image.fromarray(pixels), size), dtype=np.uint8)
