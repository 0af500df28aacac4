"""The tilt's input: low-frequency DCT coefficients of the area-averaged image.

Defined relative to the image side, so one family serves a 32-pixel and a 224-pixel model:
the image (``[n, 3, S, S]``, pixels in ``[0, 1]`` or uint8) is averaged over a ``grid x grid``
partition (bin ``i`` covers rows ``floor(i S / grid)`` to ``ceil((i + 1) S / grid) - 1``, as
torch's adaptive average pooling), then each channel goes through the orthonormal 2-D DCT-II
and the coefficients ``(u, v)`` with ``1 <= u + v <= order`` are kept, channel-major.
"""

from __future__ import annotations

import math

import numpy as np

from verification._errors import TriggerError

__all__ = ["LowFreqInput", "dct_basis", "lowfreq_coefficients", "lowfreq_features"]


def _bins(size: int, grid: int) -> np.ndarray:
    """``[grid, size]`` averaging matrix of the adaptive-average partition."""
    out = np.zeros((grid, size))
    for i in range(grid):
        lo, hi = (i * size) // grid, -((-(i + 1) * size) // grid)
        out[i, lo:hi] = 1.0 / (hi - lo)
    return out


def _dct(grid: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``[grid, grid]`` (row ``u`` is frequency ``u``)."""
    i = np.arange(grid)
    m = np.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * grid))
    m[0] *= math.sqrt(1.0 / grid)
    m[1:] *= math.sqrt(2.0 / grid)
    return m


def dct_basis(side: int, grid: int) -> np.ndarray:
    """``[grid, side]``: area average of a side-``side`` axis to ``grid`` bins, then the DCT;
    the coefficients of an image ``X`` (one channel) are ``B @ X @ B.T``."""
    return _dct(grid) @ _bins(side, grid)


def lowfreq_coefficients(grid: int, order: int) -> list[tuple[int, int]]:
    """The DCT indices ``(u, v)`` with ``1 <= u + v <= order`` (row-major over ``u``, then
    ``v``): the features of every channel family, per colour channel."""
    return [(u, v) for u in range(grid) for v in range(grid) if 1 <= u + v <= order]


class LowFreqInput:
    """Mixin of the key families: their ``grid`` and ``order`` fix the features."""

    grid: int
    order: int

    @property
    def coefficients(self) -> list[tuple[int, int]]:
        """The DCT indices ``(u, v)`` used, in order (row-major over ``u``, then ``v``)."""
        return lowfreq_coefficients(self.grid, self.order)

    @property
    def dim(self) -> int:
        """Feature dimensions ``D`` (three colour channels)."""
        return 3 * len(self.coefficients)


def lowfreq_features(images: np.ndarray, *, grid: int, order: int) -> np.ndarray:
    """Features ``[n, D]`` (float64) of ``images`` ``[n, 3, S, S]``.

    Raises:
        TriggerError: not a batch of square 3-channel images at least ``grid`` pixels wide.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or x.shape[2] < grid:
        raise TriggerError(
            f"tilt features need [n, 3, S, S] images with S >= {grid}, got {x.shape}"
        )
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    basis = dct_basis(x.shape[2], grid)
    coef = np.einsum("us,ncst,vt->ncuv", basis, x, basis, optimize=True)
    keep = lowfreq_coefficients(grid, order)
    rows = np.array([u for u, _ in keep])
    cols = np.array([v for _, v in keep])
    return coef[:, :, rows, cols].reshape(len(x), -1)
