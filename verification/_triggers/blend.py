"""The built-in trigger family ``blend`` (byte-exact spec: docs/TRIGGERS.md)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._triggers.base import TriggerFamily, register_trigger_family
from verification._triggers.hkdf import colour_bits
from verification._triggers.validation import check_grid, check_int, check_unit

__all__ = ["BlendFamily", "BlendParams"]

#: Largest image side: the stream of ``n * n + ceil(3 * n * n / 8)`` bytes must fit the
#: ``255 * 32`` bytes HKDF-SHA256 can give.
MAX_IMAGE_SIZE = 77


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendParams:
    """Parameters of the ``blend`` family.

    Attributes:
        image_size: Side of the square images (pixels); at most 77 (HKDF output limit).
        density: Expected fraction of pixels in the pattern's support.
        alpha: Blend weight on the support (low amplitude: 0.15 moves a pixel by <= 0.15).
        grid: ``0``: one pattern value per pixel; else per cell of a ``grid x grid`` lattice
            over the image (any image size; docs/TRIGGERS.md, geometry v2).
    """

    image_size: int = 32
    density: float = 0.25
    alpha: float = 0.15
    grid: int = 0

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, 1, None if self.grid else MAX_IMAGE_SIZE)
        if self.grid:
            check_int("grid", self.grid, 1, min(self.image_size, MAX_IMAGE_SIZE))
        check_unit("density", self.density)
        check_unit("alpha", self.alpha)
        object.__setattr__(self, "density", float(self.density))
        object.__setattr__(self, "alpha", float(self.alpha))
        check_grid(self)


@register_trigger_family
class BlendFamily(TriggerFamily):
    """Key-seeded sparse binary RGB pattern blended over the whole image at low amplitude.

    Stream layout (HKDF info ``b"mapguard/trigger/blend/v1"``): byte ``r * W + c`` (``H * W``
    bytes) puts pixel ``(r, c)`` in the support iff it is ``< round(density * 256)``; from byte
    ``H * W`` the colour bits, MSB first: bit ``(r * W + c) * 3 + ch`` is channel ``ch`` of pixel
    ``(r, c)``. Off the support both the weight and the pattern are 0.
    """

    name = "blend"
    params_type = BlendParams

    def stream_length(self, params: BlendParams) -> int:
        pixels = params.image_size**2
        return pixels + math.ceil(3 * pixels / 8)

    def layout(
        self, stream: bytes, params: BlendParams
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        n = params.image_size
        threshold = round(params.density * 256)
        support_bytes = np.frombuffer(stream, dtype=np.uint8, count=n * n)
        support = (support_bytes.astype(np.int64) < threshold).reshape(n, n)
        bits = colour_bits(stream, n * n, n * n).reshape(n, n, 3).transpose(2, 0, 1)
        alpha_map = (support * params.alpha).astype(np.float32)[None]
        pattern = (bits * support[None]).astype(np.float32)
        return alpha_map, pattern, {"support_pixels": int(support.sum())}
