"""Owner-side verification of a suspect file: load it, run the arbiter's test, write the result.

mapguard checkpoints (safetensors, weights without code) are loaded here with
:func:`mapguard.checkpoint.load_checkpoint`; every format whose loading runs code
(``torch.export``, TorchScript, pickle), and ONNX (onnxruntime, a native parser), goes through
:func:`verification.backends.load_suspect`, which runs it in an isolated worker process (in this
process only with ``unsafe_load``).
The test, the ``result-predicate-v1`` document and its signing are the arbiter's
(:mod:`verification.verify`); this module only opens the suspect and names the tool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mapguard import __version__
from mapguard.checkpoint import file_sha256, load_checkpoint
from mapguard.watermark._verify_remote import (
    RemoteOptions,
    default_log_path,
    open_remote,
    remote_record,
)
from protocols.analysis import Analysis, claim_null_seed
from protocols.errors import InputError, OutputExistsError
from verification import timestamps
from verification.backends import (
    ModuleBackend,
    QueryBackend,
    RemoteBackend,
    WorkerLimits,
    detect_suspect_format,
    is_endpoint,
    load_suspect,
    state_digest,
)
from verification.channel import (
    ChannelResult,
    ChannelSpec,
    Verdict,
    channel_spec,
    combine,
    verify_channel,
)
from verification.forgery import ForgeryAudit, forgery_audit
from verification.verify import (
    VerificationResult,
    VerifyConfig,
    result_predicate,
    verify,
    write_result,
)
from verification.watermark_file import WatermarkFile, read_watermark, watermark_spec

__all__ = ["AUDIT_KEYS", "EXPLORATORY_OPTIONS", "RemoteOptions", "SuspectReport", "verify_suspect"]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SuspectReport:
    """A finished verification: the test result and the predicate written to ``out``; with a
    committed channel (analysis version 4) also its result and the combined verdict."""

    result: VerificationResult
    predicate: Mapping[str, Any]
    signed: bool
    out: Path | None
    channel: ChannelResult | None = None
    verdict: Verdict | None = None
    audit: ForgeryAudit | None = None

    @property
    def evidenced(self) -> bool:
        """The verdict the result document records: the test's (or the combined one), unless a
        counted forgery audit found the evidence forgeable."""
        return self.predicate["verdict"] == "evidenced"


def _backend(
    path: Path,
    *,
    unsafe_load: bool,
    num_classes: int,
    limits: WorkerLimits,
    input_shape: tuple[int, ...],
) -> tuple[QueryBackend, str]:
    """Open the suspect: checkpoints in-process (data), code formats in the isolated worker.

    The backend always answers probabilities so that the class-count probe also holds for a
    label-only verification (:class:`VerifyConfig` reduces the answers to labels).
    """
    fmt = detect_suspect_format(path)
    if fmt != "safetensors":
        backend = load_suspect(
            path, allow_unsafe_load=unsafe_load, num_classes=num_classes, limits=limits,
            input_shape=input_shape,
        )  # fmt: skip
        return backend, fmt
    module, meta = load_checkpoint(path, allow_code=unsafe_load)
    if tuple(meta.input_size) != tuple(input_shape):
        raise InputError(
            f"suspect '{path.name}' takes input_size {list(meta.input_size)}, the watermark's "
            f"images are {list(input_shape)}"
        )
    backend = ModuleBackend(
        module,
        digest="sha256:" + file_sha256(path),
        description=f"mapguard checkpoint {path.name}",
        input_shape=tuple(input_shape),
    )
    backend.probe(num_classes=num_classes)
    return backend, "mapguard-checkpoint"


#: The forgery audit's keys for a local suspect (session 17: with keys of the secrets' classes,
#: 1,000 caught all 8 framed innocent models of a claimant with ~2,000 draws and none of the
#: evidenced copies of two real watermarks; docs/METHOD.md section 4, "The forgery audit").
AUDIT_KEYS = 1000

#: Options that change the p-value: only in an exploratory run (see :func:`verify_suspect`).
EXPLORATORY_OPTIONS = ("labels_only", "queries", "alpha", "null_keys")


def verify_suspect(
    suspect: str | os.PathLike[str] | torch.nn.Module,
    watermark: str | os.PathLike[str],
    *,
    claim_nonce: str | None = None,
    exploratory: Mapping[str, Any] | None = None,
    key: Ed25519PrivateKey | None = None,
    passphrase: bytes | None = None,
    unsafe_load: bool = False,
    timeout: float = 300.0,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    remote: RemoteOptions | None = None,
    timestamp: str | os.PathLike[str] | None = None,
    tsa_cert: str | os.PathLike[str] | None = None,
    suspect_first_seen: str | None = None,
    audit_keys: int | None = None,
) -> SuspectReport:
    """Run the committed analysis of ``watermark`` on ``suspect`` and write the result to ``out``.

    Nothing here changes the p-value: the test, k, M, the images per key, the mode rule, alpha,
    the effect floor and the attempt factor are read from the watermark file's committed
    analysis, and the null keys are seeded by the commitment digest and ``claim_nonce``.

    Args:
        suspect: The suspect model file: a mapguard checkpoint (data, loaded here) or a code
            format (``.pt2``, TorchScript, pickle) or ONNX (run in an isolated worker process);
            an ``http(s)://`` endpoint (Open Inference Protocol, or a request template; every
            exchange in the query log, whose digest the result records); or an in-memory
            ``torch.nn.Module`` taking pixels in ``[0, 1]`` (identified by its state digest).
        watermark: The owner's ``owner.wm``.
        claim_nonce: The claim's nonce: fixed after the claim was filed, by someone other than
            the owner (the arbiter's nonce, or a public randomness-beacon value). Required
            unless ``exploratory``, where a random one is drawn when it is None.
        exploratory: Options that depart from the committed analysis (keys of
            :data:`EXPLORATORY_OPTIONS`: ``labels_only``, ``queries`` (total budget), ``alpha``,
            ``null_keys``); the result is stamped exploratory and proves nothing. ``{}`` runs the
            committed analysis but still stamps it exploratory (e.g. without a claim nonce).
        key: Sign the result with this key (in-toto Statement in a DSSE envelope).
        passphrase: Of an encrypted watermark file.
        unsafe_load: Load code formats (``.pt2``, TorchScript, pickle) in this process instead
            of the isolated worker (runs code from the file; the result says UNSAFE LOAD).
        timeout: Wall-clock seconds the isolated worker may take to load, and per batch.
        out: Where to write the result (None: write nothing).
        force: Overwrite ``out``.
        remote: How to reach an endpoint (options, credentials, the query log, resume).
        timestamp, tsa_cert, suspect_first_seen: An RFC 3161 token on the commitment, the TSA's
            certificate (PEM) to check it with, and the suspect's first known date (RFC 3339,
            given by the arbiter): the result records, signed, whether the commitment is
            certified to predate the suspect (``time_order``; the verdict does not change).
        audit_keys: Run the arbiter's forgery audit (:mod:`verification.forgery`, keys of the
            secrets' target classes) with this many audit keys when the test evidences (0: not
            run; None: :data:`AUDIT_KEYS` for a file or module, 0 for an endpoint, whose queries
            may be billed, and 0 when the time order is established, where it would not
            count). Without an established time order it decides: evidence that the best ``k``
            of ``audit_keys`` audit keys reach on the suspect is not evidence
            (``not_evidenced``); with one it is recorded only.

    Raises:
        InputError: unreadable inputs, a missing claim nonce, a suspect that does not fit the
            watermark (input size, class count), bad options.
    """
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and not force:
        raise OutputExistsError(f"output '{target}' exists; pass --force to overwrite")
    wm = read_watermark(watermark, passphrase=passphrase)
    nonce = _claim_nonce(claim_nonce, exploratory)
    config = _config(wm, nonce, exploratory)
    order = timestamps.commitment_time_order(
        timestamp, tsa_cert, digest=wm.commitment_digest, first_seen=suspect_first_seen
    )  # checked before any query: a token that does not verify stops here
    limits = WorkerLimits(start_timeout=timeout, request_timeout=timeout)
    spec = watermark_spec(wm)
    if audit_keys is None:  # the audit cannot change a verdict whose time order is certified
        established = bool(order is not None and order.get("established"))
        audit_keys = 0 if is_endpoint(suspect) or established else AUDIT_KEYS
    if audit_keys != 0 and (not isinstance(audit_keys, int) or audit_keys < len(spec.secrets)):
        raise InputError(f"the forgery audit needs at least {len(spec.secrets)} keys (the "
                         f"number of secrets), got {audit_keys!r}")  # fmt: skip
    chan_spec = channel_spec(wm)  # checked against its commitment before any query
    shape = tuple(spec.images.shape[1:])
    remote_block = None
    options = remote if remote is not None else RemoteOptions()
    kept = None
    if is_endpoint(suspect):
        kept = default_log_path(target, options)
        with _log_kept(kept):
            backend: QueryBackend = open_remote(
                str(suspect), wm=wm, spec=spec, config=config, claim_nonce=nonce, out=target,
                options=options,
            )  # fmt: skip
        name, fmt = backend.endpoint, backend.wire.name
    else:
        backend, name, fmt = _local(suspect, wm, shape, unsafe_load=unsafe_load, limits=limits)
    try:
        with _log_kept(kept):
            result = verify(backend, spec, config)
            channel = _channel(backend, chan_spec, config, result, order)
            audit = None
            if audit_keys and result.evidenced:
                audit = forgery_audit(backend, spec, result, n_keys=audit_keys,
                                      match_classes=True, batch_size=config.batch_size)  # fmt: skip
            if isinstance(backend, RemoteBackend):
                remote_block = remote_record(backend)
    finally:
        backend.close()
    verdict = None if channel is None else combine(_alpha(wm, exploratory), result, channel)
    counted = not (order is not None and order.get("established"))
    predicate = result_predicate(
        result,
        watermark=wm,
        suspect_name=name,
        suspect_format=fmt,
        tool_name="mapguard",
        tool_version=__version__,
        isolation=backend.isolation,
        analysis=_analysis_record(wm, exploratory),
        claim_nonce=nonce,
        exploratory=exploratory is not None,
        endpoint=name if remote_block is not None else None,
        query_log=remote_block,
        time_order=order,
        channel=None if channel is None else channel.to_dict(),
        combined=None if verdict is None else verdict.to_dict(),
        forgery_audit=None if audit is None else {**audit.to_dict(), "counted": counted},
    )
    if target is not None:
        write_result(target, predicate, key=key, force=force)
    return SuspectReport(result=result, predicate=predicate, signed=key is not None, out=target,
                         channel=channel, verdict=verdict, audit=audit)  # fmt: skip


def _channel(
    backend: QueryBackend,
    spec: ChannelSpec | None,
    config: VerifyConfig,
    result: VerificationResult,
    order: Mapping[str, Any] | None,
) -> ChannelResult | None:
    """The committed channel's test (None without one), in the trigger test's mode."""
    if spec is None:
        return None
    established = bool(order is not None and order.get("established"))
    sentence = (order or {}).get("sentence") or (
        "no trusted timestamp and first known date were given, so the channel is reported and "
        "not counted"
    )
    assert config.null_seed is not None  # from the claim nonce (_config)
    return verify_channel(backend, spec, null_seed=config.null_seed,
                          labels_only=result.mode == "labels", time_order=(established, sentence),
                          batch_size=config.batch_size)  # fmt: skip


@contextlib.contextmanager
def _log_kept(log: Path | None) -> Iterator[None]:
    """A remote run's user-facing error says where its query log is and how to continue."""
    try:
        yield
    except InputError as exc:
        if log is None or not log.exists() or "query log" in str(exc):
            raise
        raise InputError(f"{exc}; query log '{log}' kept: rerun with --resume") from None


def _local(
    suspect: str | os.PathLike[str] | torch.nn.Module,
    wm: WatermarkFile,
    shape: tuple[int, ...],
    *,
    unsafe_load: bool,
    limits: WorkerLimits,
) -> tuple[QueryBackend, str, str]:
    """A suspect file or in-memory module: ``(backend, name, format)``, probed."""
    if isinstance(suspect, torch.nn.Module):
        backend: QueryBackend = ModuleBackend(
            suspect.eval(),
            digest=state_digest(suspect),
            description=f"in-memory {type(suspect).__name__}",
            input_shape=shape,
        )
        backend.probe(num_classes=wm.num_classes)
        return backend, f"in-memory {type(suspect).__name__}", "torch.nn.Module"
    path = Path(suspect)
    backend, fmt = _backend(
        path, unsafe_load=unsafe_load, num_classes=wm.num_classes, limits=limits,
        input_shape=shape,
    )  # fmt: skip
    return backend, path.name, fmt


def _claim_nonce(claim_nonce: str | None, exploratory: Mapping[str, Any] | None) -> str:
    if claim_nonce is not None:
        return claim_nonce
    if exploratory is None:
        raise InputError(
            "verify needs --claim-nonce: a value fixed after the claim was filed, by someone "
            "other than the owner (the arbiter's nonce or a public randomness-beacon value); it "
            "seeds the null keys (or pass --exploratory for a run that proves nothing)"
        )
    return "exploratory-" + secrets.token_hex(16)


def _config(wm: WatermarkFile, nonce: str, exploratory: Mapping[str, Any] | None) -> VerifyConfig:
    """The committed analysis as a :class:`VerifyConfig`, with exploratory departures."""
    try:
        seed = claim_null_seed(commitment_digest=wm.commitment_digest, claim_nonce=nonce)
    except ValueError as exc:
        raise InputError(f"--claim-nonce: {exc}") from None
    # A suspect file answers probabilities; the mode rule decides which answers count.
    config = VerifyConfig.from_analysis(wm.analysis, null_seed=seed, gives_probabilities=True)
    if not exploratory:
        return config
    unknown = set(exploratory) - set(EXPLORATORY_OPTIONS)
    if unknown:
        raise InputError(f"unknown exploratory option(s): {', '.join(sorted(unknown))}")
    changes = {
        name: exploratory[key]
        for key, name in (("labels_only", "labels_only"), ("alpha", "alpha"),
                          ("null_keys", "null_keys_per_secret"), ("queries", "query_budget"))
        if exploratory.get(key) is not None
    }  # fmt: skip
    if "query_budget" in changes:
        changes["n_query_images"] = None
    return dataclasses.replace(config, **changes)


def _alpha(wm: WatermarkFile, exploratory: Mapping[str, Any] | None) -> Analysis:
    """The committed analysis, with an exploratory alpha if one was given."""
    alpha = (exploratory or {}).get("alpha")
    return wm.analysis if alpha is None else dataclasses.replace(wm.analysis, alpha=alpha)


def _analysis_record(wm: WatermarkFile, exploratory: Mapping[str, Any] | None) -> dict[str, Any]:
    """The committed block, or (exploratory) the options that departed from it."""
    block = wm.analysis.to_block()
    if exploratory:
        block["exploratory_options"] = {k: v for k, v in exploratory.items() if v is not None}
    return block
