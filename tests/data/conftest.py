"""Fixtures for mapguard.data: every built-in domain loaded once per session (seed 0).

The session-wide cache directory comes from ``tests/conftest.py`` (``$MAPGUARD_CACHE_DIR``).
"""

from __future__ import annotations

import pytest

from mapguard.data import ImageSet, list_domains, load_data


@pytest.fixture(scope="session")
def splits() -> dict[str, dict[str, ImageSet]]:
    """``splits[name][split]`` for every built-in domain and split train/test/all, seed 0."""
    return {
        name: {
            split: load_data(f"builtin:{name}", split=split, progress=False)
            for split in ("train", "test", "all")
        }
        for name in list_domains()
    }


def write_noise_folder(root, shapes: list[tuple[int, int]], *, classes: int = 3, seed: int = 0):  # noqa: ANN001, ANN201 (also imported by the tests as a plain helper)
    """``classes`` class folders holding one random PNG per ``(width, height)`` in ``shapes``.

    Modes cycle through RGB, L and RGBA (every one is read as RGB).
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(shapes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            mode = ("RGB", "L", "RGBA")[i % 3]
            Image.fromarray(pixels).convert(mode).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def noise_folder():  # noqa: ANN201
    """The :func:`write_noise_folder` helper."""
    return write_noise_folder
