"""The built-in trigger family ``patch`` (byte-exact spec: docs/TRIGGERS.md)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._triggers.base import TriggerFamily, register_trigger_family
from verification._triggers.hkdf import colour_bits, uniform_int
from verification._triggers.validation import check_grid, check_int, check_unit

__all__ = ["PatchFamily", "PatchParams"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatchParams:
    """Parameters of the ``patch`` family.

    Attributes:
        image_size: Side of the square images (pixels).
        min_size: Smallest patch side (pixels).
        max_size: Largest patch side (pixels).
        alpha: Opacity of the patch (1 = the patch replaces the pixels).
        grid: ``0``: sizes and positions in pixels; else in cells of a ``grid x grid`` lattice
            over the image (geometry relative to the image side, docs/TRIGGERS.md).
    """

    image_size: int = 32
    min_size: int = 4
    max_size: int = 6
    alpha: float = 1.0
    grid: int = 0

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, 1)
        check_int("min_size", self.min_size, 1, self.image_size)
        check_int("max_size", self.max_size, self.min_size, self.image_size)
        check_unit("alpha", self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))
        check_grid(self)


@register_trigger_family
class PatchFamily(TriggerFamily):
    """Key-seeded square patch: size, position and a binary RGB pattern, alpha-blended.

    Stream layout (HKDF info ``b"mapguard/trigger/patch/v1"``): bytes 0-7 give the side
    ``s = uniform_int(min_size, max_size)``, bytes 8-15 the row ``r0 = uniform_int(0, H - s)``,
    bytes 16-23 the column ``c0 = uniform_int(0, W - s)``, and from byte 24 the colour bits, MSB
    first: bit ``(r * s + c) * 3 + ch`` is channel ``ch`` of patch pixel ``(r, c)``.
    """

    name = "patch"
    params_type = PatchParams

    def stream_length(self, params: PatchParams) -> int:
        return 24 + math.ceil(3 * params.max_size**2 / 8)

    def layout(
        self, stream: bytes, params: PatchParams
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        n = params.image_size
        side = uniform_int(stream[0:8], params.min_size, params.max_size)
        row = uniform_int(stream[8:16], 0, n - side)
        col = uniform_int(stream[16:24], 0, n - side)
        bits = colour_bits(stream, 24, side * side).reshape(side, side, 3)
        alpha_map = np.zeros((1, n, n), dtype=np.float32)
        pattern = np.zeros((3, n, n), dtype=np.float32)
        alpha_map[0, row : row + side, col : col + side] = params.alpha
        pattern[:, row : row + side, col : col + side] = bits.transpose(2, 0, 1)
        return alpha_map, pattern, {"size": side, "row": row, "col": col}
