"""Read the report's input files once, hash them, and check their signatures.

Every file is read into memory once; its SHA-256 (chain of custody) and its parsed content come
from the same bytes, so the digest printed in the report is the digest of what was reported on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mapguard.report._errors import ReportError
from protocols import canonical, dsse, keys, schemas, statements
from protocols.errors import InputError, SignatureError
from protocols.fileio import read_input
from verification.check import check
from verification.watermark_file import open_watermark

__all__ = [
    "FAILED",
    "UNCHECKED",
    "UNSIGNED",
    "VERIFIED",
    "InputFile",
    "PublicKey",
    "SignatureCheck",
    "SignedDoc",
    "load_public_keys",
    "load_signed",
    "load_watermark",
]

VERIFIED = "verified"
UNSIGNED = "unsigned"
FAILED = "FAILED"
UNCHECKED = "not checked"

_ENVELOPE_KEYS = frozenset({"payload", "payloadType", "signatures"})
# Steps of verification.check.check() about the commitment itself (reported on its own row).
_COMMITMENT_STEPS = ("signature", "schema", "signer", "subject")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignatureCheck:
    """How one input file's authenticity was established at report time.

    Attributes:
        file: The path as given.
        role: ``"verification result"``, ``"commitment"`` or ``"watermark file"``.
        status: :data:`VERIFIED`, :data:`UNSIGNED`, :data:`FAILED` or :data:`UNCHECKED`.
        detail: One sentence for the reader (which key, or why it failed).
        signer: Fingerprint of the key whose signature verified, if any.
    """

    file: str
    role: str
    status: str
    detail: str
    signer: str | None = None

    @property
    def name(self) -> str:
        """The file's base name."""
        return Path(self.file).name

    @property
    def verified(self) -> bool:
        """True if the signature (or, for the watermark file, the commitment opening) held."""
        return self.status == VERIFIED


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputFile:
    """Chain-of-custody record of one input file."""

    role: str
    path: str
    name: str
    size: int
    sha256: str
    modified: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublicKey:
    """A loaded Ed25519 public key and its file."""

    file: InputFile
    fingerprint: str
    key: Ed25519PublicKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignedDoc:
    """A result or commitment: its predicate, its statement (if any) and its signature check."""

    predicate: dict[str, Any]
    statement: dict[str, Any] | None
    check: SignatureCheck
    file: InputFile


def _read(path: str | os.PathLike[str], role: str) -> tuple[InputFile, bytes]:
    p = Path(path)
    try:
        data = read_input(p, role)
        mtime = p.stat().st_mtime
    except InputError as exc:
        raise ReportError(str(exc)) from None
    except OSError as exc:
        raise ReportError(f"cannot read {role} file '{p}': {exc.strerror}") from None
    modified = dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc)
    record = InputFile(
        role=role,
        path=str(p),
        name=p.name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        modified=modified.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return record, data


def load_public_keys(paths: Sequence[str | os.PathLike[str]]) -> tuple[PublicKey, ...]:
    """Load Ed25519 public keys (PEM) and their custody records."""
    loaded = []
    for path in paths:
        record, _ = _read(path, "public key")
        key = keys.load_public_key(path)
        loaded.append(PublicKey(file=record, fingerprint=keys.fingerprint(key), key=key))
    return tuple(loaded)


def load_signed(
    path: str | os.PathLike[str],
    *,
    role: str,
    schema: str,
    predicate_type: str,
    public_keys: Sequence[PublicKey],
) -> SignedDoc:
    """Read a DSSE-signed statement, a bare statement, or a bare predicate.

    A signed envelope is verified with each key in turn; if none verifies (or none is given)
    the statement is still decoded, schema-checked and returned with a :data:`FAILED` /
    :data:`UNCHECKED` status, so the caller decides whether to refuse.

    Raises:
        SchemaError: the (signed or plain) content does not match its schema.
        SignatureError: the file is a malformed envelope.
        ReportError: unreadable file.
    """
    record, data = _read(path, role)
    doc = canonical.loads(data, source=f"'{path}'")
    if isinstance(doc, Mapping) and _ENVELOPE_KEYS <= doc.keys():
        envelope = dsse.parse_envelope(data, source=f"'{path}'")
        statement, check = _open_envelope(envelope, str(path), role, predicate_type, public_keys)
        predicate = statement["predicate"]
    else:
        statement, predicate = _plain(doc, str(path), schema, predicate_type)
        check = SignatureCheck(
            file=str(path), role=role, status=UNSIGNED, detail="plain JSON: carries no signature"
        )
    return SignedDoc(predicate=predicate, statement=statement, check=check, file=record)


def _open_envelope(
    envelope: Mapping[str, Any],
    path: str,
    role: str,
    predicate_type: str,
    public_keys: Sequence[PublicKey],
) -> tuple[dict[str, Any], SignatureCheck]:
    failures = []
    for pk in public_keys:
        try:
            statement = statements.verify_statement(
                envelope, pk.key, expected_predicate_type=predicate_type
            )
        except SignatureError as exc:
            failures.append(str(exc))
            continue
        detail = f"Ed25519 signature verified with public key {pk.fingerprint}"
        return statement, SignatureCheck(
            file=path, role=role, status=VERIFIED, detail=detail, signer=pk.fingerprint
        )
    statement = _decode_unverified(envelope, path, predicate_type)
    if not public_keys:
        detail = "signed envelope, but no public key was given to check it"
        return statement, SignatureCheck(file=path, role=role, status=UNCHECKED, detail=detail)
    detail = "signature does not verify: " + "; ".join(failures)
    return statement, SignatureCheck(file=path, role=role, status=FAILED, detail=detail)


def _decode_unverified(
    envelope: Mapping[str, Any], path: str, predicate_type: str
) -> dict[str, Any]:
    """The envelope's statement WITHOUT checking its signature (for marked, unverified reports)."""
    statement = statements.decode_unverified(envelope, source=f"'{path}'")
    _expect_type(statement, path, predicate_type)
    return statement


def _plain(
    doc: Any, path: str, schema: str, predicate_type: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if isinstance(doc, Mapping) and "_type" in doc:
        statements.validate_statement(doc)
        _expect_type(doc, path, predicate_type)
        return dict(doc), doc["predicate"]
    schemas.validate(doc, schema)
    return None, doc


def _expect_type(statement: Mapping[str, Any], path: str, predicate_type: str) -> None:
    if statement["predicateType"] != predicate_type:
        raise ReportError(
            f"'{path}' holds a {statement['predicateType']!r} statement, "
            f"expected {predicate_type!r}"
        )


def load_watermark(
    path: str | os.PathLike[str],
    *,
    commitment: SignedDoc,
    public_keys: Sequence[PublicKey],
    passphrase: bytes | None = None,
) -> tuple[dict[str, Any], InputFile, SignatureCheck]:
    """Open the owner's signed (maybe encrypted) watermark file; check it opens the commitment.

    With a key that verifies it, :func:`verification.check.check` then confirms that the
    commitment opens to the revealed values (digests, triggers, verification set). Without one,
    the file is opened against the key it names for itself (integrity only) and marked.

    Raises:
        InputError: unreadable, encrypted without (or with a wrong) passphrase, malformed.
    """
    record, data = _read(path, "watermark file")
    failures = []
    for pk in public_keys:
        try:
            wm = open_watermark(data, passphrase=passphrase, public_key=pk.key, source=f"'{path}'")
        except SignatureError as exc:
            failures.append(str(exc))
            continue
        return wm.plain(), record, _opening_check(str(path), commitment, pk, passphrase)
    wm = open_watermark(data, passphrase=passphrase, source=f"'{path}'")
    role = "watermark file"
    if not public_keys:
        detail = "signed, but no public key was given to check it"
        return (
            wm.plain(),
            record,
            SignatureCheck(file=str(path), role=role, status=UNCHECKED, detail=detail),
        )
    detail = "signature does not verify: " + "; ".join(failures)
    return (
        wm.plain(),
        record,
        SignatureCheck(file=str(path), role=role, status=FAILED, detail=detail),
    )


def _opening_check(
    path: str, commitment: SignedDoc, key: PublicKey, passphrase: bytes | None
) -> SignatureCheck:
    """Signature of the watermark file, plus the arbiter's commitment-opening checks."""
    outcome = check(commitment.file.path, key.key, path, passphrase=passphrase)
    role = "watermark file"
    if outcome.ok:
        details = [i.detail for i in outcome.items if i.name not in _COMMITMENT_STEPS]
        return SignatureCheck(
            file=path, role=role, status=VERIFIED, detail="; ".join(details), signer=key.fingerprint
        )
    failed = outcome.items[-1]
    detail = f"check '{failed.name}' failed: {failed.detail}"
    return SignatureCheck(file=path, role=role, status=FAILED, detail=detail)
