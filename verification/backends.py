"""Query backends: black-box access to a suspect model (local file, in-process module, endpoint).

Example:
    >>> import torch
    >>> from verification.backends import LabelsOnly, ModuleBackend
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> backend = ModuleBackend(net)
    >>> backend.probe(num_classes=10)
    >>> backend.query(torch.rand(4, 3, 32, 32)).shape, backend.query_count
    (torch.Size([4, 10]), 6)
    >>> LabelsOnly(backend).query(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4])
"""

from __future__ import annotations

import os
from typing import Any

from verification._backends.base import LabelsOnly, QueryBackend, TransformedBackend
from verification._backends.files import (
    CODE_FORMATS,
    SUSPECT_FORMATS,
    detect_suspect_format,
)
from verification._backends.files import load_suspect as _load_file
from verification._backends.module import ModuleBackend, state_digest
from verification._backends.querylog import (
    LOG_SCHEMA,
    LogSummary,
    QueryLog,
    check_query_log,
    read_query_log,
)
from verification._backends.remote import (
    RECHECK_IMAGES,
    HttpOptions,
    RemoteBackend,
    is_endpoint,
    open_endpoint,
)
from verification._backends.worker import WorkerBackend, WorkerLimits, isolation_available

__all__ = [
    "CODE_FORMATS",
    "LOG_SCHEMA",
    "RECHECK_IMAGES",
    "SUSPECT_FORMATS",
    "HttpOptions",
    "LabelsOnly",
    "LogSummary",
    "ModuleBackend",
    "QueryBackend",
    "QueryLog",
    "RemoteBackend",
    "TransformedBackend",
    "WorkerBackend",
    "WorkerLimits",
    "check_query_log",
    "detect_suspect_format",
    "is_endpoint",
    "isolation_available",
    "load_suspect",
    "open_endpoint",
    "read_query_log",
    "state_digest",
]


def load_suspect(suspect: str | os.PathLike[str], **options: Any) -> QueryBackend:
    """Open a suspect: an http(s) URL through :func:`open_endpoint` (``options`` are its
    keyword arguments), a file of a self-describing format through the file loader (code formats
    and ONNX in an isolated worker; see ``verification._backends.files.load_suspect``)."""
    if is_endpoint(suspect):
        return open_endpoint(str(suspect), **options)
    return _load_file(suspect, **options)
