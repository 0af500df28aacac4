"""HTTP to a remote suspect: one client, bounded retries with backoff, a rate limit, the log.

Only the URL the user named is contacted (redirects are not followed). Every attempt is one
line in the query log (:mod:`verification._backends.querylog`); a failure that retries cannot
fix raises :class:`SuspectError` with one clear line.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocols import canonical
from protocols.fileio import MAX_KEY_BYTES, read_input
from verification._errors import SuspectError

__all__ = ["HttpOptions", "Transport", "auth_headers", "check_url"]

#: Largest answer body read from an endpoint (decompressed): the server is the accused's, and one
#: that streams without end must not exhaust the arbiter's memory. Far above any real answer
#: (4,096 images x 1,000 classes as JSON floats is about 100 MB only for absurd class counts).
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
#: HTTP statuses worth another try (rate limit, server-side trouble).
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
_HEADER_LINE = re.compile(r"^([A-Za-z0-9-]{1,64}):\s*(\S.*)$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """How to talk to the endpoint.

    Attributes:
        timeout: Seconds for one request (connect, send, answer).
        retries: Further attempts after a timeout, a refused connection, 408/425/429 or 5xx.
        backoff: First wait between attempts, doubled each time (seconds).
        max_wait: Longest wait before a retry; a ``Retry-After`` beyond it ends the run (resume
            later with the log).
        max_qps: Most images sent per second (None: no limit).
        batch_size: Most images in one request.
        ca_cert: PEM file of the CA that signed the endpoint's certificate (None: the system's).
    """

    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    max_wait: float = 60.0
    max_qps: float | None = None
    batch_size: int = 64
    ca_cert: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "backoff", "max_wait"):
            if not getattr(self, name) > 0:
                raise SuspectError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 20:
            raise SuspectError(f"retries must be an integer in 0..20, got {self.retries!r}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 4096:
            raise SuspectError(f"batch size must be in 1..4096, got {self.batch_size!r}")
        if self.max_qps is not None and not self.max_qps > 0:
            raise SuspectError(f"max qps must be positive, got {self.max_qps!r}")


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL without credentials in it."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise SuspectError(f"'{url}' is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SuspectError(f"'{url}' is not an http:// or https:// URL")
    if parsed.userinfo:
        raise SuspectError(
            "the URL holds credentials, which would be on the command line and in the result; "
            "give them with --auth-env VAR or --auth-file FILE"
        )
    return url


def auth_headers(*, env: str | None = None, file: str | os.PathLike[str] | None = None) -> dict:
    """The credential header from an environment variable or a file, never a literal value.

    The value is a bearer token (``Authorization: Bearer <token>``) or a whole header line
    (``X-Api-Key: <key>``).
    """
    if env is not None and file is not None:
        raise SuspectError("give --auth-env or --auth-file, not both")
    if env is None and file is None:
        return {}
    if env is not None:
        value = os.environ.get(env, "")
        if not value.strip():
            raise SuspectError(f"--auth-env: the environment variable {env!r} is not set or empty")
    else:
        raw = read_input(Path(file), "credentials file", max_bytes=MAX_KEY_BYTES)  # type: ignore[arg-type]
        value = raw.decode("utf-8", errors="replace")
    value = value.strip()
    if "\n" in value or not value:
        raise SuspectError("credentials must be one line: a token or 'Header-Name: value'")
    match = _HEADER_LINE.match(value)
    return {match.group(1): match.group(2)} if match else {"Authorization": f"Bearer {value}"}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Transport:
    """POSTs request bodies to one URL; logs every attempt through ``log``.

    Args:
        url: The endpoint (checked by :func:`check_url`).
        options: Timeouts, retries, rate limit.
        headers: Credentials and content type.
        log: Called with each attempt's log entry (a dict).
        sleep: The wait (tests pass a recorder; the default is :func:`time.sleep`).
    """

    def __init__(
        self,
        url: str,
        *,
        options: HttpOptions,
        headers: dict[str, str],
        log: Callable[[dict[str, Any]], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self.url, self.options, self.log, self.sleep = check_url(url), options, log, sleep
        verify: Any = True if options.ca_cert is None else _ssl_context(options.ca_cert)
        self.client = httpx.Client(
            timeout=options.timeout, headers=headers, verify=verify, follow_redirects=False
        )
        self._next_send = 0.0

    def close(self) -> None:
        self.client.close()

    def _pace(self, images: int) -> None:
        if self.options.max_qps is None:
            return
        wait = self._next_send - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._next_send = max(time.monotonic(), self._next_send) + images / self.options.max_qps

    def get(self, url: str, *, kind: str) -> bytes:
        """GET ``url`` (the model's metadata) with the same retries; the body (logged)."""
        data, entry = self._exchange("GET", url, b"", index=None, kind=kind, images=0)
        entry["response"] = data.decode("utf-8", errors="replace")
        entry["response_sha256"] = hashlib.sha256(entry["response"].encode()).hexdigest()
        self.log(entry)
        return data

    def post(self, body: bytes, *, index: int, kind: str, images: int) -> tuple[bytes, dict]:
        """POST ``body``: the body of the 200 answer (retrying what retries may fix) and its log
        entry, which the caller completes (``response`` or ``error``) and logs."""
        return self._exchange("POST", self.url, body, index=index, kind=kind, images=images)

    def _exchange(
        self, method: str, url: str, body: bytes, *, index: int | None, kind: str, images: int
    ) -> tuple[bytes, dict[str, Any]]:
        import httpx

        request_sha = hashlib.sha256(body).hexdigest()
        for attempt in range(self.options.retries + 1):
            self._pace(images)
            entry: dict[str, Any] = {
                "type": "exchange", "index": index, "kind": kind, "attempt": attempt,
                "images": images, "request_sha256": request_sha, "method": method,
                "started": canonical.now_rfc3339(), "status": None, "response": None,
            }  # fmt: skip
            t0 = time.monotonic()
            try:
                resp, data = self._read(method, url, body)
            except _Unbounded as exc:
                self._fail(entry, t0, str(exc))
            except httpx.TimeoutException:
                failure, wait = f"no answer within {self.options.timeout:g} s", None
            except httpx.TransportError as exc:
                failure, wait = _connection_failure(url, exc), None
                if failure.startswith("TLS failure"):  # a certificate does not fix itself
                    self._fail(entry, t0, failure)
            else:
                entry["status"] = resp.status_code
                entry["response_sha256"] = hashlib.sha256(data).hexdigest()
                if resp.status_code == 200:
                    entry["elapsed_s"] = round(time.monotonic() - t0, 4)
                    return data, entry
                failure = _status_failure(url, resp.status_code, data)
                wait = _retry_after(resp.headers.get("retry-after"))
                if resp.status_code not in RETRY_STATUSES:
                    self._fail(entry, t0, failure)
            self._fail(entry, t0, failure, final=False)
            if wait is not None and wait > self.options.max_wait:
                raise SuspectError(
                    f"{failure}; the endpoint asks to wait {wait:g} s, more than "
                    f"--max-retry-wait {self.options.max_wait:g} s"
                )
            if attempt == self.options.retries:
                self._fail(entry, t0, failure)
            self.sleep(min(self.options.max_wait, self.options.backoff * 2**attempt)
                       if wait is None else wait)  # fmt: skip
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt raised

    def _read(self, method: str, url: str, body: bytes) -> tuple[Any, bytes]:
        """One request; its answer read in chunks, at most ``MAX_RESPONSE_BYTES`` and at most
        ``timeout`` seconds in all (a per-read timeout alone lets a slow drip run forever)."""
        import httpx

        start, size, chunks = time.monotonic(), 0, []
        with self.client.stream(method, url, content=body or None) as resp:
            for chunk in resp.iter_bytes():
                size += len(chunk)
                chunks.append(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise _Unbounded(
                        f"the answer of {httpx.URL(url).host} exceeds {MAX_RESPONSE_BYTES:,} bytes"
                    )
                if time.monotonic() - start > self.options.timeout:
                    raise httpx.ReadTimeout("answer not complete within the timeout")
        return resp, b"".join(chunks)

    def _fail(self, entry: dict[str, Any], t0: float, failure: str, *, final: bool = True) -> None:
        """Log the failed attempt (once); with ``final`` end the run."""
        if "error" not in entry:
            entry["elapsed_s"] = round(time.monotonic() - t0, 4)
            entry["error"] = failure
            self.log(entry)
        if final:
            retried = f" (after {entry['attempt']} retries)" if entry["attempt"] else ""
            raise SuspectError(f"{failure}{retried}")


class _Unbounded(Exception):
    """An answer larger than :data:`MAX_RESPONSE_BYTES` (not retried)."""


def _connection_failure(url: str, exc: Exception) -> str:
    import httpx

    host = httpx.URL(url).host
    text = str(exc) or type(exc).__name__
    if "SSL" in text or "CERTIFICATE" in text.upper() or "TLS" in text:
        return f"TLS failure talking to {host}: {text.splitlines()[0][:200]}"
    return f"cannot reach {host}: {text.splitlines()[0][:200]}"


def _status_failure(url: str, status: int, data: bytes) -> str:
    snippet = data[:160].decode("utf-8", errors="replace").strip().replace("\n", " ")
    if status in (401, 403):
        return (f"the endpoint refused the credentials (HTTP {status}); give them with "
                "--auth-env VAR or --auth-file FILE")  # fmt: skip
    if status == 404:
        return f"no model at {url} (HTTP 404)"
    if 300 <= status < 400:
        return f"the endpoint redirects (HTTP {status}); give the final URL (not followed)"
    return f"the endpoint answered HTTP {status}" + (f": {snippet}" if snippet else "")


def _ssl_context(path: str) -> Any:
    import ssl

    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise SuspectError(f"--ca-cert '{path}': cannot load it ({exc})") from None
