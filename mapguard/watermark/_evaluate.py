"""Evaluation and self-check of a protected model: what the embedding reports about itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mapguard.checkpoint import load_checkpoint
from mapguard.training import predict_logits
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._recipe import EmbedInputs
from mapguard.watermark._sources import stack_triggers, stamp
from protocols.analysis import Analysis, claim_null_seed
from verification.backends import ModuleBackend
from verification.triggers import Trigger, get_trigger_family, psnr, random_secret
from verification.verify import VerificationResult, VerifyConfig, WatermarkSpec, verify

__all__ = ["evaluate", "self_check"]


@torch.no_grad()
def _labels(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return predict_logits(model, x, device=device).argmax(1)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((_labels(model, x, device) == y).float().mean())


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
    triggers' visibility (PSNR)."""
    x, y = inp.holdout.floats(), inp.holdout.labels
    before = _accuracy(inp.model, x, y, device)
    after = _accuracy(protected, x, y, device)
    secret_acc, target_rate, psnrs = [], [], []
    for t in triggers:
        xt = t.apply(x)
        pred = _labels(protected, xt, device)
        secret_acc.append(float((pred == y).float().mean()))
        if "target" in t.details:
            other = y != t.details["target"]
            target_rate.append(float((pred[other] == t.details["target"]).float().mean()))
        psnrs.append(psnr(x, xt))
    family = get_trigger_family(cfg.family)
    rng = np.random.default_rng([cfg.seed, 0xA11])
    alpha, pattern = stack_triggers(
        [family.derive(random_secret(rng), params=params) for _ in range(x.shape[0])]
    )
    xr = stamp(x, alpha, pattern)
    return {
        "clean_accuracy_before": before,
        "clean_accuracy_after": after,
        "secret_trigger_accuracy": tuple(secret_acc),
        "target_rate": tuple(target_rate) if target_rate else None,
        "random_key_accuracy": _accuracy(protected, xr, y, device),
        "random_key_accuracy_before": _accuracy(inp.model, xr, y, device),
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
    # The file was just written from the owner's own model: its architecture (even a module:
    # factory) is the one the owner loaded or described, so rebuilding it runs nothing new.
    protected, _ = load_checkpoint(model_file, allow_code=True)
    backend = ModuleBackend(
        protected, digest="sha256:" + model_sha256, input_shape=tuple(spec.images.shape[1:])
    )
    seed = claim_null_seed(commitment_digest=spec.commitment_digest, claim_nonce=SELF_CHECK_NONCE)
    config = VerifyConfig.from_analysis(analysis, null_seed=seed, gives_probabilities=True)
    return _summary(verify(backend, spec, config))


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
