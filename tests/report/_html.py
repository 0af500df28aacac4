"""A small stdlib HTML reader for the report tests: sections, value cells, banners, images."""

from __future__ import annotations

import dataclasses
import json
import math
from html.parser import HTMLParser
from typing import Any

SECTIONS = [
    "summary",
    "parties",
    "models",
    "commitment",
    "embedding",
    "protocol",
    "results",
    "figures",
    "custody",
    "reproduce",
    "limitations",
]


@dataclasses.dataclass
class CellSeen:
    field: str
    raw: str
    unit: str
    text: str = ""


@dataclasses.dataclass
class Parsed:
    sections: list[str] = dataclasses.field(default_factory=list)
    cells: list[CellSeen] = dataclasses.field(default_factory=list)
    banners: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    images: list[str] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    check_rows: list[list[str]] = dataclasses.field(default_factory=list)
    text: str = ""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self._cell: CellSeen | None = None
        self._banner: list[str] | None = None
        self._banner_level = ""
        self._row: list[str] | None = None
        self._td: list[str] | None = None
        self._chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.out.tags.append(tag)
        if tag == "section":
            self.out.sections.append(a.get("id", ""))
        elif tag == "span" and "data-field" in a:
            self._cell = CellSeen(
                field=a["data-field"], raw=a["data-value"], unit=a.get("data-unit", "")
            )
        elif tag == "div" and "banner" in a.get("class", "").split():
            self._banner, self._banner_level = [], a["class"].split()[-1]
        elif tag == "img":
            self.out.images.append(a.get("src", ""))
        elif tag == "tr" and a.get("class") == "check":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._td = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._cell is not None:
            self.out.cells.append(self._cell)
            self._cell = None
        elif tag == "div" and self._banner is not None:
            self.out.banners.append((self._banner_level, "".join(self._banner).strip()))
            self._banner = None
        elif tag == "td" and self._td is not None and self._row is not None:
            self._row.append("".join(self._td).strip())
            self._td = None
        elif tag == "tr" and self._row is not None:
            self.out.check_rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        for sink in (self._banner, self._td):
            if sink is not None:
                sink.append(data)
        if self._cell is not None:
            self._cell.text += data


def parse_report(html: str) -> Parsed:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    reader.out.text = " ".join(reader._chunks)
    return reader.out


def lookup(doc: Any, path: str) -> Any:
    """Value at a report field path (``test.per_secret[0].rank``) of ``doc``."""
    from mapguard.report._cells import parse_path

    node = doc
    for token in parse_path(path):
        node = node[token]
    return node


def shown_matches(cell: CellSeen, value: Any) -> bool:
    """Whether the displayed text is the stored value (up to the display precision)."""
    if isinstance(value, bool) or value is None:
        return cell.text == json.dumps(value)
    if isinstance(value, int | float):
        shown = float(cell.text.replace("%", "").strip())
        if cell.unit == "%":
            return math.isclose(shown / 100, value, abs_tol=5.1e-4)
        return math.isclose(shown, value, rel_tol=5e-4, abs_tol=1e-300)
    if isinstance(value, str):
        return cell.text == value
    return cell.text == json.dumps(value, sort_keys=True)
