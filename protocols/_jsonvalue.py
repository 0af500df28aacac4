"""Private: strict JSON parsing and a pre-flight check for canonicalisation.

Python's :mod:`json` accepts things two parties can disagree about: duplicate object keys (last
one wins in Python, first one in other parsers), ``NaN``/``Infinity`` and lone surrogates. Evidence
files are parsed here instead, so any such document is refused with the offending location.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import rfc8785

from protocols.errors import InputError, SchemaError

# RFC 8785 serialises numbers as IEEE-754 doubles; integers outside +-(2**53 - 1) would be rounded.
MAX_SAFE_INT = 2**53 - 1


def _reject_constant(name: str) -> Any:
    raise InputError(f"JSON constant {name} is not allowed")


def _parse_int(token: str) -> int | float:
    # JSON has one number type (RFC 8785 / I-JSON: IEEE-754 doubles). A large integer token is
    # accepted only if it is exactly how RFC 8785 writes some double (e.g. 2.0**60 is written
    # 1152921504606847000), and is then read as that double; any other large integer would be
    # silently rounded by some parser, so it is refused.
    value = int(token)
    if abs(value) <= MAX_SAFE_INT:
        return value
    as_float = float(value)
    if math.isfinite(as_float) and rfc8785.dumps(as_float).decode("ascii") == token:
        return as_float
    raise InputError(
        f"integer {token} is not exactly representable as a JSON number (IEEE-754 double); "
        "large values (seeds, ids) must be strings"
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InputError(f"duplicate JSON object key {key!r}")
        out[key] = value
    return out


def loads_strict(data: bytes | str, *, source: str = "JSON document") -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, non-finite numbers and invalid text.

    Integer tokens beyond +-(2**53 - 1) are read as floats when they are the RFC 8785 spelling
    of a double (so canonical output always parses back), and refused otherwise.

    Raises:
        InputError: naming ``source`` and the reason.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
        )
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: invalid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    try:
        check_jsonable(obj)
    except SchemaError as exc:
        raise SchemaError(f"{source}: {exc}") from None
    return obj


def _fmt_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_jsonable(obj: Any, path: tuple[str | int, ...] = ()) -> None:
    """Raise :class:`SchemaError` at the first value RFC 8785 cannot represent exactly.

    Allowed: ``dict`` with ``str`` keys, ``list``/``tuple``, ``str`` (no lone surrogates),
    ``bool``, ``None``, ``int`` within +-(2**53 - 1), finite ``float``.
    """
    if obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_SAFE_INT:
            raise SchemaError(
                f"{_fmt_path(path)}: integer {obj} is outside +-(2**53 - 1) and cannot be "
                "canonicalised; encode large values (seeds, ids) as strings"
            )
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise SchemaError(f"{_fmt_path(path)}: {obj!r} is not representable in JSON")
        return
    if isinstance(obj, str):
        _check_str(obj, path)
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise SchemaError(f"{_fmt_path(path)}: object key {key!r} is not a string")
            _check_str(key, path)
            check_jsonable(value, (*path, key))
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            check_jsonable(value, (*path, i))
        return
    raise SchemaError(
        f"{_fmt_path(path)}: value of type {type(obj).__name__} is not JSON "
        "(use dict, list, str, int, float, bool or None)"
    )


def _check_str(s: str, path: tuple[str | int, ...]) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaError(f"{_fmt_path(path)}: string {s!r} contains a lone surrogate") from None
