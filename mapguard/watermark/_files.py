"""The embedding's outputs: documents (watermark file, commitment) and the atomic output folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mapguard import __version__
from protocols import canonical, keys, openings, statements
from protocols.errors import InputError, OutputExistsError

__all__ = [
    "COMMITMENT_FILE",
    "CONFIG_FILE",
    "EXPORT_FILE",
    "FILES",
    "METHOD_NAME",
    "METRICS_FILE",
    "MODEL_FILE",
    "WATERMARK_FILE",
    "commitment_statement",
    "now_rfc3339",
    "output_dir",
    "watermark_document",
    "write_private",
]

MODEL_FILE = "protected.pt"
EXPORT_FILE = "protected.pt2"
WATERMARK_FILE = "owner.wm"
COMMITMENT_FILE = "commitment.dsse.json"
CONFIG_FILE = "embed-config.json"
METRICS_FILE = "metrics.json"
#: Every file an embedding writes, in the order a reader meets them.
FILES = (MODEL_FILE, EXPORT_FILE, WATERMARK_FILE, COMMITMENT_FILE, CONFIG_FILE, METRICS_FILE)
METHOD_NAME = "map-watermark"
TEST_NAME = "exact-max-rank"
_PRIVATE_MODE = 0o600


def now_rfc3339() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tool() -> dict[str, str]:
    return {"name": "mapguard", "version": __version__}


def _raw_public_key(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def commitment_statement(
    *,
    core: Mapping[str, Any],
    public: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    model: Mapping[str, Any],
    subjects: list[tuple[str, str]],
    method: Mapping[str, Any],
    verification: Mapping[str, Any],
    created: str,
) -> dict[str, Any]:
    """The in-toto Statement of the commitment (digests only; validated)."""
    predicate = {
        "schema_version": "1",
        "created": created,
        "tool": _tool(),
        "owner_key_fingerprint": keys.fingerprint(private_key.public_key()),
        "model": dict(model),
        "method": dict(method),
        "trigger_family": dict(core["trigger_family"]),
        "commitments": dict(public),
        "verification": dict(verification),
    }
    return statements.make_statement(
        subjects=subjects,
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )


def watermark_document(
    *,
    core: Mapping[str, Any],
    opened: Mapping[str, Any],
    statement: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    calibration: Mapping[str, Any],
) -> dict[str, Any]:
    """The private ``watermark-file-v1`` document that opens ``statement``."""
    predicate = statement["predicate"]
    return {
        "schema_version": "1",
        "created": predicate["created"],
        "tool": _tool(),
        "owner_key_fingerprint": predicate["owner_key_fingerprint"],
        "owner_public_key": _raw_public_key(private_key),
        "model": dict(predicate["model"]),
        "method": dict(predicate["method"]),
        **{k: core[k] for k in ("trigger_family", "secrets", "verification_set")},
        "verification": dict(predicate["verification"]),
        "calibration": dict(calibration),
        "openings": dict(opened),
        "commitment_statement_sha256": statements.statement_digest(statement),
    }


def make_openings(core: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public commitments, private openings)`` of the core (fresh OS-random nonces)."""
    return openings.make_commitments(core)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, _PRIVATE_MODE)


def write_public_json(path: Path, obj: Any) -> None:
    """Canonical JSON plus newline (inside the staging folder)."""
    path.write_bytes(canonical.canonical_bytes(obj) + b"\n")


def check_output_dir(out: Path, *, force: bool) -> Path:
    """Fail early (before minutes of work) if ``out`` cannot be written."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"output folder '{out}' exists; pass --force to overwrite")
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' exists and is not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{out}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write '{out}': folder '{parent}' is not writable")
    return out


@contextlib.contextmanager
def output_dir(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a staging folder next to ``out``; on success it replaces ``out`` in one rename.

    On any exception the staging folder is removed and ``out`` is left as it was. With
    ``force`` an existing ``out`` is moved aside first and deleted after the swap.
    """
    out = check_output_dir(out, force=force)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or "."))
    try:
        yield stage
        check_output_dir(out, force=force)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            old.rmdir()
            os.replace(out, old)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
