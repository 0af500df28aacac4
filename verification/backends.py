"""Query backends: black-box access to a suspect model (local file, in-process module, ...).

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

from verification._backends.base import LabelsOnly, QueryBackend, TransformedBackend
from verification._backends.files import (
    CODE_FORMATS,
    SUSPECT_FORMATS,
    detect_suspect_format,
    load_suspect,
)
from verification._backends.module import ModuleBackend, state_digest
from verification._backends.worker import WorkerBackend, WorkerLimits, isolation_available

__all__ = [
    "CODE_FORMATS",
    "SUSPECT_FORMATS",
    "LabelsOnly",
    "ModuleBackend",
    "QueryBackend",
    "TransformedBackend",
    "WorkerBackend",
    "WorkerLimits",
    "detect_suspect_format",
    "isolation_available",
    "load_suspect",
    "state_digest",
]
