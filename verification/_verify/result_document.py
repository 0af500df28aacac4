"""The verification result document (``result-predicate-v1``), built and signed by the arbiter.

:func:`result_predicate` turns a :class:`VerificationResult` into the document (no secret and no
trigger position in it); :func:`write_result` writes it as plain canonical JSON or, with a key, as
a signed in-toto Statement in a DSSE envelope whose subject is the suspect file. Both need only
``verification`` and ``protocols``: the tool that ran the test names itself through arguments.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import canonical, schemas, statements
from verification._verify.result import VerificationResult
from verification.watermark_file import WatermarkFile

__all__ = ["RESULT_SCHEMA", "result_predicate", "result_subject", "write_result"]

RESULT_SCHEMA = "result-predicate-v1"


def _num(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON cannot carry them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _per_secret(res: VerificationResult) -> list[dict[str, Any]]:
    return [
        {
            "rank": r.rank,
            "null_keys": r.m,
            "pvalue": r.pvalue,
            "statistic": r.statistic,
            "triggered_accuracy": acc,
            "trigger_fingerprint": trig["fingerprint"],
        }
        for r, acc, trig in zip(
            res.test.per_secret, res.triggered_accuracies, res.secret_triggers, strict=True
        )
    ]


def _controls(res: VerificationResult) -> dict[str, Any]:
    controls: dict[str, Any] = {
        "null_statistics": dataclasses.asdict(res.null_summary),
        "null_triggered_accuracy": res.null_triggered_accuracy,
        "clean_accuracy": res.clean_accuracy,
    }
    if res.negative_controls is not None:
        nc = res.negative_controls
        controls["fake_secrets"] = {
            "n": nc.n_trials,
            "alphas": list(nc.alphas),
            "exact_fraction": list(nc.exact_fraction),
        }
    return controls


def _test(res: VerificationResult) -> dict[str, Any]:
    extra = {}
    if res.pooled is not None:
        extra["pooled"] = {
            "count": res.pooled.count,
            "n_keys": res.pooled.n_keys,
            "ranks": list(res.pooled.ranks),
        }
    if res.pvalue_unadjusted != res.pvalue:
        extra["pvalue_unadjusted"] = res.pvalue_unadjusted
    return {
        **extra,
        "method": res.method,
        "statistic": res.statistic,
        "statistic_definition": res.statistic_definition,
        "pvalue": res.pvalue,
        "pvalue_floor": res.pvalue_floor,
        "parametric_pvalue_supplementary": res.parametric_pvalue,
        "alternative": res.test.alternative,
        "alpha": res.alpha,
        "n": res.n_images,
        "n_secrets": res.n_secrets,
        "null_keys_per_secret": res.null_keys_per_secret,
        "null_seed": res.null_seed,
        "trigger_family": res.family,
        "per_secret": _per_secret(res),
    }


def result_predicate(
    res: VerificationResult,
    *,
    watermark: WatermarkFile,
    suspect_name: str,
    suspect_format: str,
    tool_name: str,
    tool_version: str,
    isolation: str = "",
    analysis: Mapping[str, Any] | None = None,
    claim_nonce: str | None = None,
    exploratory: bool = False,
    endpoint: str | None = None,
    query_log: Mapping[str, Any] | None = None,
    time_order: Mapping[str, Any] | None = None,
    channel: Mapping[str, Any] | None = None,
    combined: Mapping[str, Any] | None = None,
    forgery_audit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``result-predicate-v1`` document of ``res`` (no secret and no trigger position).

    Args:
        res: The result of :func:`verification.verify.verify`.
        watermark: The revealed watermark the suspect was tested against (its commitment digest
            and protected-model digest are recorded).
        suspect_name: File name of the suspect (the statement's subject name).
        suspect_format: How the suspect was read, e.g. ``"torch.export"``.
        tool_name, tool_version: The tool that ran the test, recorded as ``tool``.
        isolation: How the suspect was isolated from the verifier, in words (omitted if empty).
        analysis: The analysis run (the commitment's ``verification`` block when pre-registered).
        claim_nonce: The claim nonce that seeded the null keys with the commitment digest.
        exploratory: The analysis is not the committed one (the result says so).
        endpoint: A remote suspect's URL (without credentials): recorded instead of a file
            digest; the statement's subject is then ``query_log`` (name and SHA-256).
        query_log: The query log's block (name, sha256, summary) of a remote suspect.
        time_order: The commitment's certified time against the suspect's first known date
            (:func:`verification.timestamps.commitment_time_order`), recorded beside the verdict.
        channel, combined: A version-4 analysis's channel result and combined verdict
            (``ChannelResult.to_dict()``, ``Verdict.to_dict()``); ``verdict`` is then the
            combined one.
        forgery_audit: The arbiter's forgery audit (``ForgeryAudit.to_dict()`` plus
            ``counted``, :mod:`verification.forgery`); a counted, forgeable audit makes the
            verdict ``not_evidenced``.

    Raises:
        SchemaError: the document does not validate (a bug, not a user error).
    """
    digest = (res.suspect_digest or "").removeprefix("sha256:")
    identity = {"endpoint": endpoint} if endpoint is not None else {"sha256": digest}
    predicate = {
        "schema_version": "1",
        "created": canonical.now_rfc3339(),
        "tool": {"name": tool_name, "version": tool_version},
        "suspect": {
            "name": suspect_name,
            **identity,
            "format": suspect_format,
            **({"isolation": isolation} if isolation else {}),
        },
        "watermark": {
            "commitment_digest": watermark.commitment_digest,
            "model_sha256": watermark.model_sha256,
        },
        **({"analysis": dict(analysis)} if analysis is not None else {}),
        **({"claim_nonce": claim_nonce} if claim_nonce is not None else {}),
        "exploratory": bool(exploratory),
        **({"query_log": dict(query_log)} if query_log is not None else {}),
        **({"time_order": dict(time_order)} if time_order is not None else {}),
        **({"forgery_audit": dict(forgery_audit)} if forgery_audit is not None else {}),
        "query_mode": res.mode,
        "queries_used": res.queries,
        "test": _test(res),
        "effect": {
            "estimate": _num(res.effect.estimate),
            "ci_low": _num(res.effect.ci_low),
            "ci_high": _num(res.effect.ci_high),
            "confidence_level": res.effect.confidence_level,
            "method": res.effect.method,
        },
        "negative_controls": _controls(res),
        **({"channel": dict(channel)} if channel is not None else {}),
        **({"combined": dict(combined)} if combined is not None else {}),
        "verdict": "evidenced" if _evidenced(res, combined, forgery_audit) else "not_evidenced",
    }
    predicate = canonical.loads(canonical.canonical_bytes(_finite(predicate)))
    schemas.validate(predicate, RESULT_SCHEMA)
    return predicate


def audit_veto(audit: Mapping[str, Any] | None) -> bool:
    """Whether a result's ``forgery_audit`` block overrides its test: counted and forgeable."""
    return bool(audit is not None and audit["counted"] and audit["forgeable"])


def _evidenced(
    res: VerificationResult,
    combined: Mapping[str, Any] | None,
    audit: Mapping[str, Any] | None,
) -> bool:
    """The verdict: the test's (or the combined one), unless a counted audit finds it forgeable."""
    tested = bool(res.evidenced if combined is None else combined["evidenced"])
    return tested and not audit_veto(audit)


def result_subject(predicate: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, sha256)`` the result is about: the suspect file, or a remote suspect's query log
    (the answers the endpoint gave, bound to the signed result by this digest)."""
    suspect = predicate["suspect"]
    if "sha256" in suspect:
        return suspect["name"], suspect["sha256"]
    log = predicate["query_log"]
    return log["name"], log["sha256"]


def write_result(
    path: str | os.PathLike[str],
    predicate: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey | None = None,
    force: bool = False,
) -> Path:
    """Write ``predicate`` atomically: canonical JSON, or with ``key`` a signed Statement.

    The signed form is an in-toto Statement v1 (predicate type
    :data:`protocols.statements.RESULT_PREDICATE_TYPE`) whose one subject is the suspect file
    (name and SHA-256 from the predicate; a remote suspect's: its query log), in a DSSE
    envelope signed by ``key``.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false.
    """
    if key is None:
        return canonical.write_json(path, predicate, force=force)
    statement = statements.make_statement(
        subjects=[result_subject(predicate)],
        predicate_type=statements.RESULT_PREDICATE_TYPE,
        predicate=predicate,
    )
    return canonical.write_json(path, statements.sign_statement(statement, key), force=force)
