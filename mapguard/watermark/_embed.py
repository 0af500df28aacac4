"""``embed``: learn a watermark mask, then write the protected model, watermark and commitment.

The walk: :mod:`._recipe` (inputs, secrets, verification set, mask) -> :mod:`._evaluate`
(held-out figures) -> :mod:`._outputs` (model files, commitment) -> :mod:`._evaluate` (self-check
of the written model against the commitment) -> :mod:`._outputs` (documents), all inside one
:func:`protocols.fileio.atomic_dir`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn

from mapguard._device import check_amp, default_device, mixed_precision
from mapguard._errors import ConfigError
from mapguard.checkpoint import ModelMeta
from mapguard.masking import (
    MaskResult,
    broadcast_from_main,
    device_for,
    finish_distributed,
    init_distributed,
)
from mapguard.watermark import _outputs as outputs
from mapguard.watermark._adapt import adapt_recipe
from mapguard.watermark._attempts import previous_attempts, record_attempt
from mapguard.watermark._channel import DrawnChannel, draw_channel, teach_channel
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._evaluate import channel_self_check, evaluate, self_check
from mapguard.watermark._harden import harden
from mapguard.watermark._recipe import (
    EmbedInputs,
    VerificationSet,
    draw_triggers,
    draw_verification_set,
    learn,
    load_inputs,
    model_side,
)
from mapguard.watermark._stopping import StopRule, draw_tuning_set, spare_images
from protocols import keys
from protocols.errors import InputError
from protocols.fileio import atomic_dir, check_output_dir
from verification.backends import state_digest
from verification.triggers import Trigger, get_trigger_family
from verification.verify import WatermarkSpec

__all__ = ["EmbedResult", "embed"]

#: Rounding slack of a difference of two float32 accuracies (compared with a cost limit).
_FLOAT32_SLACK = 1e-6


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedResult:
    """What an embedding produced (public figures only; the secrets stay in ``owner.wm``).

    Attributes:
        out: The output folder.
        files: Path of each written file, by name.
        fingerprint: The owner key's fingerprint.
        commitment_digest: SHA-256 of the signed commitment statement.
        model_sha256: SHA-256 of ``protected.pt``.
        psnr_db: Visibility of the secret triggers (PSNR of triggered vs clean images, dB).
        clean_accuracy_before: Original model on the held-out split.
        clean_accuracy_after: Protected model on the held-out split.
        secret_trigger_accuracy: Protected model on held-out images with each secret trigger.
        target_rate: Fraction of those sent to the secret's target class (targeted families).
        random_key_accuracy: Protected model under random keys of the family (mean).
        random_key_accuracy_before: The original model under the same random keys.
        pruned_fraction: Fraction of weights the mask removed.
        self_check: Public summary of verifying the protected model itself (labels only).
        seconds: Wall time.
        not_ready: Why the embedding is not ready for publication (empty: ready): the
            self-check not evidenced under the committed analysis, or a clean-accuracy cost above
            ``EmbedConfig.max_accuracy_drop``.
    """

    out: Path
    files: Mapping[str, Path]
    fingerprint: str
    commitment_digest: str
    model_sha256: str
    psnr_db: float
    clean_accuracy_before: float
    clean_accuracy_after: float
    secret_trigger_accuracy: tuple[float, ...]
    target_rate: tuple[float, ...] | None
    random_key_accuracy: float
    random_key_accuracy_before: float
    pruned_fraction: float
    self_check: Mapping[str, Any]
    seconds: float
    not_ready: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        """Whether the embedding met its committed level and cost limit (publish it)."""
        return not self.not_ready

    @property
    def accuracy_drop(self) -> float:
        """Clean accuracy lost by embedding (points of accuracy as a fraction)."""
        return self.clean_accuracy_before - self.clean_accuracy_after

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (safe to publish)."""
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["files"] = {k: str(v) for k, v in self.files.items()}
        out["accuracy_drop"] = self.accuracy_drop
        out["not_ready"] = list(self.not_ready)
        out["ready"] = self.ready
        return out


def embed(
    model: str | os.PathLike[str] | nn.Module,
    data: str | tuple[Any, Any],
    key: Ed25519PrivateKey,
    config: EmbedConfig | None = None,
    *,
    out: str | os.PathLike[str],
    passphrase: bytes | None = None,
    force: bool = False,
    meta: ModelMeta | None = None,
    device: str | None = None,
    progress: bool = True,
    allow_code: bool = False,
    secret_rng: np.random.Generator | None = None,
    workers: int = 0,
    amp: bool = False,
) -> EmbedResult:
    """Embed an ownership watermark into ``model`` and write the output folder ``out``.

    Draws ``k`` fresh 256-bit secrets, derives their triggers, learns a MAP mask that keeps the
    source data (clean and stamped with random keys of the family) and breaks the secret
    triggers, reserves held-out verification images, signs a commitment to all of it, checks the
    result by verifying the protected model, and writes, atomically (all files or none):
    ``protected.pt`` (+ ``protected.pt2``), ``owner.wm`` (private, mode 0600, signed, encrypted
    with ``passphrase`` if given), ``commitment.dsse.json``, ``embed-config.json`` and
    ``metrics.json``.

    Args:
        model: A mapguard checkpoint path, or a module together with ``meta``.
        data: ``"builtin:NAME"`` / folder spec (train split: mask learning; test split:
            evaluation and verification images; a folder is streamed from disk, a built-in
            domain held in memory), or ``(train, holdout)`` image sets or datasets.
        key: The owner's Ed25519 private key.
        config: Options (defaults: :class:`EmbedConfig`).
        out: Output folder (must not exist unless ``force``).
        passphrase: Encrypt ``owner.wm`` with it.
        force: Replace an existing ``out``.
        meta: Checkpoint metadata of an in-memory ``model``.
        device: Torch device for mask learning.
        progress: Show progress bars.
        allow_code: Build a checkpoint whose architecture is ``module:pkg.mod:factory`` (runs
            that code: only for your own model).
        secret_rng: Tests only: a seeded generator for the secrets (never in production).
        workers: DataLoader processes decoding streamed (folder) images; the outputs do not
            depend on it.
        amp: bf16 autocast and channels-last while the mask learns (CUDA only; evaluation and
            the self-check stay float32).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process learns its share of each batch; rank
    0 draws the secrets (every rank gets them), evaluates, writes ``out`` and self-checks, and
    every rank returns its result.

    Raises:
        InputError: bad inputs (typed subclasses: ConfigError, DataError, ModelFileError, ...).
    """
    t0 = time.perf_counter()
    cfg = config or EmbedConfig()
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"key must be an Ed25519 private key, got {type(key).__name__}")
    if amp:
        check_amp(default_device(device))
    check_output_dir(out, force=force)  # before minutes of work
    inp = load_inputs(model, data, meta, allow_code=allow_code, workers=workers)
    # the recipe for this model and data (budget, rates, stopping rule), before any draw
    cfg = adapt_recipe(cfg, inp.model, n_train=len(inp.train), n_spare=spare_images(inp, cfg))
    if cfg.stop_every is not None and not spare_images(inp, cfg):
        raise ConfigError(
            f"the stopping rule (stop_every={cfg.stop_every}) needs held-out images beyond the "
            f"n_verification={cfg.n_verification}; the data hold out {len(inp.holdout)}"
        )
    info = init_distributed()  # under torchrun: every rank learns, rank 0 writes
    if cfg.harden.on and info.world_size > 1:  # every rank would train its own copy
        raise ConfigError("harden runs in a single process (not under torchrun)")
    dev = device_for(info, default_device(device))
    params = cfg.family_params(inp.meta.num_classes, image_size=model_side(inp.meta))
    secrets, triggers = draw_triggers(cfg, params, secret_rng)  # rank 0's, on every rank
    drawn = _Drawn(
        params=params,
        secrets=secrets,
        triggers=triggers,
        vset=draw_verification_set(inp, cfg),  # before learning: independent of the mask
    )
    original = inp
    if cfg.channel.on:  # the query set before the secret; then weights are taught (module doc)
        if info.world_size > 1:
            raise ConfigError("the committed channel is not supported under torchrun yet")
        channel = draw_channel(inp.model, inp.holdout, set(drawn.vset.indices), cfg.channel,
                               num_classes=inp.meta.num_classes, seed=cfg.seed,
                               secret_rng=secret_rng)  # fmt: skip
        taught = teach_channel(inp.model, inp.train, channel, cfg.channel, seed=cfg.seed)
        inp = dataclasses.replace(inp, model=taught)
        drawn = dataclasses.replace(drawn, channel=channel)
    stop = _stop_rule(inp, cfg, drawn, dev, reference=original.model)
    with mixed_precision(dev, amp):
        mask = learn(inp, triggers, params, cfg, dev, progress, callbacks=[stop] if stop else [])
    drawn = dataclasses.replace(drawn, learning=_learning(mask, stop), base=inp.model)
    if cfg.harden.on:  # the weights change after the mask (experimental; module _harden)
        drawn = _hardened(inp, drawn, mask, cfg, dev)
    inp = original  # figures "before" are the original's, the channel's teaching included
    result = None
    if info.is_main:
        result = _publish(inp, drawn, mask, cfg, key, out=out, force=force,
                          passphrase=passphrase, device=dev, t0=t0)  # fmt: skip
    result = broadcast_from_main(result)  # the other ranks wait for rank 0's outputs
    finish_distributed()
    return result


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Drawn:
    """What was drawn before learning: the family's parameters, the secrets and their triggers,
    and the verification set."""

    params: Mapping[str, Any]
    secrets: list[bytes]
    triggers: list[Trigger]
    vset: VerificationSet
    learning: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    channel: DrawnChannel | None = None
    base: nn.Module | None = None  # the weights the mask applies to (taught, with a channel)
    protected: nn.Module | None = None  # the hardened model (``harden``), else mask over base


def _hardened(inp: EmbedInputs, drawn: _Drawn, mask: MaskResult, cfg: EmbedConfig,
              device: torch.device) -> _Drawn:  # fmt: skip
    """``drawn`` with the hardened model and its record (``learning.harden``)."""
    if not hasattr(inp.train, "floats"):
        raise ConfigError("harden needs the training images in memory (a built-in set)")
    family = get_trigger_family(cfg.family)
    model, record = harden(mask.apply(drawn.base), inp.train.floats(), inp.train.labels,
                           drawn.triggers, family, dict(drawn.params), cfg.harden,
                           device=device)  # fmt: skip
    learning = {**drawn.learning, "harden": record}
    return dataclasses.replace(drawn, protected=model, learning=learning)


def _stop_rule(
    inp: EmbedInputs, cfg: EmbedConfig, drawn: _Drawn, device: torch.device, reference: nn.Module
) -> StopRule | None:
    """The stopping rule's callback (None when the recipe has none); its cost is measured
    against ``reference``, the original model (not the channel's taught weights)."""
    if cfg.stop_every is None:
        return None
    tuning = draw_tuning_set(inp, cfg, drawn.vset)
    return StopRule(inp, cfg, tuning, drawn.secrets, drawn.triggers, drawn.params, device,
                    reference=reference)  # fmt: skip


def _learning(mask: MaskResult, stop: StopRule | None) -> dict[str, Any]:
    """How the mask was learned (``metrics.json`` ``learning``): images seen, epochs, seconds,
    and the stopping rule's rehearsals."""
    out = {"images": mask.images, "epochs": len(mask.history), "steps": mask.steps,
           "seconds": mask.seconds}  # fmt: skip
    return out | (stop.summary() if stop is not None else {"stop_rule": None})


def _publish(
    inp: EmbedInputs,
    drawn: _Drawn,
    mask: MaskResult,
    cfg: EmbedConfig,
    key: Ed25519PrivateKey,
    *,
    out: str | os.PathLike[str],
    force: bool,
    passphrase: bytes | None,
    device: torch.device,
    t0: float,
) -> EmbedResult:
    """Evaluate the protected model, then write, commit, self-check and seal, all inside one
    :func:`protocols.fileio.atomic_dir` (rank 0 only under ``torchrun``)."""
    protected = drawn.protected  # hardened; else the mask over the (taught) weights
    if protected is None:
        protected = mask.apply(drawn.base if drawn.base is not None else inp.model)
    protected = protected.to(device).eval()
    figures = evaluate(inp, protected, drawn.triggers, drawn.params, cfg, device)
    core = outputs.watermark_core(
        cfg, drawn.params, drawn.secrets, drawn.triggers, drawn.vset.encode()
    )
    with atomic_dir(out, force=force) as stage:
        subjects = outputs.save_models(stage, inp, protected, mask, cfg)
        fingerprint = keys.fingerprint(key.public_key())
        source = inp.source_sha256 or state_digest(inp.model).removeprefix("sha256:")
        earlier = tuple(previous_attempts(fingerprint, source))
        analysis = cfg.analysis(attempt=len(earlier) + 1, discarded=earlier)
        if drawn.channel is not None:
            analysis = dataclasses.replace(analysis, channel=drawn.channel.block, version="4")
        commitment = outputs.commit(core, inp, cfg, key, subjects, analysis)
        # Counted before the self-check is computed: stopping after a poor one cannot hide it.
        record_attempt(fingerprint, source, commitment.digest)
        spec = _spec(cfg, drawn, inp.meta.num_classes, commitment.digest)
        check = self_check(stage / outputs.MODEL_FILE, subjects[0][1], spec, analysis)
        metrics = {**figures, "pruned_fraction": mask.pruned_fraction, "self_check": check,
                   "learning": dict(drawn.learning)}  # fmt: skip
        chan = None
        if drawn.channel is not None:
            chan = channel_self_check(stage / outputs.MODEL_FILE, subjects[0][1], drawn.channel,
                                      commitment.digest, analysis)  # fmt: skip
            metrics["channel_self_check"] = chan
        not_ready = readiness(cfg, figures, check, attempt=analysis.attempt, channel=chan)
        metrics |= {"ready": not not_ready, "not_ready": list(not_ready)}
        outputs.write_documents(stage, core, commitment, key, cfg, metrics, passphrase,
                                channel=drawn.channel)  # fmt: skip
        outputs.write_not_ready(stage, not_ready)
    out_path = Path(out)
    return EmbedResult(
        out=out_path,
        files={n: out_path / n for n in outputs.FILES if (out_path / n).exists()},
        fingerprint=fingerprint,
        commitment_digest=commitment.digest,
        model_sha256=subjects[0][1],
        pruned_fraction=mask.pruned_fraction,
        self_check=check,
        seconds=time.perf_counter() - t0,
        not_ready=not_ready,
        **figures,
    )


def readiness(
    cfg: EmbedConfig,
    figures: Mapping[str, Any],
    check: Mapping[str, Any],
    *,
    attempt: int,
    channel: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """Why an embedding is not ready for publication (empty tuple: it is), in words
    (``channel``: the committed channel's self-check, which must reach its share too)."""
    reasons = []
    if channel is not None and not channel["at_level"]:
        reasons.append(
            f"channel self-check p = {channel['pvalue']:.3g} above its share alpha / 2 (z = "
            f"{channel['z']:.1f}); a larger channel.eps or channel.queries may reach it"
        )
    drop = figures["clean_accuracy_before"] - figures["clean_accuracy_after"]
    # the accuracies are float32 means: 2 of 200 images is 0.0100000501, not above a 0.01 limit
    if drop > cfg.max_accuracy_drop + _FLOAT32_SLACK:
        reasons.append(
            f"clean accuracy cost {100 * drop:.2f} points > limit "
            f"{100 * cfg.max_accuracy_drop:.2f} (max_accuracy_drop)"
        )
    if not check["evidenced"]:
        stats = sorted(check["secret_statistics"])
        share = cfg.alpha if channel is None else cfg.alpha / 2  # Bonferroni with a channel
        level = f"alpha {share:g}" if channel is None else f"its share alpha/2 = {share:g}"
        reasons.append(
            f"self-check not evidenced: p = {check['pvalue']:.3g} ({level}, floor "
            f"{check['pvalue_floor']:.3g}), secret effects {stats[0]:.3f} (weakest) to "
            f"{stats[-1]:.3f} (committed floor {cfg.effect_floor:g} on the "
            f"{cfg.floor_statistic})"
        )
    if reasons:
        reasons.append(
            f"attempt {attempt} is logged and will be stated in the next commitment of this key "
            "and model; try more mask epochs (--epochs), fewer secrets, or a larger "
            "max_accuracy_drop, decided before the next attempt"
        )
    return tuple(reasons)


def _spec(
    cfg: EmbedConfig, drawn: _Drawn, num_classes: int, commitment_digest: str
) -> WatermarkSpec:
    """The watermark as a verifier will read it from ``owner.wm`` (the committed images, as
    drawn: the encoded copy in the document holds the same bytes)."""
    return WatermarkSpec(
        family=cfg.family,
        family_params=dict(drawn.params),
        secrets=tuple(drawn.secrets),
        images=drawn.vset.images,
        labels=drawn.vset.labels,
        num_classes=num_classes,
        commitment_digest=commitment_digest,
    )
