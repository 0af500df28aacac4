"""Obtain an RFC 3161 time-stamp token for a commitment from a time-stamp authority (TSA).

The owner's side of trusted timestamps (``mapguard timestamp``): the request certifies the
commitment digest (:func:`verification.timestamps.timestamp_request`), goes to the TSA over HTTP
(``application/timestamp-query``, RFC 3161 section 3.4), and the reply is stored unchanged, as
DER, next to the commitment (``commitment.tsr``; docs/FORMATS.md). The arbiter checks it with
``mapguard check --timestamp``/``mapguard report --timestamp`` and the TSA's certificate.

Example::

    from mapguard.timestamping import timestamp_commitment
    res = timestamp_commitment("out/commitment.dsse.json", tsa_url="https://freetsa.org/tsr",
                               tsa_cert="freetsa-chain.pem", out="out/commitment.tsr")
    print(res.token.time, res.verified)
"""

from __future__ import annotations

import dataclasses
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mapguard._errors import MapguardError
from protocols import dsse, statements
from protocols.fileio import MAX_JSON_BYTES, atomic_write_bytes, check_writable, read_input
from verification import timestamps

__all__ = ["TimestampResult", "timestamp_commitment"]

_QUERY = "application/timestamp-query"
_REPLY = "application/timestamp-reply"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimestampResult:
    """What :func:`timestamp_commitment` wrote.

    Attributes:
        out: The token file (the TSA's DER reply, unchanged).
        commitment_digest: The digest the token certifies (hex SHA-256).
        token: What the token says (its time, serial, policy).
        verified: The token was checked against ``tsa_cert`` (a :class:`CertifiedTime`).
        tsa_url: Where it came from.
    """

    out: Path
    commitment_digest: str
    token: timestamps.TokenInfo
    verified: bool
    tsa_url: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "out": str(self.out),
            "commitment_digest": self.commitment_digest,
            "token": dataclasses.asdict(self.token),
            "verified": self.verified,
            "tsa_url": self.tsa_url,
        }


def _statement(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The commitment statement in an envelope, decoded WITHOUT checking its signature: a token
    certifies only that these bytes existed; the signature is the arbiter's to check."""
    data = read_input(path, "commitment", max_bytes=MAX_JSON_BYTES)
    envelope = dsse.parse_envelope(data, source=f"'{path}'")
    statement = statements.decode_unverified(envelope, source=f"'{path}'")
    if statement["predicateType"] != statements.COMMITMENT_PREDICATE_TYPE:
        raise MapguardError(f"'{path}' holds a {statement['predicateType']!r} statement, "
                            "not a commitment")  # fmt: skip
    return statement


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MapguardError(f"--tsa {url!r} is not an http:// or https:// URL")
    return url


def _post(url: str, body: bytes, timeout: float) -> bytes:
    """POST a time-stamp query; the reply's body (at most ``MAX_TOKEN_BYTES``)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": _QUERY, "Accept": _REPLY}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - checked
            data = reply.read(timestamps.MAX_TOKEN_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise MapguardError(f"the TSA at {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MapguardError(f"cannot reach the TSA at {url}: {reason}") from None
    if len(data) > timestamps.MAX_TOKEN_BYTES:
        raise MapguardError(f"the TSA at {url} answered more than "
                            f"{timestamps.MAX_TOKEN_BYTES:,} bytes")  # fmt: skip
    return data


def timestamp_commitment(
    commitment: str | os.PathLike[str],
    *,
    tsa_url: str,
    out: str | os.PathLike[str],
    tsa_cert: str | os.PathLike[str] | None = None,
    force: bool = False,
    timeout: float = 30.0,
) -> TimestampResult:
    """Ask the TSA at ``tsa_url`` to certify ``commitment``'s digest; write its reply to ``out``.

    The reply must be granted, certify the commitment digest and echo the request's nonce;
    with ``tsa_cert`` (the TSA's certificate and CA chain, PEM) it must also verify, as
    ``mapguard check`` will verify it. Nothing is written otherwise.

    Raises:
        MapguardError: a bad URL, the TSA unreachable or answering an error.
        TimestampError: the reply is not a granted token on this request, or does not verify.
        OutputExistsError: ``out`` exists and ``force`` is false.
    """
    url = _check_url(tsa_url)
    statement = _statement(commitment)
    trust = None if tsa_cert is None else timestamps.load_tsa_trust(tsa_cert)
    check_writable(out, force=force)
    request = timestamps.timestamp_request(statement)
    data = _post(url, request.der, timeout)
    info = timestamps.check_reply(data, request, source=f"the reply of {url}")
    if trust is not None:
        info = timestamps.verify_timestamp(
            data, statement, trust, nonce=request.nonce, source=f"the reply of {url}"
        )
    atomic_write_bytes(out, data, force=force)
    return TimestampResult(
        out=Path(out), commitment_digest=request.digest, token=info,
        verified=trust is not None, tsa_url=url,
    )  # fmt: skip
