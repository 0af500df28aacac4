"""Values shown in the report, each read from a named field of a source document.

Numbers are never re-typed: a :class:`Cell` is made by :meth:`Sources.num`, which reads the
value at a path (``"result:test.pvalue"``) of the loaded JSON and keeps both the path and the
exact stored value, which the template writes into ``data-field`` / ``data-value`` attributes so
anyone (and the tests) can check every number against its file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["FORMATS", "MISSING", "Cell", "Sources", "format_value", "parse_path"]

MISSING: Any = object()
_DIGEST = re.compile(r"(?:SHA256:|sha256:)?[0-9a-f]{32,}")
_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One value as displayed.

    Attributes:
        text: What the reader sees.
        field: ``"source:path"`` the value was read from ("" for prose and derived text).
        raw: JSON text of the stored value (exact), "" when not read from a document.
        unit: ``"%"`` when a proportion is shown as a percentage.
        mono: Render in a monospace font (digests, fingerprints, commands).
    """

    text: str
    field: str = ""
    raw: str = ""
    unit: str = ""
    mono: bool = False


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _pvalue(v: float) -> str:
    return f"{v:.3e}" if 0 < v < 1e-3 else f"{v:.4g}"


def _int(v: Any) -> str:
    return str(int(v)) if isinstance(v, int | float) and float(v).is_integer() else str(v)


FORMATS: dict[str, Callable[[Any], str]] = {
    "float": lambda v: f"{v:.4g}",
    "pvalue": _pvalue,
    "int": _int,
    "percent": _pct,
    "text": str,
}


def format_value(value: Any, kind: str) -> str:
    """Text of ``value`` in display format ``kind`` (see :data:`FORMATS`); JSON for non-numbers."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float) and kind != "text":
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return FORMATS[kind](value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def parse_path(path: str) -> list[str | int]:
    """``'test.per_secret[0]["a.b"]'`` -> ``['test', 'per_secret', 0, 'a.b']``."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bad field path {path!r} at {pos}")
        name, index, quoted = m.groups()
        tokens.append(name if name is not None else int(index) if index else json.loads(quoted))
        pos = m.end()
    return tokens


def join_path(prefix: str, key: str | int) -> str:
    """Append ``key`` to a field path, quoting keys that are not plain names."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


class Sources:
    """The loaded documents by name (``result``, ``commitment``, ``watermark``)."""

    def __init__(self, docs: Mapping[str, Any]) -> None:
        self._docs = dict(docs)

    def get(self, ref: str, default: Any = MISSING) -> Any:
        """The value at ``"source:path"``; ``default`` (or KeyError) when absent."""
        source, _, path = ref.partition(":")
        node = self._docs.get(source, MISSING)
        for token in parse_path(path) if path else []:
            node = _step(node, token)
            if node is MISSING:
                break
        if node is MISSING:
            if default is MISSING:
                raise KeyError(ref)
            return default
        return node

    def has(self, ref: str) -> bool:
        """Whether ``ref`` names a present, non-null value."""
        return self.get(ref, None) is not None

    def first(self, *refs: str) -> str | None:
        """The first of ``refs`` that is present (see :meth:`has`), else None."""
        return next((r for r in refs if self.has(r)), None)

    def num(self, ref: str | None, kind: str = "float") -> Cell:
        """A cell showing the value at ``ref`` ("not recorded" when ``ref`` is None/absent)."""
        if ref is None or not self.has(ref):
            return Cell(text="not recorded")
        value = self.get(ref)
        return Cell(
            text=format_value(value, kind),
            field=ref,
            raw=json.dumps(value, sort_keys=True),
            unit="%" if kind == "percent" else "",
            mono=isinstance(value, str) and _DIGEST.fullmatch(value) is not None,
        )

    def first_key(self, base: str, keys: tuple[str, ...]) -> str | None:
        """``base.key`` for the first of ``keys`` present under ``base``, else None."""
        return self.first(*(join_path(base, k) for k in keys))

    def flatten(self, ref: str) -> Iterator[tuple[str, Cell]]:
        """``(label, cell)`` for every scalar under ``ref`` (nested objects and lists walked)."""
        yield from _walk(self, ref, "")


def _step(node: Any, token: str | int) -> Any:
    if isinstance(token, int):
        ok = isinstance(node, list) and 0 <= token < len(node)
        return node[token] if ok else MISSING
    return node.get(token, MISSING) if isinstance(node, Mapping) else MISSING


def _walk(sources: Sources, ref: str, label: str) -> Iterator[tuple[str, Cell]]:
    value = sources.get(ref, None)
    if isinstance(value, Mapping):
        for key in sorted(value):
            yield from _walk(sources, join_path(ref, key), join_path(label, key))
    elif isinstance(value, list) and value and any(isinstance(v, Mapping | list) for v in value):
        for i in range(len(value)):
            yield from _walk(sources, join_path(ref, i), join_path(label, i))
    else:
        kind = "int" if isinstance(value, int) and not isinstance(value, bool) else "float"
        yield label or ref, sources.num(ref, kind if isinstance(value, int | float) else "text")
