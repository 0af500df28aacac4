"""Evaluation and self-check of a protected model: what the embedding reports about itself."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mapguard.checkpoint import load_checkpoint
from mapguard.training import STREAM_BATCH, predict_logits
from mapguard.watermark._channel import DrawnChannel
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._recipe import EmbedInputs
from mapguard.watermark._sources import stack_triggers, stamp
from protocols.analysis import Analysis, claim_null_seed, resolve_mode
from verification.backends import ModuleBackend
from verification.channel import verify_channel
from verification.triggers import Trigger, get_trigger_family, random_secret
from verification.verify import VerificationResult, VerifyConfig, WatermarkSpec, verify

__all__ = ["evaluate", "self_check"]


@torch.no_grad()
def _labels(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return predict_logits(model, x, device=device).argmax(1)


def _rate(hits: torch.Tensor) -> float:
    """The fraction of true values (float32 mean, as every accuracy of mapguard)."""
    return float(hits.float().mean())


def _holdout_chunks(inp: EmbedInputs) -> Iterator[torch.Tensor]:
    """The held-out images in order: an ``ImageSet`` as one tensor (memory), a streamed dataset
    :data:`~mapguard.training.STREAM_BATCH` images at a time (memory bounded)."""
    if hasattr(inp.holdout, "floats"):
        yield inp.holdout.floats()
        return
    from mapguard.data import data_loader

    loader = data_loader(inp.holdout, batch_size=STREAM_BATCH, seed=0, workers=inp.workers,
                         shuffle=False)  # fmt: skip
    yield from (x for x, _ in loader)


def _mse(parts: list[tuple[float, int]]) -> float:
    """The mean squared error over all chunks from ``(chunk mean, chunk elements)`` (one chunk:
    its mean as it is, the figure of the in-memory code)."""
    if len(parts) == 1:
        return parts[0][0]
    return sum(m * n for m, n in parts) / sum(n for _, n in parts)


def evaluate(
    inp: EmbedInputs,
    protected: nn.Module,
    triggers: list[Trigger],
    params: Mapping[str, Any],
    cfg: EmbedConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Held-out figures: clean accuracy before and after, accuracy under each secret trigger
    (and the share sent to its target), accuracy under random keys of the family, and the
    triggers' visibility (PSNR). A streamed hold-out is read once, a chunk at a time."""
    y = inp.holdout.labels
    family = get_trigger_family(cfg.family)
    rng = np.random.default_rng([cfg.seed, 0xA11])  # one random key per image, in order
    preds: dict[str, list[torch.Tensor]] = {}
    errors: list[list[tuple[float, int]]] = [[] for _ in triggers]
    for x in _holdout_chunks(inp):
        keys = [family.derive(random_secret(rng), params=params) for _ in range(x.shape[0])]
        xr = stamp(x, *stack_triggers(keys))
        found = {"before": _labels(inp.model, x, device), "after": _labels(protected, x, device),
                 "random": _labels(protected, xr, device),
                 "random_before": _labels(inp.model, xr, device)}  # fmt: skip
        for i, t in enumerate(triggers):
            xt = t.apply(x)
            found[f"secret{i}"] = _labels(protected, xt, device)
            errors[i].append((float(torch.mean((x.double() - xt.double()) ** 2)), x.numel()))
        for name, labels in found.items():
            preds.setdefault(name, []).append(labels)
    pred = {name: torch.cat(parts) for name, parts in preds.items()}
    secret_acc, target_rate = [], []
    for i, t in enumerate(triggers):
        secret_acc.append(_rate(pred[f"secret{i}"] == y))
        if "target" in t.details:
            other = y != t.details["target"]
            target_rate.append(_rate(pred[f"secret{i}"][other] == t.details["target"]))
    psnrs = [math.inf if m == 0.0 else 10.0 * math.log10(1.0 / m) for m in map(_mse, errors)]
    return {
        "clean_accuracy_before": _rate(pred["before"] == y),
        "clean_accuracy_after": _rate(pred["after"] == y),
        "secret_trigger_accuracy": tuple(secret_acc),
        "target_rate": tuple(target_rate) if target_rate else None,
        "random_key_accuracy": _rate(pred["random"] == y),
        "random_key_accuracy_before": _rate(pred["random_before"] == y),
        "psnr_db": float(np.mean(psnrs)),
    }


SELF_CHECK_NONCE = "mapguard embed self-check"


def self_check(
    model_file: Path, model_sha256: str, spec: WatermarkSpec, analysis: Analysis
) -> dict[str, Any]:
    """Verify the written protected model as a suspect with the committed ``analysis`` (claim
    nonce :data:`SELF_CHECK_NONCE`, a fixed public value); the public summary.

    The checkpoint is read back from ``model_file`` rather than taken from memory so that the
    check is about the very bytes the commitment names by ``model_sha256`` (what is saved is
    what a thief copies: the CPU weights, the baked-in mask and the BatchNorm buffers as stored).
    """
    backend = _written(model_file, model_sha256, tuple(spec.images.shape[1:]))
    seed = claim_null_seed(commitment_digest=spec.commitment_digest, claim_nonce=SELF_CHECK_NONCE)
    config = VerifyConfig.from_analysis(analysis, null_seed=seed, gives_probabilities=True)
    return _summary(verify(backend, spec, config))


def _written(model_file: Path, model_sha256: str, shape: tuple[int, ...]) -> ModuleBackend:
    """The written protected model as a suspect. The file was just written from the owner's own
    model: its architecture (even a module: factory) is the one the owner loaded or described,
    so rebuilding it runs nothing new."""
    protected, _ = load_checkpoint(model_file, allow_code=True)
    return ModuleBackend(protected, digest="sha256:" + model_sha256, input_shape=shape)


def channel_self_check(
    model_file: Path, model_sha256: str, drawn: DrawnChannel, digest: str, analysis: Analysis
) -> dict[str, Any]:
    """The committed channel's test on the written protected model, as an arbiter runs it (same
    claim nonce as :func:`self_check`); ``at_level``: its p-value reaches its share ``alpha /
    2``."""
    spec = drawn.spec
    backend = _written(model_file, model_sha256, tuple(spec.queries.boundary.shape[1:]))
    seed = claim_null_seed(commitment_digest=digest, claim_nonce=SELF_CHECK_NONCE)
    mode = resolve_mode(analysis.mode_rule, gives_probabilities=True)
    res = verify_channel(backend, spec, null_seed=seed, labels_only=mode == "labels",
                         time_order=(True, "self-check: the owner's own model"))  # fmt: skip
    p = min(1.0, analysis.attempt * res.pvalue)
    return {"mode": res.mode, "pvalue": p, "z": res.z, "rank": res.rank,
            "null_keys": res.null_keys, "queries": res.queries,
            "at_level": analysis.channels * p <= analysis.alpha,
            "seconds": res.wall_time_s}  # fmt: skip


def _summary(res: VerificationResult) -> dict[str, Any]:
    return {
        "mode": res.mode,
        "pvalue": res.pvalue,
        "pvalue_floor": res.pvalue_floor,
        "evidenced": res.evidenced,
        "ranks": list(res.ranks),
        "queries": res.queries,
        "n_images": res.n_images,
        "secret_statistics": list(res.secret_stats),
        "null_max": res.null_summary.max,
        "null_median": res.null_summary.median,
        "seconds": res.wall_time_s,
    }
