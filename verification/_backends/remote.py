"""A suspect behind an inference API: Open Inference Protocol (KServe v2, Triton) or a template.

:func:`open_endpoint` builds a :class:`RemoteBackend`: every request is logged
(:class:`~verification._backends.querylog.QueryLog`), answered requests are replayed from the log
when a run resumes (the recomputed request must have the logged digest), and a hard budget caps
the images sent. No code from the suspect runs here; the verifier only sends images and reads
numbers back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from protocols.fileio import MAX_JSON_BYTES, read_input
from verification._backends._remote_http import HttpOptions, Transport, auth_headers, check_url
from verification._backends._remote_wire import OipWire, TemplateWire, Wire, parse_json
from verification._backends.base import PROBE_IMAGES, QueryBackend
from verification._backends.querylog import QueryLog
from verification._errors import SuspectError

__all__ = ["RECHECK_IMAGES", "HttpOptions", "RemoteBackend", "is_endpoint", "open_endpoint"]

#: Images of the first analysis request asked again at the end, to see whether answers drift.
RECHECK_IMAGES = 4
#: Largest difference between two answers to one image that still counts as the same answer.
SAME_ANSWER_TOLERANCE = 1e-4


def is_endpoint(suspect: object) -> bool:
    """``suspect`` names an http(s) endpoint rather than a file."""
    return isinstance(suspect, str) and suspect.lower().startswith(("http://", "https://"))


class RemoteBackend(QueryBackend):
    """Query a remote suspect; see :func:`open_endpoint` (which builds and probes it).

    Args:
        transport: The HTTP client (retries, rate limit).
        wire: Request and answer format.
        log: The query log (replays answered requests of a resumed run).
        input_shape: Per-image input shape.
        budget: Most images answered in all (the probe and re-asked images included).
        batch_size: Most images per request.
        endpoint: The URL, for the description.
    """

    def __init__(
        self,
        transport: Transport,
        wire: Wire,
        log: QueryLog,
        *,
        input_shape: tuple[int, ...],
        budget: int,
        batch_size: int,
        endpoint: str,
    ) -> None:
        super().__init__(input_shape=input_shape, description=f"{wire.name} endpoint {endpoint}")
        self.isolation = "remote endpoint over HTTP(S): no code from the suspect runs here"
        self.transport, self.wire, self.log = transport, wire, log
        self.budget, self.batch_size, self.endpoint = int(budget), int(batch_size), endpoint
        self._index, self._answered_images, self._kind = 0, 0, "query"
        self._probe_answer: torch.Tensor | None = None
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        #: Requests answered from the log (resumed) and sent to the endpoint (this run).
        self.replayed = self.sent = 0

    def close(self) -> None:
        self.transport.close()
        self.log.close()

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._request(chunk) for chunk in batch.split(self.batch_size)])

    def _request(self, chunk: torch.Tensor) -> torch.Tensor:
        index, n = self._index, int(chunk.shape[0])
        self._index += 1
        body = self.wire.encode(chunk)
        logged = self.log.answered(index)
        if logged is not None:
            answer = self._replay(logged, body, index, n)
        else:
            answer = self._send(body, index, n)
        self._answered_images += n
        if self._kind == "query" and self._first is None:
            self._first = (chunk[:RECHECK_IMAGES].clone(), answer[:RECHECK_IMAGES].clone())
        return answer

    def _replay(self, logged: Mapping[str, Any], body: bytes, index: int, n: int) -> torch.Tensor:
        digest = hashlib.sha256(body).hexdigest()
        if logged.get("request_sha256") != digest or logged.get("kind") != self._kind:
            raise SuspectError(
                f"query log '{self.log.path}' does not match this verification at request "
                f"{index} (another request was logged there): refusing to resume from it"
            )
        self.replayed += 1
        return self.wire.decode(str(logged["response"]).encode("utf-8"), n)

    def _send(self, body: bytes, index: int, n: int) -> torch.Tensor:
        if self._answered_images + n > self.budget:
            raise SuspectError(
                f"query budget exhausted: {self._answered_images} of {self.budget} queries "
                f"answered, the next request needs {n} more"
            )
        data, entry = self.transport.post(body, index=index, kind=self._kind, images=n)
        try:
            answer = self.wire.decode(data, n)
        except SuspectError as exc:
            entry["error"] = str(exc)
            self.log.append(entry)
            raise
        entry["response"] = data.decode("utf-8")
        self.log.append(entry)
        self.sent += 1
        return answer

    def probe(self, *, num_classes: int | None = None) -> None:
        """Send the probe once (later calls check the recorded answer: no request is repeated)."""
        if self._probe_answer is None:
            self._kind = "probe"
            try:
                self._probe_answer = self.query(torch.full((PROBE_IMAGES, *self.input_shape), 0.5))
            finally:
                self._kind = "query"
        out = self._probe_answer
        if out.dim() == 2:
            self._num_classes = int(out.shape[1])
        self._check_classes(out, num_classes)

    def recheck(self) -> dict[str, Any]:
        """Ask the first images of the first analysis request again and compare the answers
        (and the probe's two identical images): nondeterminism is reported, not hidden."""
        if self._first is None:
            return {}
        images, before = self._first
        self._kind = "recheck"
        try:
            after = self.query(images)
        finally:
            self._kind = "query"
        changed, largest = _differences(before, after)
        probe_changed = 0
        if self._probe_answer is not None and self._probe_answer.shape[0] >= 2:
            probe_changed, _ = _differences(self._probe_answer[:1], self._probe_answer[1:2])
        return {
            "rechecked_images": int(images.shape[0]),
            "changed_answers": changed,
            "max_abs_difference": largest,
            "probe_twins_differ": bool(probe_changed),
            "deterministic": changed == 0 and probe_changed == 0,
        }


def _differences(before: torch.Tensor, after: torch.Tensor) -> tuple[int, float]:
    """Images answered differently (beyond :data:`SAME_ANSWER_TOLERANCE`), largest difference."""
    if before.shape != after.shape:
        return int(before.shape[0]), 1.0
    if before.dim() == 1:
        return int((before != after).sum()), float((before != after).any())
    gap = (before.double() - after.double()).abs().amax(dim=1)
    labels = before.argmax(dim=1) != after.argmax(dim=1)
    return int(((gap > SAME_ANSWER_TOLERANCE) | labels).sum()), float(gap.max())


def _model_urls(url: str) -> tuple[str, str]:
    """``(infer URL, model URL)`` of an Open Inference Protocol model URL."""
    path, sep, query = url.partition("?")
    path = path.rstrip("/")
    if "/v2/models/" not in path:
        raise SuspectError(
            f"'{url}' is not an Open Inference Protocol model URL (.../v2/models/NAME[/versions/"
            "V][/infer]); for another JSON API give --request-template"
        )
    model = path.removesuffix("/infer")
    return model + "/infer" + sep + query, model + sep + query


def _template(path: str | os.PathLike[str]) -> TemplateWire:
    raw = read_input(Path(path), "request template", max_bytes=MAX_JSON_BYTES)
    return TemplateWire(parse_json(raw, f"request template '{path}'"), source=f"'{path}'")


def open_endpoint(
    url: str,
    *,
    input_shape: tuple[int, ...],
    log_path: str | os.PathLike[str],
    budget: int,
    binding: Mapping[str, Any],
    num_classes: int | None = None,
    resume: bool = False,
    options: HttpOptions | None = None,
    auth_env: str | None = None,
    auth_file: str | os.PathLike[str] | None = None,
    request_template: str | os.PathLike[str] | None = None,
) -> RemoteBackend:
    """Open and probe a remote suspect.

    Args:
        url: An Open Inference Protocol model URL (``.../v2/models/NAME[/infer]``), or any
            JSON API's URL with ``request_template``.
        input_shape: The watermark's per-image shape ``(3, S, S)``.
        log_path: The query log (created; with ``resume`` continued).
        budget: Most images answered in all (the commitment's analysis, probe and re-ask).
        binding: What ties the log to this verification (commitment digest, claim nonce, null
            seed, the analysis, the queries it needs); recorded in its header and compared on
            resume (``budget`` is not: a run stopped by a quota resumes with a larger one).
        num_classes: The probe checks the suspect answers this many classes.
        resume: Continue ``log_path``: answered requests are read back, not asked again.
        options: Timeouts, retries, rate limit, batch size, CA certificate.
        auth_env, auth_file: Where the credential is (see :func:`auth_headers`).
        request_template: A ``mapguard-request-template-v1`` file for a non-OIP API.

    Raises:
        SuspectError: A bad URL or template, an unusable log, or a failed probe (unreachable,
            TLS, refused credentials, wrong shape or class count, ...).
    """
    options = HttpOptions() if options is None else options
    check_url(url)
    wire: Wire = _template(request_template) if request_template is not None else OipWire()
    infer_url, model_url = (url, "") if request_template is not None else _model_urls(url)
    headers = {"Content-Type": wire.content_type, **auth_headers(env=auth_env, file=auth_file)}
    header = {
        "endpoint": infer_url, "input_shape": list(input_shape), "batch_size": options.batch_size,
        **wire.describe(), **dict(binding),
    }  # fmt: skip
    log = QueryLog(log_path, header, resume=resume)
    try:
        transport = Transport(infer_url, options=options, headers=headers, log=log.append)
    except BaseException:
        log.close()
        raise
    backend = RemoteBackend(
        transport, wire, log, input_shape=input_shape, budget=budget,
        batch_size=options.batch_size, endpoint=infer_url,
    )  # fmt: skip
    try:
        if model_url:
            meta = parse_json(transport.get(model_url, kind="metadata"), "the model's metadata")
            backend.wire = OipWire.from_metadata(meta, tuple(input_shape))
        backend.probe(num_classes=num_classes)
    except BaseException:
        backend.close()
        raise
    return backend
