"""TrueType digit rendering with the fonts that ship in matplotlib.

A font is *usable* when its character map sends "0".."9" to glyphs named like digits and it
draws ten distinct, non-empty bitmaps for them that differ from its "missing glyph" box (symbol
fonts such as cmsy10 map the digit code points to other shapes; display-only fonts draw nothing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mapguard.data._sources import package_dir

__all__ = ["DigitLayout", "render_alpha", "usable_fonts"]

DIGITS = "0123456789"
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Symbol / math-italic TeX fonts: their digit code points hold other shapes or old-style figures.
_SYMBOL_FONT_PREFIXES = ("cmex", "cmsy", "cmmi")
_MISSING = "\uffff"  # a non-character: every font answers with its .notdef box (or nothing)
_PROBE_SIZE = 64
_SIDE = 32
_CANVAS = 48  # side of the drawing canvas; neighbours may be cut at its border


def font_dir() -> Path:
    """matplotlib's directory of bundled TrueType fonts."""
    return package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf"


@functools.cache
def usable_fonts() -> tuple[Path, ...]:
    """Fonts from :func:`font_dir` that draw ten distinct digits, sorted by file name."""
    return tuple(p for p in sorted(font_dir().glob("*.ttf")) if _is_usable(p))


def _is_usable(path: Path) -> bool:
    if path.stem.startswith(_SYMBOL_FONT_PREFIXES) or not _maps_digits(path):
        return False
    try:
        font = ImageFont.truetype(str(path), _PROBE_SIZE)
    except OSError:
        return False
    bitmaps = [_bitmap(font, ch) for ch in DIGITS]
    if any(b is None for b in bitmaps):
        return False
    distinct = set(bitmaps)
    return len(distinct) == len(DIGITS) and _bitmap(font, _MISSING) not in distinct


def _maps_digits(path: Path) -> bool:
    from fontTools.ttLib import TTFont, TTLibError  # a dependency of matplotlib

    try:
        with TTFont(str(path), lazy=True) as tt:
            cmap = tt.getBestCmap() or {}
    except (OSError, TTLibError):
        return False
    for code, name in zip(range(0x30, 0x3A), _DIGIT_NAMES):
        if cmap.get(code) not in (name, f"uni{code:04X}"):
            return False
    return True


def _bitmap(font: ImageFont.FreeTypeFont, ch: str) -> tuple[tuple[int, int], bytes] | None:
    """The glyph's rendered coverage as a hashable value, or None when it draws nothing."""
    mask = font.getmask(ch)
    data = bytes(mask)
    if not any(data):
        return None
    return mask.size, data


def _digit_height(path: Path, size: int) -> float:
    """Median ink height of the ten digits at font size ``size`` (pixels, as rasterised)."""
    return float(np.median([_glyph(path, size, ch)[0].shape[0] for ch in DIGITS]))


@functools.lru_cache(maxsize=4096)
def _size_for_height(path: Path, height: float) -> int:
    """The font size whose rasterised digits are closest to ``height`` pixels high.

    Hinting makes small sizes deviate from proportional scaling, so nearby sizes are measured.
    """
    guess = round(height * 100 / _digit_height(path, 100))
    sizes = range(max(4, guess - 3), guess + 4)
    return min(sizes, key=lambda size: (abs(_digit_height(path, size) - height), size))


@functools.lru_cache(maxsize=8192)
def _glyph(path: Path, size: int, ch: str) -> tuple[np.ndarray, int, int]:
    """The drawn pixels of ``ch`` cropped to their ink, and the ink's offset from the text origin.

    Returns:
        ``(coverage uint8 [h, w], left, top)`` with the origin at anchor "la" (left, ascender).
    """
    font = _font(path, size)
    x0, y0, x1, y1 = font.getbbox(ch)
    pad = 2 + size // 4  # getbbox is the advance box; italic ink may overhang it
    image = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad - x0, pad - y0), ch, font=font, fill=255)
    left, top, right, bottom = image.getbbox() or (0, 0, 1, 1)
    ink = np.asarray(image.crop((left, top, right, bottom)), dtype=np.uint8)
    ink.setflags(write=False)
    return ink, left - pad + x0, top - pad + y0


@functools.lru_cache(maxsize=1024)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True, kw_only=True)
class DigitLayout:
    """Where and how one digit (and optional neighbours) is drawn, in units of a 32x32 image.

    Lengths are pixels of a 32x32 image; :func:`render_alpha` scales them to the side it draws.

    Attributes:
        digit: the centre digit (the label).
        font: TrueType file.
        height: ink height of the digits in output pixels.
        dx, dy: offset of the centre digit's ink centre from the image centre, in pixels.
        angle: rotation about the digit centre, degrees counter-clockwise.
        left, right: neighbour digits drawn beside it (partly cut by the border), or None.
        gap: horizontal space between neighbouring digits' ink, in pixels.
    """

    digit: int
    font: Path
    height: float
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    left: int | None = None
    right: int | None = None
    gap: float = 2.0


def render_alpha(layout: DigitLayout, *, side: int = _SIDE) -> np.ndarray:
    """Coverage of the layout's digits: float32 ``[side, side]`` in ``[0, 1]``.

    The font is rasterised at ``side`` directly (lengths scaled by ``side / 32``; at 32 this is
    the original recipe, unchanged). Glyphs are stamped at whole pixels on a canvas 1.5 times
    the side; the sub-pixel part of the offset and the rotation are applied together by one
    bilinear affine warp that keeps the centre ``side x side``.

    Example:
        >>> layout = DigitLayout(digit=3, font=usable_fonts()[0], height=22.0)
        >>> render_alpha(layout).shape, render_alpha(layout, side=64).shape
        ((32, 32), (64, 64))
    """
    scale = side / _SIDE
    size = _size_for_height(layout.font, round(layout.height * scale * 4) / 4)
    n = round(_CANVAS * scale)
    canvas = np.zeros((n, n), dtype=np.uint8)
    ink, _, top = _glyph(layout.font, size, str(layout.digit))
    x0, y0 = (n - ink.shape[1]) // 2, (n - ink.shape[0]) // 2  # ink top-left
    _stamp(canvas, ink, x0, y0)
    gap = round(layout.gap * scale)
    if layout.left is not None:
        other, _, o_top = _glyph(layout.font, size, str(layout.left))
        _stamp(canvas, other, x0 - gap - other.shape[1], y0 + o_top - top)  # same baseline
    if layout.right is not None:
        other, _, o_top = _glyph(layout.font, size, str(layout.right))
        _stamp(canvas, other, x0 + ink.shape[1] + gap, y0 + o_top - top)
    centre = (x0 + ink.shape[1] / 2, y0 + ink.shape[0] / 2)
    shift = (layout.dx * scale, layout.dy * scale)
    return _warp(canvas, centre, shift=shift, angle=layout.angle, side=side)


def _stamp(canvas: np.ndarray, ink: np.ndarray, x: int, y: int) -> None:
    """Draw ``ink`` with its top-left at ``(x, y)`` (clipped), keeping the brighter pixel."""
    h, w = ink.shape
    ys = slice(max(y, 0), min(y + h, canvas.shape[0]))
    xs = slice(max(x, 0), min(x + w, canvas.shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        part = ink[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
        np.maximum(canvas[ys, xs], part, out=canvas[ys, xs])


def _warp(
    canvas: np.ndarray,
    centre: tuple[float, float],
    *,
    shift: tuple[float, float],
    angle: float,
    side: int,
) -> np.ndarray:
    """Rotate by ``angle`` degrees CCW about ``centre``, move ``centre`` to the output centre
    plus ``shift``, and keep a ``side x side`` window (bilinear)."""
    theta = np.deg2rad(angle)
    a, b, d, e = np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)  # output -> input
    ox, oy = side / 2 + shift[0], side / 2 + shift[1]  # where the centre lands in the output
    cx, cy = centre
    c = cx - a * ox - b * oy
    f = cy - d * ox - e * oy
    out = Image.fromarray(canvas).transform(
        (side, side), Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR
    )
    return np.asarray(out, dtype=np.float32) / 255.0
