"""The query log of a remote suspect: every exchange with the endpoint, as evidence.

A JSON-lines file (``mapguard-query-log-v1``). The first line is the header, which binds the log
to one verification (endpoint, wire format, input shape, batch size, commitment digest, claim
nonce, null seed, query budget). Every HTTP exchange then appends one line, written and
fsynced before the next request is sent:

``{"type": "exchange", "index": i, "kind": "probe" | "query" | "recheck" | "metadata",
"attempt": a, "images": n, "request_sha256": ..., "status": 200 | null, "error": ... | null,
"response_sha256": ..., "response": "<the body, as text>" | null, "started": RFC 3339,
"elapsed_s": ..., "retry_after_s": ...}``

``index`` numbers the requests of the verification in their fixed order (the committed analysis
and the claim nonce fix it), ``attempt`` the tries of one request. An exchange that carries an
answer stores the response body, so an interrupted run resumes from the log without asking the
endpoint again: the recomputed request must have the logged ``request_sha256``, or the log is
refused. A resumed run appends ``{"type": "resume", "time": ...}``. The result records the
log's SHA-256 and :class:`LogSummary`; ``check`` recomputes both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from protocols import canonical
from protocols.fileio import atomic_write_bytes
from verification._errors import SuspectError

__all__ = [
    "LOG_SCHEMA",
    "MAX_LOG_BYTES",
    "LogSummary",
    "QueryLog",
    "check_query_log",
    "read_query_log",
    "summarize",
]

LOG_SCHEMA = "mapguard-query-log-v1"
#: Largest query log read back (a 1,000-class model answering 10^5 images stays below it).
MAX_LOG_BYTES = 2**31
_MAX_LINE_BYTES = 2**28
#: Header fields that must agree for a run to resume from a log.
_BINDING = (
    "endpoint", "format", "template_sha256", "input_shape", "batch_size", "commitment_digest",
    "claim_nonce", "null_seed", "analysis", "queries_needed",
)  # fmt: skip


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _line(entry: Mapping[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogSummary:
    """What a query log holds, for the result and the report's chain of custody.

    Attributes:
        endpoint: The URL queried (no credentials).
        requests: Requests answered (distinct indices with a usable answer).
        queries: Images in the answered requests (the probe and re-asked images included).
        exchanges: HTTP exchanges, every attempt counted.
        failures: Exchanges without a usable answer (timeouts, refused, 429/5xx, bad bodies).
        retries: Attempts after the first of a request.
        sessions: Runs that wrote to the log (1 + the resumes).
        first, last: Times of the first and the last exchange (None: no exchange).
    """

    endpoint: str
    requests: int
    queries: int
    exchanges: int
    failures: int
    retries: int
    sessions: int
    first: str | None
    last: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _answered(entry: Mapping[str, Any]) -> bool:
    return entry.get("type") == "exchange" and entry.get("response") is not None


def _summary(header: Mapping[str, Any], entries: list[dict[str, Any]]) -> LogSummary:
    exchanges = [e for e in entries if e.get("type") == "exchange"]
    answered = {e["index"]: e for e in exchanges if _answered(e) and e.get("index") is not None}
    times = [e["started"] for e in exchanges]
    return LogSummary(
        endpoint=str(header.get("endpoint", "")),
        requests=len(answered),
        queries=sum(int(e.get("images", 0)) for e in answered.values()),
        exchanges=len(exchanges),
        failures=sum(1 for e in exchanges if not _answered(e)),
        retries=sum(1 for e in exchanges if int(e.get("attempt", 0)) > 0),
        sessions=1 + sum(1 for e in entries if e.get("type") == "resume"),
        first=min(times) if times else None,
        last=max(times) if times else None,
    )


def _parse_line(raw: bytes, number: int, source: str) -> dict[str, Any]:
    try:
        entry = canonical.loads(raw, source=f"{source} line {number}")
    except ValueError as exc:
        raise SuspectError(f"{exc}") from None
    if not isinstance(entry, dict) or "type" not in entry:
        raise SuspectError(f"{source} line {number} is not a query-log entry")
    body = entry.get("response")
    if body is not None and _sha256(str(body).encode("utf-8")) != entry.get("response_sha256"):
        raise SuspectError(
            f"{source} line {number}: the stored response does not have its recorded sha256"
        )
    return entry


def _lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """Lines of ``path`` (bounded) and whether each ended with a newline."""
    if not path.is_file():
        raise SuspectError(f"query log '{path}' does not exist or is not a file")
    if path.stat().st_size > MAX_LOG_BYTES:
        raise SuspectError(f"query log '{path}' is larger than {MAX_LOG_BYTES} bytes")
    with open(path, "rb") as fh:
        while raw := fh.readline(_MAX_LINE_BYTES):
            yield raw, raw.endswith(b"\n")


def read_query_log(
    path: str | os.PathLike[str], *, allow_torn_tail: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Read and check a query log: ``(header, entries, sha256 of the file)``.

    Every stored response must have its recorded digest. ``allow_torn_tail`` drops a last line
    cut short by a crash (the bytes are then not counted in the digest).

    Raises:
        SuspectError: Missing, too large, malformed, or not a ``mapguard-query-log-v1`` log.
    """
    p = Path(path)
    source = f"query log '{p}'"
    digest, header, entries = hashlib.sha256(), None, []
    for number, (raw, whole) in enumerate(_lines(p), start=1):
        if not whole:
            if allow_torn_tail:
                break
            raise SuspectError(f"{source} line {number} is cut short (no newline)")
        entry = _parse_line(raw, number, source)
        digest.update(raw)
        if header is None:
            if entry.get("type") != "header" or entry.get("schema") != LOG_SCHEMA:
                raise SuspectError(f"{source} does not start with a {LOG_SCHEMA} header")
            header = entry
        else:
            entries.append(entry)
    if header is None:
        raise SuspectError(f"{source} is empty")
    return header, entries, digest.hexdigest()


def summarize(path: str | os.PathLike[str]) -> tuple[LogSummary, str]:
    """The summary and SHA-256 of the query log at ``path`` (checked as :func:`read_query_log`)."""
    header, entries, digest = read_query_log(path)
    return _summary(header, entries), digest


class QueryLog:
    """An append-only query log bound to one verification (see the module docstring).

    Args:
        path: The log file.
        header: The binding fields (:data:`_BINDING`) and anything else to record.
        resume: Continue an existing log (its header must agree); without it an existing log is
            refused, so no run overwrites evidence.

    Raises:
        SuspectError: The log exists without ``resume``, is missing with it, or belongs to
            another verification.
    """

    def __init__(self, path: str | os.PathLike[str], header: Mapping[str, Any], *, resume: bool):
        self.path = Path(path)
        self.header = {"type": "header", "schema": LOG_SCHEMA, **header}
        self._answers: dict[int, dict[str, Any]] = {}
        self._entries: list[dict[str, Any]] = []
        if self.path.exists() and not resume:
            raise SuspectError(
                f"query log '{self.path}' exists (an interrupted run?): pass --resume to continue "
                "it, or name another --query-log"
            )
        if resume:
            self._resume()
        else:
            self.header["created"] = canonical.now_rfc3339()
            atomic_write_bytes(self.path, _line(self.header))
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the run, closed in close()
        if resume:
            self.append({"type": "resume", "time": canonical.now_rfc3339()})

    def _resume(self) -> None:
        if not self.path.exists():
            raise SuspectError(f"--resume: there is no query log '{self.path}' to continue")
        header, entries, _ = read_query_log(self.path, allow_torn_tail=True)
        differ = [k for k in _BINDING if header.get(k) != self.header.get(k)]
        if differ:
            raise SuspectError(
                f"query log '{self.path}' belongs to another verification ({', '.join(differ)} "
                "differ): resume with the same suspect, watermark, claim nonce and options"
            )
        whole = b"".join(_line(e) for e in [header, *entries])
        if whole != self.path.read_bytes():  # a torn last line, or another serialisation
            atomic_write_bytes(self.path, whole, force=True)
        self.header = header
        self._entries = entries
        for entry in entries:
            if _answered(entry) and entry.get("index") is not None:
                self._answers[int(entry["index"])] = entry

    def answered(self, index: int) -> dict[str, Any] | None:
        """The logged exchange that answered request ``index``, or None."""
        return self._answers.get(index)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` as one line, on disk before this returns."""
        data = dict(entry)
        self._fh.write(_line(data))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._entries.append(data)
        if _answered(data) and data.get("index") is not None:
            self._answers[int(data["index"])] = data

    def summary(self) -> LogSummary:
        return _summary(self.header, self._entries)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def record(self) -> dict[str, Any]:
        """The result's ``query_log`` block: file name, SHA-256 and summary (closes the log)."""
        self.close()
        summary, digest = summarize(self.path)
        return {"name": self.path.name, "sha256": digest, **summary.to_dict()}


def check_query_log(
    block: Mapping[str, Any], path: str | os.PathLike[str] | None, result_file: Path
) -> str:
    """The log a result's ``query_log`` block names has its recorded SHA-256 and summary.

    ``path`` None: the log next to ``result_file`` under its recorded name.

    Raises:
        SuspectError: The log is missing, unreadable, or not the one the result records.
    """
    p = Path(path) if path is not None else result_file.parent / str(block.get("name", ""))
    if path is None and not p.is_file():
        raise SuspectError(
            f"the result's query log '{p.name}' is not next to the result; give --query-log"
        )
    summary, digest = summarize(p)
    if digest != block.get("sha256"):
        raise SuspectError(
            f"query log '{p}' has sha256 {digest}, the result records {block.get('sha256')}: "
            "it is not the log of this result (or it was changed)"
        )
    differ = [k for k, v in summary.to_dict().items() if block.get(k) != v]
    if differ:
        raise SuspectError(f"the result's query-log summary disagrees with the log: {differ}")
    return (f"query log '{p.name}' ({digest[:16]}...) holds the {summary.queries} queries of "
            f"{summary.endpoint}: {summary.requests} requests, {summary.failures} failed "
            f"exchanges, {summary.retries} retries, {summary.first} .. {summary.last}")  # fmt: skip
