"""Font filter and glyph rendering behind the syn and svhnlike domains."""

from __future__ import annotations

import numpy as np
import pytest

from mapguard.data import usable_fonts
from mapguard.data._fonts import DigitLayout, _is_usable, font_dir, render_alpha


def test_enough_fonts_draw_ten_distinct_digits() -> None:
    fonts = usable_fonts()
    assert len(fonts) >= 3, fonts
    names = {f.stem for f in fonts}
    assert not any(n.startswith(("cmex", "cmsy", "cmmi")) for n in names)


@pytest.mark.parametrize("stem", ["cmsy10", "cmex10", "DejaVuSansDisplay", "STIXNonUni"])
def test_fonts_without_real_digits_are_rejected(stem: str) -> None:
    # cmsy10/cmex10 map "0".."9" to math symbols; the others draw nothing for digits.
    path = font_dir() / f"{stem}.ttf"
    if not path.is_file():
        pytest.skip(f"{path.name} not shipped by this matplotlib")
    assert not _is_usable(path)


def test_symbol_font_rejected_by_rendering_alone(monkeypatch) -> None:
    # Without the name and cmap checks, LastResort (one box for every character) still fails.
    from mapguard.data import _fonts

    monkeypatch.setattr(_fonts, "_maps_digits", lambda path: True)
    path = font_dir() / "LastResortHE-Regular.ttf"
    if not path.is_file():
        pytest.skip("LastResortHE not shipped by this matplotlib")
    assert not _fonts._is_usable(path)


def _ink(alpha: np.ndarray) -> tuple[int, float, float]:
    ys, xs = np.nonzero(alpha > 0.5)
    return ys.max() - ys.min() + 1, (ys.max() + ys.min()) / 2, (xs.max() + xs.min()) / 2


@pytest.mark.parametrize("height", [20.0, 24.0])
def test_digits_are_centred_and_of_the_requested_height(height: float) -> None:
    for font in usable_fonts():
        inks = [
            _ink(render_alpha(DigitLayout(digit=d, font=font, height=height))) for d in range(10)
        ]
        heights, cys, cxs = np.array(inks).T
        assert abs(np.median(heights) - height) <= 1.5, (font.name, heights)
        assert np.abs(cys - 15.5).max() <= 1.0 and np.abs(cxs - 15.5).max() <= 1.5, font.name


def test_layout_offsets_rotation_and_neighbours_act() -> None:
    font = usable_fonts()[0]
    base = render_alpha(DigitLayout(digit=7, font=font, height=22))
    shifted = render_alpha(DigitLayout(digit=7, font=font, height=22, dx=3.0, dy=-2.0))
    _, cy0, cx0 = _ink(base)
    _, cy1, cx1 = _ink(shifted)
    assert (round(cx1 - cx0), round(cy1 - cy0)) == (3, -2)
    rotated = render_alpha(DigitLayout(digit=7, font=font, height=22, angle=10.0))
    assert not np.array_equal(rotated, base) and abs(rotated.sum() - base.sum()) < 0.1 * base.sum()
    flanked = render_alpha(DigitLayout(digit=7, font=font, height=22, left=8, right=8))
    assert flanked[:, :5].sum() > 0 and flanked[:, -5:].sum() > 0  # neighbours cut at the border
    assert base[:, :5].sum() == 0 and base[:, -5:].sum() == 0
    assert 0.0 <= flanked.min() and flanked.max() <= 1.0
