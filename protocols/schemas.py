"""Versioned JSON Schemas (draft 2020-12) for every document two parties exchange.

Schemas ship as package data in ``protocols/schemas/NAME.json``:

- ``statement-v1``: an in-toto Statement v1 (the signed envelope payload);
- ``commitment-predicate-v1``: the published watermark commitment (digests only);
- ``watermark-file-v1``: the owner's private watermark record (secrets, nonces);
- ``result-predicate-v1``: a verification result.

Example:
    >>> "statement-v1" in list_schemas()
    True
    >>> validate({"_type": "https://in-toto.io/Statement/v1", "subject": [],
    ...           "predicateType": "x", "predicate": {}}, "statement-v1")
    Traceback (most recent call last):
    ...
    protocols.errors.SchemaError: statement-v1: $.subject: [] should be non-empty
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from protocols.errors import InputError, SchemaError

__all__ = ["list_schemas", "load_schema", "validate"]

_PACKAGE = "protocols"
_DIR = "schemas"
_MAX_MESSAGE = 240


def list_schemas() -> list[str]:
    """Names of the bundled schemas, sorted (``"statement-v1"``, ...)."""
    root = resources.files(_PACKAGE) / _DIR
    return sorted(p.name.removesuffix(".json") for p in root.iterdir() if p.name.endswith(".json"))


@functools.cache
def _load(name: str) -> str:
    if name not in list_schemas():
        raise InputError(f"unknown schema {name!r}; choose one of: {', '.join(list_schemas())}")
    return (resources.files(_PACKAGE) / _DIR / f"{name}.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A fresh copy of the schema ``name`` as a dict.

    Raises:
        InputError: unknown schema name (the message lists the known ones).
    """
    return json.loads(_load(name))


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name))


def _format_path(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def validate(doc: Any, schema_name: str) -> None:
    """Validate ``doc`` against the bundled schema ``schema_name``.

    Raises:
        SchemaError: ``"<schema>: <json path>: <message>"`` for the most relevant violation.
        InputError: unknown schema name.
    """
    error = best_match(_validator(schema_name).iter_errors(doc))
    if error is None:
        return
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    raise SchemaError(f"{schema_name}: {_format_path(error.absolute_path)}: {message}")
