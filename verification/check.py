"""Check a signed commitment or verification result: signature first, then schema, then content.

``check(file, pubkey, watermark=None)`` runs, in order and stopping at the first failure (so no
unauthenticated byte is ever interpreted):

1. ``signature``: the file is a DSSE envelope signed by ``pubkey``;
2. ``schema``: its payload is an in-toto Statement v1 whose predicate validates against the schema
   of its type (``commitment-predicate-v1`` or ``result-predicate-v1``);
3. ``signer`` (a commitment): ``pubkey`` is the owner key the predicate names
   (``owner_key_fingerprint``), so a copy re-signed by anyone else fails. A result predicate
   names no signer: whose result it is, is what ``pubkey`` says;
4. ``subject``: the statement's subject digest is the model it speaks about (the protected model
   of a commitment, the suspect of a result: a remote one's query log, whose digest and summary
   ``query log`` then checks) and, with ``artifact``, the digest of that file;
   ``timestamp`` (a commitment, with ``timestamp`` and ``tsa_cert``): the RFC 3161 token
   certifies the commitment digest and verifies with the TSA certificate the user supplied
   (:func:`verification.timestamps.verify_timestamp`); its time is ``CheckResult.timestamp``;
5. with ``watermark`` (the revealed owner's file): ``watermark``: the file opens and its own
   signature verifies with ``pubkey`` (for a commitment: the owner key it names);
   ``commitment``: it belongs to this statement and every committed digest opens to the revealed
   secrets, trigger parameters and verification set; ``triggers``: the recorded triggers are the
   ones the secrets derive; ``verification set``: the inline images match their digest.

Example:
    >>> import tempfile, pathlib
    >>> from protocols import keys, statements, dsse
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> info = keys.generate_keypair(d / "k")
    >>> _ = (d / "empty.json").write_text("{}")
    >>> res = check(d / "empty.json", info.public_path)
    >>> res.ok, [(item.name, item.ok) for item in res.items]
    (False, [('signature', False)])
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols import canonical, dsse, keys, openings, statements
from protocols.analysis import claim_null_seed
from protocols.errors import InputError, SignatureError
from protocols.fileio import MAX_JSON_BYTES, read_input, regular_file, sha256_file
from verification import timestamps
from verification._backends.querylog import check_query_log
from verification._verify.result_document import result_subject
from verification.channel import channel_spec, check_combined
from verification.forgery import check_audit
from verification.triggers import get_trigger_family
from verification.watermark_file import (
    MAX_FILE_BYTES,
    WatermarkFile,
    decode_verification_set,
    open_watermark,
)

__all__ = ["CheckItem", "CheckResult", "check"]

_KINDS = {
    statements.COMMITMENT_PREDICATE_TYPE: "commitment",
    statements.RESULT_PREDICATE_TYPE: "result",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckItem:
    """One check: its name, whether it held, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckResult:
    """Outcome of :func:`check`.

    Attributes:
        ok: Every check held (and at least the signature, schema and subject were checked).
        kind: ``"commitment"``, ``"result"`` or ``"unknown"`` (if the signature failed).
        items: The checks run, in order; the last one failed if ``ok`` is false.
        signer: Fingerprint of ``pubkey``.
        statement_digest: SHA-256 of the signed statement (the commitment digest), once known.
        subjects: ``(name, sha256)`` of each subject, once the statement is authenticated.
        timestamp: The time certified by the commitment's RFC 3161 token, if one was checked
            and verified.
        created: The statement's own ``created`` time (the signer's clock), once authenticated.
    """

    ok: bool
    kind: str
    items: tuple[CheckItem, ...]
    signer: str
    statement_digest: str | None = None
    subjects: tuple[tuple[str, str], ...] = ()
    timestamp: timestamps.CertifiedTime | None = None
    created: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


class _Failed(Exception):
    """Internal: a check did not hold (message = detail)."""


@dataclasses.dataclass
class _Run:
    items: list[CheckItem] = dataclasses.field(default_factory=list)

    def step(self, name: str, fn: Callable[[], str]) -> None:
        try:
            detail = fn()
        except (_Failed, InputError) as exc:
            self.items.append(CheckItem(name=name, ok=False, detail=str(exc)))
            raise _Failed(str(exc)) from None
        self.items.append(CheckItem(name=name, ok=True, detail=detail))


def _public_key(pubkey: str | os.PathLike[str] | Ed25519PublicKey) -> Ed25519PublicKey:
    return pubkey if isinstance(pubkey, Ed25519PublicKey) else keys.load_public_key(pubkey)


def check(
    file: str | os.PathLike[str],
    pubkey: str | os.PathLike[str] | Ed25519PublicKey,
    watermark: str | os.PathLike[str] | None = None,
    *,
    passphrase: bytes | None = None,
    artifact: str | os.PathLike[str] | None = None,
    timestamp: str | os.PathLike[str] | None = None,
    tsa_cert: str | os.PathLike[str] | None = None,
    query_log: str | os.PathLike[str] | None = None,
) -> CheckResult:
    """Check a signed commitment or result file (see the module docstring for the steps).

    Args:
        file: ``commitment.dsse.json`` or a signed ``result.json``.
        pubkey: The owner's (or arbiter's) public key: a ``.pub`` path or a key object.
        watermark: The revealed watermark file, to check that the commitment opens to it.
        passphrase: Passphrase of an encrypted watermark file.
        artifact: The model file the statement is about, to compare its digest with the subject.
        timestamp: An RFC 3161 token on the commitment (``commitment.tsr``); needs ``tsa_cert``.
        tsa_cert: The TSA's certificate and its CA chain up to the root (PEM), to check
            ``timestamp`` against.
        query_log: A remote result's query log (default: next to ``file``, by its recorded
            name): its SHA-256 and summary must be those the result records.

    Returns:
        :class:`CheckResult`; problems with the content of ``file`` or ``watermark`` are failed
        checks, never exceptions.

    Raises:
        InputError: ``pubkey`` cannot be loaded, or ``file``, ``watermark`` or ``artifact``
            cannot be read: missing, not a regular file, or (``file``: 1 MiB, ``watermark``:
            :data:`~verification.watermark_file.MAX_FILE_BYTES`) too large; ``timestamp``
            without ``tsa_cert`` (or the reverse), or an unusable TSA certificate file.
    """
    key = _public_key(pubkey)
    signer = keys.fingerprint(key)
    data = read_input(file, "signed statement", max_bytes=MAX_JSON_BYTES)
    wm = None
    if watermark is not None:
        wm = (Path(watermark), read_input(watermark, "watermark", max_bytes=MAX_FILE_BYTES))
    artifact_path = None if artifact is None else regular_file(artifact, "artifact")
    token = timestamps.read_token_inputs(timestamp, tsa_cert)
    run, state = _Run(), _State()
    try:
        run.step("signature", lambda: _signature(data, Path(file), key, state))
        run.step("schema", lambda: _schema(state))
        if state.kind == "commitment":
            run.step("signer", lambda: _named_signer(state, signer))
        run.step("subject", lambda: _subject(state, artifact_path))
        if "query_log" in state.statement["predicate"] and state.kind == "result":
            log = state.statement["predicate"]["query_log"]
            run.step("query log", lambda: check_query_log(log, query_log, Path(file)))
        if token is not None:
            run.step("timestamp", lambda: _timestamp(*token, state))
        if wm is not None:
            run.step("watermark", lambda: _watermark(*wm, key, passphrase, state))
            for name, fn in _WATERMARK_CHECKS[state.kind]:
                run.step(name, lambda fn=fn: fn(state))
        ok = True
    except _Failed:
        ok = False
    return CheckResult(
        ok=ok,
        kind=state.kind,
        items=tuple(run.items),
        signer=signer,
        statement_digest=state.digest,
        subjects=state.subjects,
        timestamp=state.certified,
        created=state.statement.get("predicate", {}).get("created"),
    )


@dataclasses.dataclass
class _State:
    payload: bytes = b""
    statement: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = "unknown"
    digest: str | None = None
    subjects: tuple[tuple[str, str], ...] = ()
    wm: WatermarkFile | None = None
    certified: timestamps.CertifiedTime | None = None


def _signature(data: bytes, path: Path, key: Ed25519PublicKey, state: _State) -> str:
    envelope = dsse.parse_envelope(data, source=f"'{path}'")
    state.payload = dsse.verify_envelope(
        envelope, key, expected_payload_type=statements.PAYLOAD_TYPE
    )
    return f"DSSE signature by {keys.fingerprint(key)} verifies"


def _schema(state: _State) -> str:
    statement = canonical.loads(state.payload, source="signed statement")
    statements.validate_statement(statement)
    kind = _KINDS.get(statement["predicateType"])
    if kind is None:
        raise _Failed(f"predicate type {statement['predicateType']!r} is not checked here")
    state.statement, state.kind = statement, kind
    state.digest = statements.statement_digest(statement)
    state.subjects = tuple((s["name"], s["digest"]["sha256"]) for s in statement["subject"])
    return f"in-toto Statement v1 with a valid {kind} predicate"


def _named_signer(state: _State, signer: str) -> str:
    named = state.statement["predicate"]["owner_key_fingerprint"]
    if signer != named:
        raise _Failed(
            f"signed by key {signer}, but the commitment names owner key {named}; a commitment "
            "counts only when signed by the key it names"
        )
    return f"signed by the owner key the commitment names ({named})"


def _subject(state: _State, artifact: Path | None) -> str:
    predicate = state.statement["predicate"]
    named = predicate["model"]["sha256"] if state.kind == "commitment" else (
        result_subject(predicate)[1])  # fmt: skip
    digests = [d for _, d in state.subjects]
    if digests[0] != named:
        raise _Failed(f"subject digest {digests[0]} is not the predicate's model {named}")
    if artifact is None:
        return f"subject {named}"
    actual = sha256_file(artifact)
    if actual not in digests:
        raise _Failed(f"'{artifact}' has sha256 {actual}, not a subject of this statement")
    return f"'{artifact}' is the subject ({actual})"


def _timestamp(path: Path, data: bytes, trust: timestamps.TsaTrust, state: _State) -> str:
    if state.kind != "commitment":
        raise _Failed("a time-stamp token is checked on a commitment, not on a result")
    c = timestamps.verify_timestamp(data, state.statement, trust, source=f"token '{path}'")
    state.certified = c
    accuracy = "" if c.accuracy_seconds is None else f" (±{c.accuracy_seconds:g} s)"
    return (f"RFC 3161 token certifies the commitment digest at {c.time}{accuracy}; TSA "
            f"'{c.tsa}' ({c.tsa_certificate_sha256[:23]}..., from '{trust.source}'), policy "
            f"{c.policy}, serial {c.serial_number}")  # fmt: skip


def _watermark(
    path: Path, data: bytes, key: Ed25519PublicKey, passphrase: bytes | None, state: _State
) -> str:
    """The watermark file is signed by ``key``: for a commitment, the owner key it names."""
    source = f"'{path}'"
    whose = "the owner key the commitment names" if state.kind == "commitment" else "the key given"
    try:
        state.wm = open_watermark(data, passphrase=passphrase, public_key=key, source=source)
    except SignatureError as exc:
        try:  # who did sign it? (integrity only: the key the file names for itself)
            actual = open_watermark(data, passphrase=passphrase, source=source).signer
        except InputError:
            raise exc from None
        raise _Failed(
            f"the watermark file is signed by key {actual}, not by {keys.fingerprint(key)} "
            f"({whose})"
        ) from None
    return f"watermark file signed by {state.wm.signer} ({whose})"


def _belongs(state: _State) -> str:
    wm = state.wm
    assert wm is not None  # set by the previous step
    if wm.commitment_digest != state.digest:
        raise _Failed(
            f"the watermark belongs to commitment {wm.commitment_digest}, not this one "
            f"({state.digest})"
        )
    openings.check_openings(state.statement["predicate"], wm.plain())
    if wm.plain()["verification"] != state.statement["predicate"]["verification"]:
        raise _Failed("the watermark file's analysis differs from the committed analysis")
    channel_spec(wm)  # a committed channel's secret and query set open their digests too
    return "every committed digest opens to the revealed values"


def _triggers(state: _State) -> str:
    wm = state.wm
    assert wm is not None
    doc = wm.document
    family = get_trigger_family(doc["trigger_family"]["name"])
    params = dict(doc["trigger_family"]["parameters"])
    for i, entry in enumerate(doc["secrets"]):
        derived = family.derive(bytes.fromhex(entry["secret"]), params=params)
        recorded = dict(entry["trigger"])
        if recorded.get("fingerprint") != derived.fingerprint() or dict(
            recorded.get("details", {})
        ) != dict(derived.details):
            raise _Failed(f"secret {i}: the recorded trigger is not the one the secret derives")
    return f"{len(doc['secrets'])} triggers re-derived from their secrets"


def _verification_set(state: _State) -> str:
    wm = state.wm
    assert wm is not None
    images, _ = decode_verification_set(wm.document["verification_set"])
    return f"{images.shape[0]} inline images match their digest"


def _result_link(state: _State) -> str:
    wm = state.wm
    assert wm is not None
    linked = state.statement["predicate"]["watermark"]
    if linked["commitment_digest"] != wm.commitment_digest:
        raise _Failed(
            f"the result is for commitment {linked['commitment_digest']}, the watermark for "
            f"{wm.commitment_digest}"
        )
    if linked["model_sha256"] != wm.model_sha256:
        raise _Failed("the result names another protected model than the watermark")
    return "the result refers to this watermark's commitment"


def _result_analysis(state: _State) -> str:
    """The result ran the committed analysis: sizes, test, mode, alpha and the null seed."""
    wm = state.wm
    assert wm is not None
    result = state.statement["predicate"]
    if result.get("exploratory"):
        raise _Failed("the result is EXPLORATORY: it did not run the committed analysis")
    committed = wm.analysis
    if "analysis" in result and result["analysis"] != committed.to_block():
        raise _Failed("the result's analysis is not the committed one")
    test = result["test"]
    found = {
        "images per key": (test.get("n"), committed.images_per_key),
        "null keys per secret": (test.get("null_keys_per_secret"),
                                 committed.null_keys_per_secret),
        "secrets": (test.get("n_secrets"), committed.n_secrets),
    }  # fmt: skip
    if committed.version != "legacy":
        found["alpha"] = (test.get("alpha"), committed.alpha / committed.channels)
        if committed.mode_rule == "labels":
            found["mode"] = (result.get("query_mode"), "labels")
    bad = [f"{name} {got!r} (committed {want!r})" for name, (got, want) in found.items()
           if got != want]  # fmt: skip
    if bad:
        raise _Failed(f"the result departs from the committed analysis: {'; '.join(bad)}")
    seed = _result_seed(result, wm.commitment_digest, committed.version)
    return seed + check_combined(result, committed) + check_audit(result)


def _result_seed(result: Mapping[str, Any], commitment_digest: str, version: str) -> str:
    nonce = result.get("claim_nonce")
    if nonce is None:
        if version != "legacy":
            raise _Failed("the result records no claim nonce: its null keys cannot be re-derived")
        return "the result ran the committed sizes (it predates claim nonces: seed not re-derived)"
    seed = claim_null_seed(commitment_digest=commitment_digest, claim_nonce=nonce)
    if result["test"].get("null_seed") != seed:
        raise _Failed("the result's null seed is not the one the commitment and its nonce give")
    return f"the committed analysis was run, null keys from claim nonce {nonce!r}"


_WATERMARK_CHECKS: Mapping[str, tuple[tuple[str, Callable[[_State], str]], ...]] = {
    "commitment": (
        ("commitment", _belongs),
        ("triggers", _triggers),
        ("verification set", _verification_set),
    ),
    "result": (("commitment", _result_link), ("analysis", _result_analysis)),
}
