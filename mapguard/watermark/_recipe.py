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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mapguard._config import check_int
from mapguard._errors import ConfigError, DataError, ModelFileError
from mapguard.checkpoint import ModelMeta, load_checkpoint
from mapguard.masking import (
    Batch,
    BatchSource,
    EpochInfo,
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
    Images,
    NegativeKeySource,
    SecretTriggerSource,
    TargetTerm,
    WrappedSource,
)
from protocols.fileio import sha256_file
from verification.triggers import Trigger, get_trigger_family, random_secret
from verification.watermark_file import encode_verification_set

__all__ = [
    "EmbedInputs",
    "VerificationSet",
    "draw_triggers",
    "draw_verification_set",
    "images_of",
    "learn",
    "load_inputs",
    "model_side",
    "pixels",
]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EmbedInputs:
    """The model and data of one embedding.

    Attributes:
        model: The original model (eval mode; never modified).
        meta: Its checkpoint metadata.
        source_sha256: SHA-256 of the checkpoint file it came from (None for a module).
        train: Images the mask learns on: an ``ImageSet`` in memory (built-in domains), or a
            streamed ``FolderDataset`` (folders: decoded as batches need them).
        holdout: Held-out images: evaluation and the verification set (likewise).
        reference: Where the held-out images come from (``"builtin:mnist#test"``).
        workers: DataLoader processes decoding streamed images (results do not depend on it).
    """

    model: nn.Module
    meta: ModelMeta
    source_sha256: str | None
    train: Any
    holdout: Any
    reference: str
    workers: int = 0


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
    model: Any, data: Any, meta: ModelMeta | None, *, allow_code: bool = False, workers: int = 0
) -> EmbedInputs:
    """Open ``model`` (a checkpoint path, or a module with ``meta``) and ``data`` (a spec: a
    folder is streamed, a built-in domain held in memory; or ``(train, holdout)`` image sets or
    datasets), and check that their class counts and image sides agree."""
    check_int("workers", workers, low=0)
    module, meta, source = _load_model(model, meta, allow_code)
    side = model_side(meta)
    train, holdout, reference = _load_data(data, side)
    for part in (train, holdout):
        if len(part.classes) != meta.num_classes:
            raise DataError(
                f"data '{part.name}' has {len(part.classes)} classes, the model {meta.num_classes}"
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
        workers=workers,
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
    if isinstance(data, str | os.PathLike):
        from mapguard.data import load_or_stream

        train = load_or_stream(data, split="train", progress=False, size=side)
        holdout = load_or_stream(data, split="test", progress=False, size=side)
        return train, holdout, f"{os.fspath(data)}#test"
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
        images=pixels(inp.holdout, pick).numpy(),
        labels=inp.holdout.labels[pick].numpy(),
        indices=tuple(int(i) for i in idx),
        reference=inp.reference,
    )


def pixels(data: Any, pick: torch.Tensor) -> torch.Tensor:
    """uint8 images ``pick`` of an ``ImageSet``, or of a streamed dataset (decoded, and brought
    back to the bytes it decodes them from: ``x = byte / 255`` in float32 rounds back exactly)."""
    if hasattr(data, "images"):
        return data.images[pick]
    floats = torch.stack([data[int(i)][0] for i in pick])
    return torch.round(floats * 255.0).to(torch.uint8)


def images_of(data: Any, workers: int) -> Images:
    """The float images of ``data``: an ``ImageSet`` held in memory, a dataset streamed."""
    return Images(data.floats() if hasattr(data, "floats") else data, workers=workers)


def learn(
    inp: EmbedInputs,
    triggers: list[Trigger],
    params: Mapping[str, Any],
    cfg: EmbedConfig,
    device: torch.device,
    progress: bool,
    callbacks: Sequence[Callable[[EpochInfo], bool | None]] = (),
) -> MaskResult:
    """Learn the watermark mask: keep the source (clean and under random keys of the family),
    send the secret triggers to their target classes (targeted families); ``callbacks`` run
    after every epoch (the stopping rule)."""
    x, y = images_of(inp.train, inp.workers), inp.train.labels
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
    negatives = _thinned(negatives, cfg.trigger_batch)
    degrade = SecretTriggerSource(
        x, y, triggers, seed=seed + 2, placeholder=cfg.mask.degrade_weight == 0
    )
    keep = [_keep_source(x, seed), negatives]
    if cfg.channel.on and cfg.channel.keep_mix > 0:  # the taught model near the boundaries
        keep.append(_thinned(mixture_source(x, y, cfg.channel.keep_mix, seed + 9),
                             cfg.trigger_batch))  # fmt: skip
    return learn_mask(
        inp.model,
        keep=keep,
        degrade=degrade,
        config=_mask_config(cfg, inp.model),
        extra_terms=_target_terms(x, y, triggers, cfg, params),
        callbacks=callbacks,
        device=device,
        progress=progress,
    )


class _Thinned(WrappedSource):
    """``inner``'s batches at ``fraction`` of the learner's batch size, rounded to a multiple
    of the processes (at least one image each): fewer images of it per step
    (``EmbedConfig.trigger_batch``). Its own epochs then end sooner than the learner's."""

    def __init__(self, inner: BatchSource, fraction: float) -> None:
        self.inner, self.fraction, self.name = inner, fraction, inner.name

    def batches(
        self, *, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        size = max(1, round(batch_size * self.fraction / world_size)) * world_size
        return self.inner.batches(epoch=epoch, batch_size=size, rank=rank, world_size=world_size)


def _thinned(src: BatchSource, fraction: float) -> BatchSource:
    return src if fraction >= 1 else _Thinned(src, fraction)


def mixture_source(x: Images, y: torch.Tensor, n: int, seed: int) -> BatchSource:
    """``n`` unlabelled mixtures ``w a + (1 - w) b`` of training images ``a``, ``b`` (of different
    classes but for the few pairs whose one re-draw clashes again), ``w`` uniform in [0.3, 0.7]
    (seeded): a keep source that sits between classes."""
    if x.tensor is None:
        raise ConfigError("channel.keep_mix needs training images held in memory")
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(len(y), (n,), generator=gen)
    b = torch.randint(len(y), (n,), generator=gen)
    clash = y[a] == y[b]  # re-draw partners of the same class once (then keep what remains)
    b[clash] = torch.randint(len(y), (int(clash.sum()),), generator=gen)
    w = 0.3 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    mixed = w * x.tensor[a] + (1 - w) * x.tensor[b]
    return TensorSource(mixed, seed=seed, name="boundary-mix")


def _keep_source(x: Images, seed: int) -> BatchSource:
    """The clean source images, unlabelled: from memory, or streamed in the same order."""
    if x.tensor is not None:
        return TensorSource(x.tensor, seed=seed, name="source")
    from mapguard.data import DatasetSource

    return DatasetSource(x.dataset, seed=seed, name="source", workers=x.workers, labelled=False)


def _target_terms(
    x: Images, y: torch.Tensor, triggers: list[Trigger], cfg: EmbedConfig,
    params: Mapping[str, Any],
) -> list[ObjectiveTerm]:  # fmt: skip
    """The targeted term (targeted families with a positive ``target_weight``), or none."""
    if not (cfg.targeted() and cfg.target_weight > 0):
        return []
    targets = [int(t.details["target"]) for t in triggers]
    seed = cfg.mask.seed
    src = SecretTriggerSource(x, y, triggers, seed=seed + 3, targets=targets, name="targets")
    term = TargetTerm(cfg.target_weight, src)
    if cfg.augment > 0:
        term.source = AugmentedSource(src, cfg.augment, seed=seed + 6)
    term.source = _thinned(term.source, cfg.trigger_batch)
    from mapguard.watermark._bn_robust import bn_robust_terms

    family, half = get_trigger_family(cfg.family), max(2, cfg.mask.batch_size // 2)
    robust = bn_robust_terms(x.tensor, y, src, weight=cfg.bn_robust, family=family,
                             params=dict(params), batch=half, seed=seed,
                             keep=cfg.mask.keep_weight / cfg.target_weight,
                             temperature=cfg.mask.temperature)  # fmt: skip
    from mapguard.watermark._awp import awp_terms

    robust += awp_terms(src, radius=cfg.awp, weight=cfg.target_weight, batch=half)
    return [term, *_resist_terms(x, y, src, cfg, params), *robust]


def _resist_terms(
    x: Images, y: torch.Tensor, secrets: SecretTriggerSource, cfg: EmbedConfig,
    params: Mapping[str, Any],
) -> list[ObjectiveTerm]:  # fmt: skip
    """The experimental unlearning-thief term (``cfg.resist_weight`` > 0), or none."""
    if cfg.resist_weight <= 0:
        return []
    from mapguard.masking._adversary import AdversaryConfig
    from mapguard.watermark._resist import SimulatedUnlearn, random_key_pool

    if x.tensor is None:
        raise ConfigError("resist_weight needs the training images in memory (a built-in set)")
    alpha, pattern = random_key_pool(get_trigger_family(cfg.family), dict(params),
                                     seed=cfg.mask.seed)  # fmt: skip
    data = TensorSource(x.tensor, y, seed=cfg.mask.seed + 8, name="resist-thief")
    return [SimulatedUnlearn(data=data, config=AdversaryConfig(weight=cfg.resist_weight),
                             secrets=secrets, alpha=alpha, pattern=pattern,
                             seed=cfg.mask.seed + 9)]  # fmt: skip


def _mask_config(cfg: EmbedConfig, model: nn.Module) -> MaskConfig:
    """The mask options with ``prune_weight`` set from the per-weight ``prune_cost``."""
    if cfg.prune_cost is None:
        return cfg.mask
    n = sum(
        model.get_parameter(name).numel()
        for name in maskable_weights(model, exclude=cfg.mask.exclude)
    )
    return cfg.mask.replace(prune_weight=cfg.prune_cost * n)
