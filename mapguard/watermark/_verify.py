"""Owner-side verification of a suspect file: load it, run the arbiter's test, write the result.

mapguard checkpoints (safetensors, weights without code) are loaded here with
:func:`mapguard.checkpoint.load_checkpoint`; every format whose loading runs code
(``torch.export``, TorchScript, pickle) goes through :func:`verification.backends.load_suspect`,
which runs it in an isolated worker process (in this process only with ``unsafe_load``).
The result is a ``result-predicate-v1`` document, written as plain JSON or — with a key — as a
signed in-toto Statement whose subject is the suspect file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mapguard import __version__
from mapguard.checkpoint import file_sha256, load_checkpoint
from mapguard.watermark._files import now_rfc3339
from protocols import canonical, schemas, statements
from protocols.errors import InputError
from verification.backends import (
    ModuleBackend,
    QueryBackend,
    WorkerLimits,
    detect_suspect_format,
    load_suspect,
)
from verification.verify import VerificationResult, VerifyConfig, verify
from verification.watermark_file import WatermarkFile, read_watermark, watermark_spec

__all__ = ["SuspectReport", "result_predicate", "verify_suspect"]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SuspectReport:
    """A finished verification: the test result and the predicate written to ``out``."""

    result: VerificationResult
    predicate: Mapping[str, Any]
    signed: bool
    out: Path | None

    @property
    def evidenced(self) -> bool:
        return self.result.evidenced


def _backend(
    path: Path, *, unsafe_load: bool, num_classes: int, limits: WorkerLimits
) -> tuple[QueryBackend, str]:
    """Open the suspect: checkpoints in-process (data), code formats in the isolated worker.

    The backend always answers probabilities so that the class-count probe also holds for a
    label-only verification (:class:`VerifyConfig` reduces the answers to labels).
    """
    fmt = detect_suspect_format(path)
    if fmt != "safetensors":
        backend = load_suspect(
            path, allow_unsafe_load=unsafe_load, num_classes=num_classes, limits=limits
        )
        return backend, fmt
    module, _ = load_checkpoint(path)
    backend = ModuleBackend(
        module,
        digest="sha256:" + file_sha256(path),
        description=f"mapguard checkpoint {path.name}",
    )
    backend.probe(num_classes=num_classes)
    return backend, "mapguard-checkpoint"


def _images_for_budget(queries: int | None, wm: WatermarkFile, m: int) -> int | None:
    """Images per key that fit a total query budget (probe + clean + k secrets + k*M nulls)."""
    if queries is None:
        return None
    per_image = 1 + wm.n_secrets * (1 + m)
    n = (queries - 2) // per_image
    if n < 1:
        raise InputError(
            f"--queries {queries} is too small: one image per key costs {per_image + 2} queries "
            f"with {wm.n_secrets} secrets and {m} null keys each"
        )
    return n


def _num(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def result_predicate(
    res: VerificationResult,
    *,
    wm: WatermarkFile,
    suspect_name: str,
    suspect_format: str,
    isolation: str = "",
) -> dict[str, Any]:
    """The ``result-predicate-v1`` document of ``res`` (no secret and no trigger position)."""
    digest = (res.suspect_digest or "").removeprefix("sha256:")
    per_secret = [
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
    predicate = {
        "schema_version": "1",
        "created": now_rfc3339(),
        "tool": {"name": "mapguard", "version": __version__},
        "suspect": {
            "name": suspect_name,
            "sha256": digest,
            "format": suspect_format,
            **({"isolation": isolation} if isolation else {}),
        },
        "watermark": {"commitment_digest": wm.commitment_digest, "model_sha256": wm.model_sha256},
        "query_mode": res.mode,
        "queries_used": res.queries,
        "test": {
            "method": res.test.method,
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
            "per_secret": per_secret,
        },
        "effect": {
            "estimate": _num(res.effect.estimate),
            "ci_low": _num(res.effect.ci_low),
            "ci_high": _num(res.effect.ci_high),
            "confidence_level": res.effect.confidence_level,
            "method": res.effect.method,
        },
        "negative_controls": controls,
        "verdict": "evidenced" if res.evidenced else "not_evidenced",
    }
    predicate = canonical.loads(canonical.canonical_bytes(_finite(predicate)))
    schemas.validate(predicate, "result-predicate-v1")
    return predicate


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def verify_suspect(
    suspect: str | os.PathLike[str],
    watermark: str | os.PathLike[str],
    *,
    labels_only: bool = False,
    queries: int | None = None,
    alpha: float = 1e-3,
    null_keys: int | None = None,
    key: Ed25519PrivateKey | None = None,
    passphrase: bytes | None = None,
    unsafe_load: bool = False,
    timeout: float = 300.0,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> SuspectReport:
    """Test ``suspect`` for the watermark in ``watermark`` and write the result to ``out``.

    Args:
        suspect: The suspect model file: a mapguard checkpoint (data, loaded here) or a code
            format (``.pt2``, TorchScript, pickle: run in an isolated worker process).
        watermark: The owner's ``owner.wm``.
        labels_only: Use top-1 labels only.
        queries: Total query budget; the number of images per key is the largest that fits.
        alpha: Significance level of the verdict.
        null_keys: Null keys per secret (default: as committed in the watermark).
        key: Sign the result with this key (in-toto Statement in a DSSE envelope).
        passphrase: Of an encrypted watermark file.
        unsafe_load: Load code formats (``.pt2``, TorchScript, pickle) in this process instead
            of the isolated worker (runs code from the file; the result says UNSAFE LOAD).
        timeout: Wall-clock seconds the isolated worker may take to load, and per batch.
        out: Where to write the result (None: write nothing).
        force: Overwrite ``out``.

    Raises:
        InputError: unreadable inputs, a suspect that does not fit the watermark (input size,
            class count), bad options.
    """
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and not force:
        from protocols.errors import OutputExistsError

        raise OutputExistsError(f"output '{target}' exists; pass --force to overwrite")
    wm = read_watermark(watermark, passphrase=passphrase)
    spec = watermark_spec(wm)
    m = wm.null_keys_per_secret if null_keys is None else null_keys
    config = VerifyConfig(
        null_keys_per_secret=m,
        alpha=alpha,
        labels_only=labels_only,
        n_query_images=_images_for_budget(queries, wm, m),
    )
    path = Path(suspect)
    limits = WorkerLimits(start_timeout=timeout, request_timeout=timeout)
    backend, fmt = _backend(
        path, unsafe_load=unsafe_load, num_classes=wm.num_classes, limits=limits
    )
    try:
        result = verify(backend, spec, config)
    finally:
        backend.close()
    predicate = result_predicate(
        result,
        wm=wm,
        suspect_name=path.name,
        suspect_format=fmt,
        isolation=backend.isolation,
    )
    if target is not None:
        _write(target, predicate, key=key, force=force)
    return SuspectReport(result=result, predicate=predicate, signed=key is not None, out=target)


def _write(
    path: Path, predicate: Mapping[str, Any], *, key: Ed25519PrivateKey | None, force: bool
) -> None:
    if key is None:
        canonical.write_json(path, predicate, force=force)
        return
    suspect = predicate["suspect"]
    statement = statements.make_statement(
        subjects=[(suspect["name"], suspect["sha256"])],
        predicate_type=statements.RESULT_PREDICATE_TYPE,
        predicate=predicate,
    )
    canonical.write_json(path, statements.sign_statement(statement, key), force=force)
