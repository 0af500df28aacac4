"""The commitment's RFC 3161 time-stamp token: checked at report time with the TSA certificate
the user gives, never with a certificate found inside the token alone."""

from __future__ import annotations

import dataclasses
import os

from mapguard.report._errors import ReportError
from mapguard.report._sources import FAILED, VERIFIED, InputFile, SignatureCheck, SignedDoc, _read
from verification import timestamps

__all__ = ["TimestampEvidence", "load_timestamp"]

ROLE = "commitment timestamp"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimestampEvidence:
    """A token on the commitment and how it checked.

    Attributes:
        check: Its check (role ``"commitment timestamp"``): verified, or failed with the reason.
        certified: The certified time, if it verified.
        files: Custody records of the token and the TSA certificate file.
    """

    check: SignatureCheck
    certified: timestamps.CertifiedTime | None
    files: tuple[InputFile, ...]


def load_timestamp(
    token_path: str | os.PathLike[str] | None,
    tsa_cert_path: str | os.PathLike[str] | None,
    commitment: SignedDoc,
) -> TimestampEvidence | None:
    """Check the token at ``token_path`` on ``commitment`` with the certificate at
    ``tsa_cert_path`` (None: no token given).

    Raises:
        ReportError: a token without a TSA certificate (or the reverse).
        TimestampError: rfc3161-client is missing or the certificate file is unusable.
    """
    if token_path is None and tsa_cert_path is None:
        return None
    if tsa_cert_path is None:
        raise ReportError(
            f"the time-stamp token '{token_path}' needs the TSA's certificate (--tsa-cert, PEM: "
            "the TSA certificate and its CA chain); a certificate inside the token is never "
            "trusted on its own"
        )
    if token_path is None:
        raise ReportError(f"--tsa-cert '{tsa_cert_path}' is given without a --timestamp token")
    timestamps.ensure_available()
    token_file, data = _read(token_path, ROLE)
    cert_file, _ = _read(tsa_cert_path, "TSA certificate")
    trust = timestamps.load_tsa_trust(tsa_cert_path)
    path, certified = str(token_path), None
    if commitment.statement is None:
        detail = "the commitment is a bare predicate: no statement digest for a token to certify"
        check = SignatureCheck(file=path, role=ROLE, status=FAILED, detail=detail)
    else:
        try:
            certified = timestamps.verify_timestamp(
                data, commitment.statement, trust, source=f"token '{token_path}'"
            )
        except timestamps.TimestampError as exc:
            check = SignatureCheck(file=path, role=ROLE, status=FAILED, detail=str(exc))
        else:
            check = SignatureCheck(
                file=path, role=ROLE, status=VERIFIED, detail=_detail(certified),
                signer=certified.tsa_certificate_sha256,
            )  # fmt: skip
    return TimestampEvidence(check=check, certified=certified, files=(token_file, cert_file))


def _detail(c: timestamps.CertifiedTime) -> str:
    accuracy = "" if c.accuracy_seconds is None else f" (accuracy ±{c.accuracy_seconds:g} s)"
    return (f"RFC 3161 token certifies the commitment digest at {c.time}{accuracy}; verified "
            f"with the TSA certificate '{c.tsa}' ({c.tsa_certificate_sha256}) from "
            f"'{c.trust_source}'")  # fmt: skip
