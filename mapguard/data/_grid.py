"""Sample grids as PNG (PIL only), for documentation and eyeballing a domain."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mapguard._errors import DataError
from mapguard.data._imageset import ImageSet
from protocols.fileio import atomic_path

__all__ = ["grid_image", "save_grid_png"]

_GAP = 1  # pixels between tiles
_PANEL_GAP = 8  # pixels between panels
_TITLE = 14  # pixels reserved for a panel title


def grid_image(
    data: ImageSet | Sequence[ImageSet], *, n_per_class: int = 8, seed: int = 0
) -> Image.Image:
    """Panels side by side, one per set: a row per class, ``n_per_class`` random images each.

    Classes with fewer images leave their row partly empty.
    """
    sets = [data] if isinstance(data, ImageSet) else list(data)
    if (
        not sets
        or isinstance(n_per_class, bool)
        or not isinstance(n_per_class, int)
        or n_per_class < 1
    ):
        raise DataError(f"need at least one ImageSet and n_per_class >= 1, got {n_per_class!r}")
    panels = [_panel(s, n_per_class, seed) for s in sets]
    width = sum(p.width for p in panels) + _PANEL_GAP * (len(panels) - 1)
    height = max(p.height for p in panels) + _TITLE
    canvas = Image.new("RGB", (width, height), "white")
    draw, font, x = ImageDraw.Draw(canvas), ImageFont.load_default(), 0
    for s, panel in zip(sets, panels):
        canvas.paste(panel, (x, _TITLE))
        draw.text((x + 1, 1), s.name.removeprefix("builtin:"), fill="black", font=font)
        x += panel.width + _PANEL_GAP
    return canvas


def save_grid_png(
    data: ImageSet | Sequence[ImageSet],
    path: str | os.PathLike[str],
    *,
    n_per_class: int = 8,
    seed: int = 0,
    colors: int | None = None,
    force: bool = False,
) -> Path:
    """Write :func:`grid_image` to ``path`` as PNG, atomically.

    Args:
        colors: quantise to a palette of this many colours (smaller files), or keep RGB.
        force: overwrite an existing file.

    Example (how ``docs/images/domains.png`` is made):
        >>> from mapguard.data import list_domains, load_data, save_grid_png
        >>> sets = [load_data(f"builtin:{d}", split="test") for d in list_domains()]
        >>> save_grid_png(sets, "docs/images/domains.png", colors=256, force=True)  # doctest: +SKIP
    """
    image = grid_image(data, n_per_class=n_per_class, seed=seed)
    if colors is not None:
        image = image.quantize(
            colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    with atomic_path(path, force=force) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)


def _panel(data: ImageSet, n_per_class: int, seed: int) -> Image.Image:
    side = data.side  # tiles at the set's own side (32 for the built-ins' default)
    step = side + _GAP
    rows = len(data.classes)
    sheet = np.full((rows * step - _GAP, n_per_class * step - _GAP, 3), 255, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    for c in range(rows):
        members = np.flatnonzero(labels == c)
        picked = np.sort(rng.permutation(members)[:n_per_class])
        for j, i in enumerate(picked):
            tile = data.images[int(i)].permute(1, 2, 0).numpy()
            sheet[c * step : c * step + side, j * step : j * step + side] = tile
    return Image.fromarray(sheet)
