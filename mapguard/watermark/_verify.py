"""Owner-side verification of a suspect file: load it, run the arbiter's test, write the result.

mapguard checkpoints (safetensors, weights without code) are loaded here with
:func:`mapguard.checkpoint.load_checkpoint`; every format whose loading runs code
(``torch.export``, TorchScript, pickle) goes through :func:`verification.backends.load_suspect`,
which runs it in an isolated worker process (in this process only with ``unsafe_load``).
The test, the ``result-predicate-v1`` document and its signing are the arbiter's
(:mod:`verification.verify`); this module only opens the suspect and names the tool.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mapguard import __version__
from mapguard.checkpoint import file_sha256, load_checkpoint
from protocols.errors import OutputExistsError
from verification.backends import (
    ModuleBackend,
    QueryBackend,
    WorkerLimits,
    detect_suspect_format,
    load_suspect,
)
from verification.verify import (
    VerificationResult,
    VerifyConfig,
    result_predicate,
    verify,
    write_result,
)
from verification.watermark_file import read_watermark, watermark_spec

__all__ = ["SuspectReport", "verify_suspect"]


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
        raise OutputExistsError(f"output '{target}' exists; pass --force to overwrite")
    wm = read_watermark(watermark, passphrase=passphrase)
    spec = watermark_spec(wm)
    m = wm.null_keys_per_secret if null_keys is None else null_keys
    config = VerifyConfig(
        null_keys_per_secret=m,
        alpha=alpha,
        labels_only=labels_only,
        query_budget=queries,
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
        watermark=wm,
        suspect_name=path.name,
        suspect_format=fmt,
        tool_name="mapguard",
        tool_version=__version__,
        isolation=backend.isolation,
    )
    if target is not None:
        write_result(target, predicate, key=key, force=force)
    return SuspectReport(result=result, predicate=predicate, signed=key is not None, out=target)
