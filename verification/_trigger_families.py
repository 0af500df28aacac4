"""The built-in trigger families ``patch`` and ``blend`` (byte-exact spec: docs/TRIGGERS.md)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._errors import TriggerError
from verification._hkdf import uniform_int
from verification._trigger_base import TriggerFamily, register_trigger_family

__all__ = ["BlendFamily", "BlendParams", "PatchFamily", "PatchParams"]


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise TriggerError(f"trigger parameter {name} must be an integer {bound}, got {value!r}")


def _check_unit(name: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) <= 1.0:
        raise TriggerError(f"trigger parameter {name} must be a number in (0, 1], got {value!r}")


def _colour_bits(stream: bytes, offset: int, pixels: int) -> np.ndarray:
    """``3 * pixels`` bits from ``stream[offset:]``, MSB first, shaped ``[pixels, 3]``."""
    nbytes = math.ceil(3 * pixels / 8)
    raw = np.frombuffer(stream, dtype=np.uint8, count=nbytes, offset=offset)
    return np.unpackbits(raw, bitorder="big")[: 3 * pixels].reshape(pixels, 3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatchParams:
    """Parameters of the ``patch`` family.

    Attributes:
        image_size: Side of the square images (pixels).
        min_size: Smallest patch side (pixels).
        max_size: Largest patch side (pixels).
        alpha: Opacity of the patch (1 = the patch replaces the pixels).
    """

    image_size: int = 32
    min_size: int = 4
    max_size: int = 6
    alpha: float = 1.0

    def __post_init__(self) -> None:
        _check_int("image_size", self.image_size, 1)
        _check_int("min_size", self.min_size, 1, self.image_size)
        _check_int("max_size", self.max_size, self.min_size, self.image_size)
        _check_unit("alpha", self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))


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
        bits = _colour_bits(stream, 24, side * side).reshape(side, side, 3)
        alpha_map = np.zeros((1, n, n), dtype=np.float32)
        pattern = np.zeros((3, n, n), dtype=np.float32)
        alpha_map[0, row : row + side, col : col + side] = params.alpha
        pattern[:, row : row + side, col : col + side] = bits.transpose(2, 0, 1)
        return alpha_map, pattern, {"size": side, "row": row, "col": col}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendParams:
    """Parameters of the ``blend`` family.

    Attributes:
        image_size: Side of the square images (pixels); at most 77 (HKDF output limit).
        density: Expected fraction of pixels in the pattern's support.
        alpha: Blend weight on the support (low amplitude: 0.15 moves a pixel by <= 0.15).
    """

    image_size: int = 32
    density: float = 0.25
    alpha: float = 0.15

    def __post_init__(self) -> None:
        _check_int("image_size", self.image_size, 1, 77)
        _check_unit("density", self.density)
        _check_unit("alpha", self.alpha)
        object.__setattr__(self, "density", float(self.density))
        object.__setattr__(self, "alpha", float(self.alpha))


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
        bits = _colour_bits(stream, n * n, n * n).reshape(n, n, 3).transpose(2, 0, 1)
        alpha_map = (support * params.alpha).astype(np.float32)[None]
        pattern = (bits * support[None]).astype(np.float32)
        return alpha_map, pattern, {"support_pixels": int(support.sum())}
