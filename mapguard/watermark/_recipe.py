"""Recipe assembly: the embedding's inputs, secrets, verification set, and the mask it learns.

Everything here happens before any file is written: :func:`load_inputs` opens the model and the
data, :func:`draw_triggers` draws the secrets, :func:`draw_verification_set` reserves held-out
images (before learning, so that they are independent of the mask), and :func:`learn` turns
:class:`~mapguard.watermark.EmbedConfig` into batch sources and objective terms for
:func:`mapguard.masking.learn_mask`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mapguard._errors import ConfigError, DataError, ModelFileError
from mapguard.checkpoint import ModelMeta, load_checkpoint
from mapguard.masking import (
    BatchSource,
    MaskConfig,
    MaskResult,
    ObjectiveTerm,
    TensorSource,
    broadcast_from_main,
    dist_info,
    learn_mask,
    maskable_weights,
)
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._sources import (
    AugmentedSource,
    NegativeKeySource,
    SecretTriggerSource,
    TargetTerm,
)
from protocols.fileio import sha256_file
from verification.triggers import Trigger, get_trigger_family, random_secret
from verification.watermark_file import encode_verification_set

__all__ = [
    "EmbedInputs",
    "VerificationSet",
    "draw_triggers",
    "draw_verification_set",
    "learn",
    "load_inputs",
    "model_side",
]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EmbedInputs:
    """The model and data of one embedding.

    Attributes:
        model: The original model (eval mode; never modified).
        meta: Its checkpoint metadata.
        source_sha256: SHA-256 of the checkpoint file it came from (None for a module).
        train: Images the mask learns on.
        holdout: Held-out images: evaluation and the verification set.
        reference: Where the held-out images come from (``"builtin:mnist#test"``).
    """

    model: nn.Module
    meta: ModelMeta
    source_sha256: str | None
    train: Any
    holdout: Any
    reference: str


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class VerificationSet:
    """Held-out images reserved for verification (uint8 ``[n, 3, H, W]``, int64 labels)."""

    images: np.ndarray
    labels: np.ndarray
    indices: tuple[int, ...]
    reference: str

    def encode(self) -> dict[str, Any]:
        """The ``verification_set`` object of the watermark file (images inline)."""
        return encode_verification_set(
            self.images, self.labels, reference=self.reference, indices=list(self.indices)
        )


def load_inputs(
    model: Any, data: Any, meta: ModelMeta | None, *, allow_code: bool = False
) -> EmbedInputs:
    """Open ``model`` (a checkpoint path, or a module with ``meta``) and ``data`` (a spec, or
    ``(train, holdout)`` image sets), and check that their class counts agree."""
    module, meta, source = _load_model(model, meta, allow_code)
    side = model_side(meta)
    train, holdout, reference = _load_data(data, side)
    for part in (train, holdout):
        if part.num_classes != meta.num_classes:
            raise DataError(
                f"data '{part.name}' has {part.num_classes} classes, the model {meta.num_classes}"
            )
        if part.side != side:
            raise DataError(
                f"data '{part.name}' has {part.side}-pixel images, the model takes {side} "
                f"(input_size {list(meta.input_size)})"
            )
    return EmbedInputs(
        model=module,
        meta=meta,
        source_sha256=source,
        train=train,
        holdout=holdout,
        reference=reference,
    )


def _load_model(
    model: Any, meta: ModelMeta | None, allow_code: bool
) -> tuple[nn.Module, ModelMeta, str | None]:
    if isinstance(model, str | os.PathLike):
        module, meta = load_checkpoint(model, allow_code=allow_code)
        return module, meta, sha256_file(model)
    if isinstance(model, nn.Module):
        if meta is None:
            raise ConfigError("embedding an in-memory model needs meta=ModelMeta(...)")
        return model.eval(), meta, None
    raise ModelFileError(f"model must be a checkpoint path or a torch module, got {model!r}")


def model_side(meta: ModelMeta) -> int:
    """The side of the square RGB images the model takes (its checkpoint's ``input_size``)."""
    from mapguard.training import input_side

    return input_side(meta)


def _load_data(data: Any, side: int) -> tuple[Any, Any, str]:
    if isinstance(data, str):
        from mapguard.data import load_data

        train = load_data(data, split="train", progress=False, size=side)
        holdout = load_data(data, split="test", progress=False, size=side)
        return train, holdout, f"{data}#test"
    if isinstance(data, tuple) and len(data) == 2:
        train, holdout = data
        return train, holdout, f"{holdout.name}#{holdout.split}"
    raise DataError(
        f"data must be a spec such as 'builtin:mnist' or (train, holdout), got {data!r}"
    )


def draw_triggers(
    cfg: EmbedConfig, params: Mapping[str, Any], rng: np.random.Generator | None
) -> tuple[list[bytes], list[Trigger]]:
    """Fresh iid secrets (OS CSPRNG unless a test passes ``rng``) and their triggers.

    Under ``torchrun`` rank 0 draws the secrets and every rank receives them (every rank then
    learns the same watermark); the triggers are derived from them on each rank.
    """
    family = get_trigger_family(cfg.family)
    drawn = [random_secret(rng) for _ in range(cfg.n_secrets)] if dist_info().is_main else None
    secrets: list[bytes] = broadcast_from_main(drawn)
    return secrets, [family.derive(s, params=params) for s in secrets]


def draw_verification_set(inp: EmbedInputs, cfg: EmbedConfig) -> VerificationSet:
    """``n_verification`` held-out images drawn uniformly at random (independently of the
    secrets), in index order."""
    n = cfg.n_verification
    total = len(inp.holdout)
    if n > total:
        raise ConfigError(f"n_verification={n} exceeds the {total} held-out images")
    rng = np.random.default_rng([cfg.seed, 0x5E7])
    idx = np.sort(rng.choice(total, size=n, replace=False))
    pick = torch.from_numpy(idx)
    return VerificationSet(
        images=inp.holdout.images[pick].numpy(),
        labels=inp.holdout.labels[pick].numpy(),
        indices=tuple(int(i) for i in idx),
        reference=inp.reference,
    )


def learn(
    inp: EmbedInputs,
    triggers: list[Trigger],
    params: Mapping[str, Any],
    cfg: EmbedConfig,
    device: torch.device,
    progress: bool,
) -> MaskResult:
    """Learn the watermark mask: keep the source (clean and under random keys of the family),
    send the secret triggers to their target classes (targeted families)."""
    x, y = inp.train.floats(), inp.train.labels
    seed = cfg.mask.seed
    negatives: BatchSource = NegativeKeySource(
        x,
        get_trigger_family(cfg.family),
        params,
        seed=seed + 1,
        clean_teacher=cfg.negative_teacher == "clean",
    )
    if cfg.augment > 0:
        negatives = AugmentedSource(negatives, cfg.augment, seed=seed + 5)
    degrade = SecretTriggerSource(
        x, y, triggers, seed=seed + 2, placeholder=cfg.mask.degrade_weight == 0
    )
    return learn_mask(
        inp.model,
        keep=[TensorSource(x, seed=seed, name="source"), negatives],
        degrade=degrade,
        config=_mask_config(cfg, inp.model),
        extra_terms=_target_terms(x, y, triggers, cfg),
        device=device,
        progress=progress,
    )


def _target_terms(
    x: torch.Tensor, y: torch.Tensor, triggers: list[Trigger], cfg: EmbedConfig
) -> list[ObjectiveTerm]:
    """The targeted term (targeted families with a positive ``target_weight``), or none."""
    if not (cfg.targeted() and cfg.target_weight > 0):
        return []
    targets = [int(t.details["target"]) for t in triggers]
    seed = cfg.mask.seed
    src = SecretTriggerSource(x, y, triggers, seed=seed + 3, targets=targets, name="targets")
    term = TargetTerm(cfg.target_weight, src)
    if cfg.augment > 0:
        term.source = AugmentedSource(src, cfg.augment, seed=seed + 6)
    return [term]


def _mask_config(cfg: EmbedConfig, model: nn.Module) -> MaskConfig:
    """The mask options with ``prune_weight`` set from the per-weight ``prune_cost``."""
    if cfg.prune_cost is None:
        return cfg.mask
    n = sum(
        model.get_parameter(name).numel()
        for name in maskable_weights(model, exclude=cfg.mask.exclude)
    )
    return cfg.mask.replace(prune_weight=cfg.prune_cost * n)
