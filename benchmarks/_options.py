"""Command-line pieces the benchmarks share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["add_overrides", "key_value"]


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(key, value)``: the value is read as JSON when it parses (``2``, ``true``,
    ``[1, 2]``), else kept as text; dashes in the key become underscores (as ``mapguard -o``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


class _Gather(argparse.Action):
    """Collects repeated ``KEY=VALUE`` values into one dict (later keys win)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        key, value = values  # type: ignore[misc]
        setattr(namespace, self.dest, {**getattr(namespace, self.dest), key: value})


def add_overrides(parser: argparse.ArgumentParser, flags: Sequence[str] | str, help: str) -> None:
    """A repeatable ``FLAG KEY=VALUE`` option whose values arrive as one dict (``{}`` if unused);
    ``help`` says what it overrides (the value is read as JSON where it parses)."""
    names = [flags] if isinstance(flags, str) else list(flags)
    parser.add_argument(
        *names,
        action=_Gather,
        type=key_value,
        default={},
        metavar="KEY=VALUE",
        help=f"override a {help} (repeatable; VALUE read as JSON)",
    )
