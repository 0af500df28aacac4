"""RFC 3161 time-stamp tokens on a commitment: what they certify, how they are requested and
checked (over the ``rfc3161-client`` package, the optional extra ``mapguard[timestamp]``).

What a token certifies (docs/FORMATS.md, "Trusted timestamps"): its message imprint is the
SHA-256 of the commitment statement's canonical JSON (RFC 8785), i.e. the commitment digest that
every watermark file and result already names, and the DSSE payload of every mapguard
commitment. It is the statement, not the envelope file, that is certified: the same statement
re-encoded (whitespace) keeps its token, and its signature is checked on its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from protocols import canonical, statements
from protocols.fileio import MAX_JSON_BYTES, read_input
from verification._errors import VerificationError

__all__ = [
    "MAX_TOKEN_BYTES",
    "CertifiedTime",
    "TimestampError",
    "TimestampRequest",
    "TokenInfo",
    "TsaTrust",
    "check_reply",
    "commitment_digest",
    "ensure_available",
    "load_tsa_trust",
    "read_token",
    "timestamp_request",
    "verify_timestamp",
]

#: Largest token file read (a token with a long certificate chain is a few KiB).
MAX_TOKEN_BYTES = MAX_JSON_BYTES
_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_INSTALL = "pip install 'mapguard[timestamp]'"


class TimestampError(VerificationError):
    """A time-stamp token that cannot be read or does not verify, or an unusable TSA
    certificate file."""


def ensure_available() -> None:
    """Raise :class:`TimestampError` (with the install command) if rfc3161-client is missing."""
    _rfc3161()


def _rfc3161() -> Any:
    try:
        import rfc3161_client
    except ImportError:
        raise TimestampError(
            f"trusted timestamps need the optional package rfc3161-client ({_INSTALL})"
        ) from None
    return rfc3161_client


def commitment_digest(statement: Mapping[str, Any]) -> str:
    """Hex SHA-256 the token must certify: the statement's canonical JSON (the commitment
    digest, :func:`protocols.statements.statement_digest`)."""
    return statements.statement_digest(statement)


# ---- the TSA's certificate, as the arbiter supplies it ------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class TsaTrust:
    """The TSA certificate and chain given by the user (never taken from a token).

    Attributes:
        tsa: The TSA's signing certificate (the one with the time-stamping purpose).
        intermediates: CA certificates between it and a root.
        roots: Self-signed certificates: the trust anchors.
        source: The file they were read from.
    """

    tsa: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    source: str

    @property
    def subject(self) -> str:
        """The TSA certificate's subject (RFC 4514)."""
        return self.tsa.subject.rfc4514_string()

    @property
    def fingerprint(self) -> str:
        """``SHA256:`` + hex of the TSA certificate's DER bytes."""
        return "SHA256:" + hashlib.sha256(self.tsa.public_bytes(Encoding.DER)).hexdigest()


def _time_stamping(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return x509.ExtendedKeyUsageOID.TIME_STAMPING in eku


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature, unsupported key
        return False
    return True


def load_tsa_trust(path: str | os.PathLike[str]) -> TsaTrust:
    """Read the TSA's certificate and its CA chain up to a root from one PEM file.

    The file holds exactly one certificate with the time-stamping extended key usage (the TSA's)
    and at least one self-signed certificate (the root it chains to; the TSA's own if it is
    self-signed); any others are intermediates.

    Raises:
        TimestampError: unreadable PEM, no or several TSA certificates, or no root.
    """
    p = Path(path)
    data = read_input(p, "TSA certificate", max_bytes=MAX_JSON_BYTES)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TimestampError(f"TSA certificate file '{p}' is not PEM certificates: {exc}") from None
    tsas = [c for c in certs if _time_stamping(c)]
    if len(tsas) != 1:
        found = "no certificate" if not tsas else f"{len(tsas)} certificates"
        raise TimestampError(
            f"TSA certificate file '{p}' holds {found} with the time-stamping purpose; give "
            "the TSA's own certificate followed by its CA chain up to the root (PEM)"
        )
    roots = tuple(c for c in certs if _self_signed(c))
    if not roots:
        raise TimestampError(
            f"TSA certificate file '{p}' holds no self-signed root certificate; give the TSA's "
            "certificate followed by its CA chain up to the root (PEM)"
        )
    intermediates = tuple(c for c in certs if c not in roots and c is not tsas[0])
    return TsaTrust(tsa=tsas[0], intermediates=intermediates, roots=roots, source=str(p))


# ---- the token -----------------------------------------------------------------------------------
def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenInfo:
    """What a token says, read WITHOUT checking its signature (see :class:`CertifiedTime`).

    Attributes:
        time: ``genTime`` (RFC 3339, UTC).
        accuracy_seconds: The TSA's stated accuracy of ``time`` (None: not stated).
        serial_number: The token's serial number (decimal).
        policy: The TSA policy OID (dotted).
        hash_algorithm: ``"sha256"`` (the only one accepted).
        digest: Hex message imprint: the digest certified.
        nonce: The request's nonce echoed (decimal), if any.
        tsa_name: The TSA name the token gives (not authenticated by itself), if any.
    """

    time: str
    accuracy_seconds: float | None
    serial_number: str
    policy: str
    hash_algorithm: str
    digest: str
    nonce: str | None
    tsa_name: str | None

    @property
    def datetime(self) -> dt.datetime:
        """``time`` as an aware datetime."""
        return dt.datetime.fromisoformat(self.time.replace("Z", "+00:00"))

    @property
    def latest(self) -> dt.datetime:
        """The latest instant ``time`` may stand for, given its accuracy."""
        return self.datetime + dt.timedelta(seconds=self.accuracy_seconds or 0.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CertifiedTime(TokenInfo):
    """A token whose signature, certificate chain and imprint verified.

    Attributes:
        tsa: Subject of the TSA certificate the user supplied (RFC 4514).
        tsa_certificate_sha256: ``SHA256:`` + hex of that certificate's DER bytes.
        trust_source: The file the certificate came from.
    """

    tsa: str
    tsa_certificate_sha256: str
    trust_source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def _decode(data: bytes, source: str) -> Any:
    lib = _rfc3161()
    try:
        response = lib.decode_timestamp_response(data)
    except ValueError as exc:
        raise TimestampError(f"{source} is not an RFC 3161 time-stamp response: {exc}") from None
    if response.status not in (lib.PKIStatus.GRANTED, lib.PKIStatus.GRANTED_WITH_MODS):
        text = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(
            f"{source}: the TSA did not grant the time-stamp (status {response.status}: {text})"
        )
    return response


def _accuracy(info: Any) -> float | None:
    acc = info.accuracy
    if acc is None:
        return None
    return (acc.seconds or 0) + (acc.millis or 0) / 1e3 + (acc.micros or 0) / 1e6


def _info(response: Any) -> dict[str, Any]:
    info = response.tst_info
    imprint = info.message_imprint
    name = info.name
    return {
        "time": _rfc3339(info.gen_time),
        "accuracy_seconds": _accuracy(info),
        "serial_number": str(info.serial_number),
        "policy": info.policy.dotted_string,
        "hash_algorithm": "sha256" if imprint.hash_algorithm == _SHA256_OID
        else imprint.hash_algorithm.dotted_string,
        "digest": imprint.message.hex(),
        "nonce": None if info.nonce is None else str(info.nonce),
        "tsa_name": None if name is None else str(getattr(name, "value", name)),
    }  # fmt: skip


def read_token(data: bytes, *, source: str = "time-stamp token") -> TokenInfo:
    """Decode a time-stamp response (DER) WITHOUT checking its signature.

    Raises:
        TimestampError: not a granted RFC 3161 response.
    """
    return TokenInfo(**_info(_decode(data, source)))


def _check_imprint(info: Mapping[str, Any], digest: str, source: str) -> None:
    if info["hash_algorithm"] != "sha256":
        raise TimestampError(
            f"{source} certifies a {info['hash_algorithm']} digest; a commitment's token must "
            "certify its SHA-256"
        )
    if info["digest"] != digest:
        raise TimestampError(
            f"{source} certifies digest {info['digest']}, not this commitment's digest {digest}"
        )


def verify_timestamp(
    data: bytes,
    statement: Mapping[str, Any],
    trust: TsaTrust,
    *,
    nonce: int | None = None,
    source: str = "time-stamp token",
) -> CertifiedTime:
    """Check a time-stamp response on a commitment statement against the user's TSA certificate.

    Checks, stopping at the first failure: the response is a granted RFC 3161 response; its
    imprint is the SHA-256 :func:`commitment_digest` of ``statement``; its CMS signature verifies
    with ``trust.tsa``, whose chain to one of ``trust.roots`` is valid at the token's time; the
    signer is ``trust.tsa`` itself (a certificate inside the token is never trusted on its own)
    and has the critical time-stamping purpose; with ``nonce``, the token echoes it.

    Raises:
        TimestampError: any check fails (the message says which).
    """
    return verify_timestamp_digest(
        data, commitment_digest(statement), trust, nonce=nonce, source=source
    )


def verify_timestamp_digest(
    data: bytes,
    digest: str,
    trust: TsaTrust,
    *,
    nonce: int | None = None,
    source: str = "time-stamp token",
) -> CertifiedTime:
    """:func:`verify_timestamp` on the commitment digest itself (hex SHA-256 of the statement's
    canonical JSON), e.g. as a watermark file records it.

    Raises:
        TimestampError: any check fails (the message says which).
    """
    lib = _rfc3161()
    response = _decode(data, source)
    info = _info(response)
    _check_imprint(info, digest, source)
    verifier = lib.VerifierBuilder(
        tsa_certificate=trust.tsa,
        intermediates=list(trust.intermediates),
        roots=list(trust.roots),
        nonce=nonce,
    ).build()
    try:
        verifier.verify(response, bytes.fromhex(digest))
    except lib.VerificationError as exc:
        raise TimestampError(
            f"{source} does not verify with the TSA certificate from '{trust.source}' "
            f"({trust.subject}): {exc}"
        ) from None
    return CertifiedTime(
        **info, tsa=trust.subject, tsa_certificate_sha256=trust.fingerprint,
        trust_source=trust.source,
    )  # fmt: skip


# ---- the request ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class TimestampRequest:
    """A DER ``TimeStampReq`` for a commitment: SHA-256 imprint, the TSA's certificate asked
    for, a random nonce."""

    der: bytes
    nonce: int
    digest: str


def timestamp_request(statement: Mapping[str, Any]) -> TimestampRequest:
    """The request to send a TSA for ``statement`` (see :func:`verify_timestamp`)."""
    lib = _rfc3161()
    request = (
        lib.TimestampRequestBuilder()
        .data(canonical.canonical_bytes(statement))
        .hash_algorithm(lib.HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    digest = request.message_imprint.message.hex()
    if digest != commitment_digest(statement):  # defensive: the one definition of the message
        raise TimestampError("internal: the request's imprint is not the commitment digest")
    return TimestampRequest(der=request.as_bytes(), nonce=request.nonce, digest=digest)


def check_reply(
    data: bytes, request: TimestampRequest, *, source: str = "the TSA's reply"
) -> TokenInfo:
    """Unauthenticated checks of a fresh reply: granted, this request's imprint and nonce."""
    info = _info(_decode(data, source))
    _check_imprint(info, request.digest, source)
    if info["nonce"] != str(request.nonce):
        raise TimestampError(f"{source} does not echo the request's nonce")
    return TokenInfo(**info)
