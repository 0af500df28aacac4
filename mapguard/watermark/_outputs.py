"""The embedding's output folder: the protected model files and the documents about them.

The documents themselves (the commitment statement and the watermark file) are built by
:mod:`protocols.documents` from what is assembled here; this module names the files, fills in
mapguard's parts (the committed core, the method block, the model block) and writes each file
into the staging folder of :func:`protocols.fileio.atomic_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn

from mapguard import __version__
from mapguard.checkpoint import save_checkpoint
from mapguard.export import export_program
from mapguard.masking import MaskResult
from mapguard.watermark._channel import DrawnChannel
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._recipe import EmbedInputs
from protocols import canonical, documents, openings, statements
from protocols.analysis import Analysis
from protocols.fileio import sha256_file
from verification.channel import encode_channel
from verification.triggers import Trigger
from verification.watermark_file import seal_watermark

__all__ = [
    "COMMITMENT_FILE",
    "CONFIG_FILE",
    "EXPORT_FILE",
    "FILES",
    "METHOD_NAME",
    "METRICS_FILE",
    "MODEL_FILE",
    "WATERMARK_FILE",
    "Commitment",
    "commit",
    "save_models",
    "watermark_core",
    "write_documents",
]

MODEL_FILE = "protected.pt"
EXPORT_FILE = "protected.pt2"
WATERMARK_FILE = "owner.wm"
COMMITMENT_FILE = "commitment.dsse.json"
CONFIG_FILE = "embed-config.json"
METRICS_FILE = "metrics.json"
#: Every file an embedding writes, in the order a reader meets them.
NOT_READY_FILE = "NOT_READY.txt"
FILES = (MODEL_FILE, EXPORT_FILE, WATERMARK_FILE, COMMITMENT_FILE, CONFIG_FILE, METRICS_FILE,
         NOT_READY_FILE)  # fmt: skip
METHOD_NAME = "map-watermark"
_PRIVATE_MODE = 0o600
_TOOL = {"name": "mapguard", "version": __version__}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Commitment:
    """The commitment statement (unsigned) and the private openings of its digests."""

    statement: Mapping[str, Any]
    opened: Mapping[str, Any]

    @property
    def digest(self) -> str:
        """SHA-256 of the statement: the public name of the watermark."""
        return statements.statement_digest(self.statement)


def watermark_core(
    cfg: EmbedConfig,
    params: Mapping[str, Any],
    secrets: list[bytes],
    triggers: list[Trigger],
    verification_set: Mapping[str, Any],
) -> dict[str, Any]:
    """What the commitment commits to: the family, each secret and its trigger, the images."""
    return {
        "trigger_family": {"name": cfg.family, "parameters": dict(params)},
        "secrets": [
            {
                "secret": s.hex(),
                "trigger": {"details": dict(t.details), "fingerprint": t.fingerprint()},
            }
            for s, t in zip(secrets, triggers, strict=True)
        ],
        "verification_set": dict(verification_set),
    }


def save_models(
    stage: Path, inp: EmbedInputs, protected: nn.Module, mask: MaskResult, cfg: EmbedConfig
) -> list[tuple[str, str]]:
    """Write the protected checkpoint (and its export); ``(file name, sha256)`` of each."""
    extra = dict(inp.meta.extra)
    extra.update(protection=METHOD_NAME, pruned_fraction=f"{mask.pruned_fraction:.6f}")
    save_checkpoint(protected.cpu(), dataclasses.replace(inp.meta, extra=extra), stage / MODEL_FILE)
    names = [MODEL_FILE]
    if cfg.export:
        export_program(protected, stage / EXPORT_FILE, input_size=inp.meta.input_size)
        names.append(EXPORT_FILE)
    return [(name, sha256_file(stage / name)) for name in names]


def commit(
    core: Mapping[str, Any],
    inp: EmbedInputs,
    cfg: EmbedConfig,
    key: Ed25519PrivateKey,
    subjects: list[tuple[str, str]],
    analysis: Analysis,
) -> Commitment:
    """The commitment to ``core`` (fresh OS-random nonces) for the model files ``subjects``,
    with the pre-registered ``analysis``."""
    public, opened = openings.make_commitments(core)
    model = {
        "sha256": subjects[0][1],
        "name": MODEL_FILE,
        "format": "mapguard-checkpoint",
        "num_classes": inp.meta.num_classes,
    }
    statement = documents.commitment_statement(
        core=core,
        public=public,
        owner_key=key.public_key(),
        tool=_TOOL,
        model=model,
        subjects=subjects,
        method=_method(cfg, inp),
        analysis=analysis.to_block(),
        created=canonical.now_rfc3339(),
    )
    return Commitment(statement=statement, opened=opened)


def _method(cfg: EmbedConfig, inp: EmbedInputs) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mask": {k: v for k, v in cfg.mask.to_dict().items() if k != "seed"},
        "negative_keys": "fresh random key of the family per image and step, held to the "
        f"original model's outputs on the {cfg.negative_teacher} image",
        "prune_cost": cfg.prune_cost,
        "target_weight": cfg.target_weight if cfg.targeted() else 0.0,
        "arch": inp.meta.arch,
    }
    if inp.source_sha256 is not None:
        params["source_model_sha256"] = inp.source_sha256
    if cfg.adapted or cfg.stop_every is not None:
        params["recipe"] = _recipe_block(cfg)
    return {"name": METHOD_NAME, "parameters": params}


def _recipe_block(cfg: EmbedConfig) -> dict[str, Any]:
    """What the recipe decided before the secrets were drawn (``adapt_recipe``): committed, so
    that the stopping rule and the adapted rates are on the record before any self-check."""
    stop = None
    if cfg.stop_every is not None:
        stop = {"rule": cfg.stop_rule, "every_images": cfg.stop_every,
                "tuning_images": cfg.stop_images, "effect_margin": cfg.stop_margin,
                "max_accuracy_drop": cfg.max_accuracy_drop}  # fmt: skip
    return {"adapted": cfg.adapted, "mask_images": cfg.mask_images, "stop": stop}


def write_documents(
    stage: Path,
    core: Mapping[str, Any],
    commitment: Commitment,
    key: Ed25519PrivateKey,
    cfg: EmbedConfig,
    metrics: Mapping[str, Any],
    passphrase: bytes | None,
    *,
    channel: DrawnChannel | None = None,
) -> None:
    """Write the watermark file (private, signed, encrypted with ``passphrase`` if given; with
    the committed ``channel``'s secret, opening and query set), the signed commitment, the
    options used and the public figures ``metrics``."""
    figures = _jsonable(metrics)
    doc = documents.watermark_document(
        core=core,
        opened=commitment.opened,
        statement=commitment.statement,
        owner_key=key.public_key(),
        calibration=figures,
        channel=None if channel is None else encode_channel(channel.spec),
    )
    _write_private(stage / WATERMARK_FILE, seal_watermark(doc, key, passphrase=passphrase))
    _write_public(stage / COMMITMENT_FILE, statements.sign_statement(commitment.statement, key))
    _write_public(stage / CONFIG_FILE, _jsonable(cfg.to_dict()))
    _write_public(stage / METRICS_FILE, figures)


def write_not_ready(stage: Path, reasons: tuple[str, ...]) -> None:
    """Mark an embedding that missed its level or cost limit: ``NOT_READY.txt`` says why and
    that ``commitment.dsse.json`` must not be published (nothing is written when ready)."""
    if not reasons:
        return
    lines = [
        "NOT READY FOR PUBLICATION: do not publish commitment.dsse.json or deploy protected.pt.",
        *(f"- {r}" for r in reasons),
    ]
    (stage / NOT_READY_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, _PRIVATE_MODE)


def _write_public(path: Path, obj: Any) -> None:
    """Canonical JSON plus newline (inside the staging folder)."""
    path.write_bytes(canonical.canonical_bytes(obj) + b"\n")


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON: tuples to lists, non-finite floats refused by canonical JSON."""
    return canonical.loads(json.dumps(obj, allow_nan=False))
