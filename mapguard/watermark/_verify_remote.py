"""Owner-side opening of a remote suspect: the query budget, the log and its binding.

The budget is the committed analysis's (:func:`verification.verify.planned_queries`, the probe
included) plus the :data:`~verification.backends.RECHECK_IMAGES` images asked again to see
whether the endpoint answers the same image the same way; ``max_queries`` may only lower it (an
API quota: the run stops, the log is kept, ``resume`` continues it later).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocols.errors import InputError
from verification.backends import (
    RECHECK_IMAGES,
    HttpOptions,
    RemoteBackend,
    open_endpoint,
)
from verification.verify import VerifyConfig, WatermarkSpec, planned_queries
from verification.watermark_file import WatermarkFile

__all__ = [
    "RemoteOptions",
    "default_log_path",
    "open_remote",
    "remote_options",
    "remote_record",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemoteOptions:
    """How to reach a remote suspect (none of these changes the p-value).

    Attributes:
        http: Timeouts, retries, rate limit, batch size, CA certificate.
        auth_env, auth_file: Where the credential is (an environment variable's name, a file).
        request_template: A ``mapguard-request-template-v1`` file for a non-OIP JSON API.
        query_log: The query log (None: next to the result, ``<result>.querylog.jsonl``).
        resume: Continue the query log of an interrupted run.
        max_queries: Stop after this many queries (at most the analysis's need; None: the need).
    """

    http: HttpOptions = dataclasses.field(default_factory=HttpOptions)
    auth_env: str | None = None
    auth_file: str | os.PathLike[str] | None = None
    request_template: str | os.PathLike[str] | None = None
    query_log: str | os.PathLike[str] | None = None
    resume: bool = False
    max_queries: int | None = None


def default_log_path(out: Path | None, options: RemoteOptions) -> Path:
    """The query log's path: ``options.query_log`` or next to the result."""
    if options.query_log is not None:
        path = Path(options.query_log)
    elif out is not None:
        path = out.with_name(out.stem + ".querylog.jsonl")
    else:
        raise InputError("a remote verification keeps a query log: give --query-log or --out")
    if out is not None and path.resolve() == out.resolve():
        raise InputError(f"--query-log '{path}' is the result file")
    return path


def _need(spec: WatermarkSpec, config: VerifyConfig) -> int:
    return planned_queries(spec, config) + RECHECK_IMAGES


def _budget(need: int, max_queries: int | None) -> int:
    if max_queries is None:
        return need
    if not isinstance(max_queries, int) or max_queries < 1:
        raise InputError(f"--max-queries must be a positive integer, got {max_queries!r}")
    return min(need, max_queries)


def open_remote(
    url: str,
    *,
    wm: WatermarkFile,
    spec: WatermarkSpec,
    config: VerifyConfig,
    claim_nonce: str,
    out: Path | None,
    options: RemoteOptions,
) -> RemoteBackend:
    """Open, bind to this verification and probe the endpoint at ``url``."""
    channel = wm.analysis.channel  # a committed channel's boundary queries come on top
    need = _need(spec, config) + (0 if channel is None else channel.queries)
    return open_endpoint(
        url,
        input_shape=tuple(spec.images.shape[1:]),
        num_classes=wm.num_classes,
        log_path=default_log_path(out, options),
        resume=options.resume,
        budget=_budget(need, options.max_queries),
        binding={
            "commitment_digest": wm.commitment_digest,
            "claim_nonce": claim_nonce,
            "null_seed": config.null_seed,
            "analysis": _analysis_key(config),
            "queries_needed": need,
        },
        options=options.http,
        auth_env=options.auth_env,
        auth_file=options.auth_file,
        request_template=options.request_template,
    )


def _analysis_key(config: VerifyConfig) -> dict[str, Any]:
    """What fixes the requests besides the seed (an exploratory run changes some of it)."""
    return {
        "labels_only": bool(config.labels_only),
        "null_keys_per_secret": config.null_keys_per_secret,
        "n_query_images": config.n_query_images,
        "query_budget": config.query_budget,
        "batch_size": config.batch_size,
    }


def remote_record(backend: RemoteBackend) -> dict[str, Any]:
    """Ask the re-check images, close the log: the result's ``query_log`` block."""
    determinism = backend.recheck()
    backend.close()
    return {**backend.log.record(), "nondeterminism": determinism}


def remote_options(options: Mapping[str, Any]) -> RemoteOptions:
    """:class:`RemoteOptions` from plain keyword values (the CLI's)."""
    http = {k: options[k] for k in _HTTP if options.get(k) is not None}
    rest = {k: options[k] for k in _REST if options.get(k) is not None}
    return RemoteOptions(http=HttpOptions(**http), **rest)


_HTTP = ("timeout", "retries", "max_wait", "max_qps", "batch_size", "ca_cert")
_REST = ("auth_env", "auth_file", "request_template", "query_log", "resume", "max_queries")
