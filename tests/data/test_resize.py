"""The data package's resize is torchvision v2 Resize (shorter side) + CenterCrop, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mapguard.data._resize import resize_array, resize_crop

SHAPES = [(64, 48), (48, 64), (33, 97), (97, 33), (300, 301), (20, 20), (31, 32), (7, 9)]


@pytest.mark.parametrize("size", [8, 32, 64, 224])
def test_resize_crop_equals_torchvision_v2(size: int) -> None:
    from torchvision.transforms import v2

    reference = v2.Compose(
        [
            v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.CenterCrop(size),
        ]
    )
    rng = np.random.default_rng(size)
    for w, h in SHAPES:
        for mode in ("RGB", "L"):
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
            ours = np.asarray(resize_crop(image, size))
            assert ours.shape[:2] == (size, size)
            assert np.array_equal(ours, np.asarray(reference(image))), (w, h, mode)


def test_square_images_resize_as_before_and_exact_size_is_untouched() -> None:
    # Before sizes existed, folder images were Image.resize((32, 32), BILINEAR): squares agree.
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (97, 97, 3), np.uint8))
    old = image.resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(resize_crop(image, 32)), np.asarray(old))
    pixels = np.zeros((32, 32, 3), np.uint8)
    assert resize_array(pixels, 32) is pixels


def test_centre_crop_cuts_the_longer_side_evenly() -> None:
    pixels = np.zeros((40, 120, 3), np.uint8)  # wide: 40 high, 120 wide
    pixels[:, :40] = 255  # left third white: cut away by a centre crop
    pixels[:, 40:80] = 100
    out = resize_array(pixels, 20)
    assert out.shape == (20, 20, 3) and (out[:, 1:-1] == 100).all()  # edges blend (filter)
