"""Verify a suspect model against a revealed watermark: ``verify(backend, spec, config)``.

The result becomes the arbiter's document with ``result_predicate(result, watermark=...,
suspect_name=..., suspect_format=..., tool_name=..., tool_version=...)`` and is written (signed
with a key, or plain) by ``write_result(path, predicate, key=...)``.

Example:
    >>> import numpy as np, torch
    >>> from verification.backends import ModuleBackend
    >>> from verification.triggers import random_secret
    >>> from verification.verify import VerifyConfig, WatermarkSpec, verify
    >>> rng = np.random.default_rng(0)
    >>> spec = WatermarkSpec(
    ...     family="patch",
    ...     secrets=tuple(random_secret(rng) for _ in range(3)),
    ...     images=rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8),
    ...     labels=rng.integers(0, 10, 20),
    ...     num_classes=10,
    ... )
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> result = verify(ModuleBackend(net), spec, VerifyConfig(null_keys_per_secret=19))
    >>> result.queries == 2 + 20 * (1 + 3 + 3 * 19), result.pvalue_floor
    (True, 0.000125)
"""

from __future__ import annotations

from verification._stats.effect import EffectSize
from verification._verify.queries import QueryOutcome, query_triggers
from verification._verify.result import NullSummary, VerificationResult
from verification._verify.result_document import result_predicate, write_result
from verification._verify.run import floor_value, planned_queries, verify
from verification._verify.spec import (
    MAX_IMAGES_PER_KEY,
    MAX_NULL_KEYS_PER_SECRET,
    MAX_SECRETS,
    VerifyConfig,
    WatermarkSpec,
    public_null_seed,
)

__all__ = [
    "MAX_IMAGES_PER_KEY",
    "MAX_NULL_KEYS_PER_SECRET",
    "MAX_SECRETS",
    "EffectSize",
    "NullSummary",
    "QueryOutcome",
    "VerificationResult",
    "VerifyConfig",
    "WatermarkSpec",
    "floor_value",
    "planned_queries",
    "public_null_seed",
    "query_triggers",
    "result_predicate",
    "verify",
    "write_result",
]
