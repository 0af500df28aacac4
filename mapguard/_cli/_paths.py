"""Checks on a command's paths before it does any work (see :class:`mapguard._cli.Command`).

An output option is ``--out``, ``--out-*``, ``--*-out``, ``--pdf`` or ``--export``; every other
parameter whose value names an existing file or folder is an input. Before the command runs:

- a file output (``click.Path(dir_okay=False)``) given with a trailing separator (``newdir/``) is
  refused: it names a folder, and writing a file called ``newdir`` is never what was meant;
- no output is also an input (``--out owner.wm --watermark owner.wm --force`` once replaced the
  private watermark file by a 0644 result), no output folder contains an input, and no two
  outputs are the same file;
- the directory of every output accepts a new file, probed by creating one
  (:func:`protocols.fileio.probe_directory`), so an unwritable path fails now, not after the work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from protocols.errors import InputError
from protocols.fileio import probe_directory

__all__ = ["check_paths", "raw_values"]

_SEPARATORS = tuple(s for s in (os.sep, os.altsep) if s)
_Item = tuple[click.Parameter, str]


def raw_values(command: click.Command, ctx: click.Context, args: list[str]) -> dict[str, Any]:
    """Parameter values as typed, before click converts them (``Path`` drops a trailing ``/``)."""
    try:
        opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except click.ClickException:
        return {}  # the real parse reports it
    return opts


def check_paths(ctx: click.Context, raw: Mapping[str, Any]) -> None:
    """Refuse the invocation in ``ctx`` if its outputs clash with its inputs or cannot be written.

    Raises:
        InputError: the first problem found, naming the path and the option.
    """
    items = list(_path_items(ctx))
    outputs = [(p, v) for p, v in items if is_output(p)]
    inputs = [(p, v) for p, v in items if not is_output(p) and os.path.exists(v)]
    for param, value in outputs:
        if _is_file_output(param):
            _check_file_path(param, raw.get(param.name), value)
        for other, path in inputs:
            _check_not_input(param, value, other, path)
    for i, (param, value) in enumerate(outputs):
        for other, path in outputs[i + 1 :]:
            if _same_target(value, path):
                raise InputError(f"outputs {_label(param)} and {_label(other)} both name '{value}'")
    for param, value in outputs:
        if _is_file_output(param) or Path(value).parent.is_dir():
            probe_directory(value)  # a folder output may be made with its parents (demo)


def is_output(param: click.Parameter) -> bool:
    """Whether ``param`` names something the command writes."""
    if not isinstance(param, click.Option):
        return False
    return any(
        o.startswith("--out") or o.endswith("-out") or o in ("--pdf", "--export")
        for o in param.opts
    )


def _is_file_output(param: click.Parameter) -> bool:
    return isinstance(param.type, click.Path) and not param.type.dir_okay


def _path_items(ctx: click.Context) -> Iterator[_Item]:
    """``(parameter, path string)`` for every string or path value (each item of a multiple)."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, (str, os.PathLike)) and os.fspath(v) not in ("", "-"):
                yield param, os.fspath(v)


def _check_file_path(param: click.Parameter, raw: Any, value: str) -> None:
    typed = raw if isinstance(raw, str) else value
    if typed.endswith(_SEPARATORS):
        raise InputError(
            f"output '{typed}' ends with a path separator: {_label(param)} names a file, not a "
            f"folder (to write into folder '{typed}', add a file name: '{typed}NAME')"
        )


def _check_not_input(param: click.Parameter, out: str, other: click.Parameter, path: str) -> None:
    if os.path.exists(out) and os.path.samefile(out, path):
        raise InputError(f"output '{out}' is also an input ({_label(other)}); write it elsewhere")
    if not _is_file_output(param) and os.path.isdir(out):
        folder, inside = Path(out).resolve(), Path(path).resolve()
        if inside.is_relative_to(folder):
            raise InputError(
                f"output folder '{out}' contains input '{path}' ({_label(other)}), which writing "
                f"{_label(param)} would replace; write it elsewhere"
            )


def _same_target(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return Path(a).resolve() == Path(b).resolve()


def _label(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts)[0]
    return (param.name or "").upper()
