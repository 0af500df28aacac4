"""Load every input of a report, check signatures and cross-check that the files belong together."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mapguard.report._errors import ReportError, UnverifiedInputError
from mapguard.report._sources import (
    FAILED,
    UNSIGNED,
    InputFile,
    PublicKey,
    SignatureCheck,
    SignedDoc,
    load_public_keys,
    load_signed,
    load_watermark,
)
from mapguard.report._timestamp import TimestampEvidence, load_timestamp
from protocols import statements

__all__ = ["PUBLIC_WATERMARK_FIELDS", "Evidence", "load_evidence"]

# The only watermark-file fields a report may read: never secrets, nonces or openings.
PUBLIC_WATERMARK_FIELDS = (
    "created",
    "tool",
    "owner_key_fingerprint",
    "model",
    "method",
    "trigger_family",
    "calibration",
    "commitment_statement_sha256",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Evidence:
    """Everything a report is built from, loaded and checked.

    Attributes:
        result: The verification result (signed or plain).
        commitment: The owner's commitment.
        watermark: Public fields of the watermark file (see :data:`PUBLIC_WATERMARK_FIELDS`).
        watermark_file: Custody record of the watermark file, if given.
        keys: The public keys given.
        checks: One signature/integrity check per signed input, in display order.
        commitment_digest: SHA-256 of the commitment statement (what results refer to).
        timestamp: The commitment's RFC 3161 token and its check, if one was given.
    """

    result: SignedDoc
    commitment: SignedDoc
    watermark: dict[str, Any] | None
    watermark_file: InputFile | None
    keys: tuple[PublicKey, ...]
    checks: tuple[SignatureCheck, ...]
    commitment_digest: str | None
    timestamp: TimestampEvidence | None = None

    @property
    def files(self) -> tuple[InputFile, ...]:
        """Every input file, for the chain of custody."""
        files = [self.result.file, self.commitment.file]
        if self.watermark_file is not None:
            files.append(self.watermark_file)
        if self.timestamp is not None:
            files.extend(self.timestamp.files)
        return (*files, *(k.file for k in self.keys))

    @property
    def failed_checks(self) -> tuple[SignatureCheck, ...]:
        """Checks that neither verified nor are an acceptably unsigned result."""
        return tuple(c for c in self.checks if not _acceptable(c))


def _acceptable(check: SignatureCheck) -> bool:
    # A plain (unsigned) result is allowed but marked; a commitment only counts when signed.
    return check.verified or (check.status == UNSIGNED and check.role == "verification result")


def load_evidence(
    result_path: str | os.PathLike[str],
    commitment_path: str | os.PathLike[str],
    *,
    watermark_path: str | os.PathLike[str] | None = None,
    pubkey_paths: Sequence[str | os.PathLike[str]] = (),
    watermark_passphrase: bytes | None = None,
    allow_unverified: bool = False,
    timestamp_path: str | os.PathLike[str] | None = None,
    tsa_cert_path: str | os.PathLike[str] | None = None,
) -> Evidence:
    """Load and check the inputs of a report.

    Raises:
        UnverifiedInputError: a signature failed or could not be checked (one line naming the
            file) and ``allow_unverified`` is false.
        ReportError: the files do not belong together (other model, other commitment), or a
            token is given without its TSA certificate (or the reverse).
        SchemaError / SignatureError: a file is malformed.
    """
    keys = load_public_keys(pubkey_paths)
    result = load_signed(
        result_path,
        role="verification result",
        schema="result-predicate-v1",
        predicate_type=statements.RESULT_PREDICATE_TYPE,
        public_keys=keys,
    )
    commitment = _owner_checked(
        load_signed(
            commitment_path,
            role="commitment",
            schema="commitment-predicate-v1",
            predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
            public_keys=keys,
        )
    )
    checks = [result.check, commitment.check]
    timestamp = load_timestamp(timestamp_path, tsa_cert_path, commitment)
    if timestamp is not None:
        checks.append(timestamp.check)
    watermark = watermark_file = None
    if watermark_path is not None:
        full, watermark_file, wm_check = load_watermark(
            watermark_path,
            commitment=commitment,
            public_keys=keys,
            passphrase=watermark_passphrase,
        )
        watermark = {k: full[k] for k in PUBLIC_WATERMARK_FIELDS if k in full}
        checks.append(wm_check)
    evidence = Evidence(
        result=result,
        commitment=commitment,
        watermark=watermark,
        watermark_file=watermark_file,
        keys=keys,
        checks=tuple(checks),
        commitment_digest=(
            statements.statement_digest(commitment.statement) if commitment.statement else None
        ),
        timestamp=timestamp,
    )
    _refuse_unverified(evidence, allow_unverified)
    _cross_check(evidence)
    return evidence


def _owner_checked(commitment: SignedDoc) -> SignedDoc:
    """A commitment verifies only if signed by the key it names as the owner's."""
    owner = commitment.predicate["owner_key_fingerprint"]
    check = commitment.check
    if check.verified and check.signer != owner:
        detail = f"signed by key {check.signer}, but the commitment names owner key {owner}"
        check = dataclasses.replace(check, status=FAILED, detail=detail)
        return dataclasses.replace(commitment, check=check)
    return commitment


def _refuse_unverified(evidence: Evidence, allow_unverified: bool) -> None:
    failed = evidence.failed_checks
    if failed and not allow_unverified:
        c = failed[0]
        raise UnverifiedInputError(
            f"{c.role} '{c.file}': {c.status}: {c.detail}; refusing to write a report "
            "(pass --allow-unverified to write one marked UNVERIFIED)"
        )


def _cross_check(evidence: Evidence) -> None:
    problems = _problems(evidence.result, evidence.commitment, evidence.commitment_digest)
    if problems:
        raise ReportError("inputs do not belong together: " + "; ".join(problems))


def _problems(result: SignedDoc, commitment: SignedDoc, commitment_digest: str | None) -> list[str]:
    r, c = result.predicate, commitment.predicate
    problems = []
    if commitment_digest and r["watermark"]["commitment_digest"] != commitment_digest:
        problems.append(
            f"the result refers to commitment {r['watermark']['commitment_digest']}, "
            f"but '{commitment.file.path}' is commitment {commitment_digest}"
        )
    if r["watermark"]["model_sha256"] != c["model"]["sha256"]:
        problems.append(
            f"the result refers to protected model {r['watermark']['model_sha256']}, "
            f"the commitment to {c['model']['sha256']}"
        )
    subject = r["suspect"].get("sha256") or (r.get("query_log") or {}).get("sha256", "")
    if result.statement and not _has_subject(result.statement, subject):
        problems.append("the result statement's subject is not the suspect model it reports on")
    if commitment.statement and not _has_subject(commitment.statement, c["model"]["sha256"]):
        problems.append("the commitment statement's subject is not the model it commits to")
    return problems


def _has_subject(statement: Mapping[str, Any], sha256: str) -> bool:
    return any(s.get("digest", {}).get("sha256") == sha256 for s in statement["subject"])
