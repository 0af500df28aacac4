"""Fine-tuning-resistant MAP (``map-nft``): a MAP mask learned against a simulated thief.

Plain MAP's objective (:mod:`mapguard.masking`) plus :class:`~mapguard.masking._adversary.
SimulatedFineTune` on the labelled target images: every step a copy of the masked weights is
fine-tuned for a few SGD steps on half a target batch and the adapted model is rewarded for still
failing on the other half (first-order, SOPHON-style). The product is the same as MAP's: frozen
original weights and one binary mask. Registered as protection method ``"map-nft"``; its options
are MAP's (``keep_weight`` defaults to 20, :data:`MASK_DEFAULTS`) plus ``adversary_*``
(:class:`AdversaryConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig, TensorSource, dist_info, learn_mask
from mapguard.masking._adversary import (
    AdversaryConfig,
    SimulatedFineTune,
    SimulatedSourceFineTune,
)
from mapguard.methods._registry import MethodInputs, MethodOutput, register_method
from mapguard.methods.map import batch_source

__all__ = [
    "ADVERSARY_PREFIX",
    "MASK_DEFAULTS",
    "AdversaryConfig",
    "map_nft_config",
    "protect_map_nft",
]

#: Options of the simulated thief are given as ``adversary_<field>`` (e.g. ``adversary_steps``).
ADVERSARY_PREFIX = "adversary_"

#: MAP options whose ``map-nft`` default differs from MAP's: the adversary term pulls harder
#: against the source than MAP's degrade term, so the keep term weighs twice as much.
MASK_DEFAULTS: dict[str, Any] = {"keep_weight": 20.0}


def map_nft_config(options: Mapping[str, Any], seed: int) -> tuple[MaskConfig, AdversaryConfig]:
    """MAP's :class:`MaskConfig` and the :class:`AdversaryConfig` of ``options`` (unknown keys
    are an error naming them)."""
    adversary = {k[len(ADVERSARY_PREFIX) :]: v for k, v in options.items()
                 if k.startswith(ADVERSARY_PREFIX)}  # fmt: skip
    unknown = sorted(set(adversary) - set(AdversaryConfig.__dataclass_fields__))
    if unknown:
        names = ", ".join(ADVERSARY_PREFIX + k for k in unknown)
        raise ConfigError(f"unknown map-nft option(s): {names}")
    mask = {k: v for k, v in options.items() if not k.startswith(ADVERSARY_PREFIX)}
    mask_cfg = MaskConfig.from_dict({"seed": seed, **MASK_DEFAULTS, **mask})
    return mask_cfg, AdversaryConfig.from_dict(adversary)


@register_method(
    "map-nft",
    description="fine-tuning-resistant MAP: mask learned against simulated target fine-tuning",
    validate=map_nft_config,
)
def protect_map_nft(inputs: MethodInputs) -> MethodOutput:
    """Learn a MAP mask whose restriction survives a few simulated target fine-tuning steps."""
    cfg, adv = map_nft_config(inputs.options, inputs.seed)
    if dist_info().active:  # the simulated thief's gradient bypasses DistributedDataParallel
        raise ConfigError("map-nft runs in a single process (not under torchrun)")
    keep = [batch_source(d, seed=cfg.seed + i) for i, d in enumerate((inputs.source, *inputs.keep))]
    degrade = [batch_source(d, seed=cfg.seed + 100 + i) for i, d in enumerate(inputs.targets)]
    targets = _labelled_targets(degrade, seed=cfg.seed + 200)
    extra: list[SimulatedFineTune] = []
    if adv.weight > 0:
        extra.append(SimulatedFineTune(data=targets, config=adv))
    if adv.source_weight > 0:
        extra.append(
            SimulatedSourceFineTune(
                data=targets, config=adv, inner=_labelled_source(keep[0], seed=cfg.seed + 300)
            )
        )
    result = learn_mask(inputs.model, keep=keep, degrade=degrade, config=cfg, extra_terms=extra,
                        device=inputs.device, progress=inputs.progress)  # fmt: skip
    return MethodOutput(
        model=result.apply(inputs.model),
        config={**cfg.to_dict(), **{ADVERSARY_PREFIX + k: v for k, v in adv.to_dict().items()}},
        seconds=result.seconds,
        images_per_second=result.images_per_second,
        mask=result.mask,
        info={"history": list(result.history), "world_size": result.world_size},
    )


def _labelled_targets(sources: list, *, seed: int) -> TensorSource:  # noqa: ANN001
    """The simulated thief's data: every target's images and labels, augmented as a thief's."""
    import torch

    if any(getattr(s, "y", None) is None for s in sources):
        raise ConfigError("map-nft needs labelled target data (the simulated thief trains on it)")
    x = sources[0].x if len(sources) == 1 else torch.cat([s.x for s in sources])
    y = sources[0].y if len(sources) == 1 else torch.cat([s.y for s in sources])
    return TensorSource(x, y, seed=seed, name="adversary", augment=True)


def _labelled_source(source, *, seed: int) -> TensorSource:  # noqa: ANN001
    """The clean-source thief's data: the source images and labels, augmented."""
    if getattr(source, "y", None) is None:
        raise ConfigError("adversary_source_weight needs labelled source data")
    return TensorSource(source.x, source.y, seed=seed, name="adversary-source", augment=True)
