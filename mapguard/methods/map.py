"""MAP: learn a binary mask over the frozen weights that keeps the source and degrades targets.

Registered as protection method ``"map"``; the mask learner itself is :mod:`mapguard.masking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mapguard.masking import BatchSource, MaskConfig, TensorSource, learn_mask
from mapguard.methods._registry import MethodInputs, MethodOutput, register_method

if TYPE_CHECKING:
    from mapguard.data import FolderDataset, ImageSet

__all__ = ["batch_source", "map_config", "protect_map"]


def batch_source(data: ImageSet | FolderDataset, *, seed: int, workers: int = 0) -> BatchSource:
    """The mask learner's source for ``data``: an ImageSet's tensors, or a Dataset streamed by
    ``workers`` processes (:class:`~mapguard.data.DatasetSource`: the same order and steps)."""
    if hasattr(data, "floats"):
        return TensorSource(data.floats(), data.labels, seed=seed, name=data.name)
    from mapguard.data import DatasetSource

    return DatasetSource(data, seed=seed, name=data.name, workers=workers)


def map_config(options: Mapping[str, Any], seed: int) -> MaskConfig:
    """The :class:`MaskConfig` for ``options`` (unknown keys are an error)."""
    return MaskConfig.from_dict({"seed": seed, **options})


@register_method(
    "map",
    description="MAP: learn a binary mask over the frozen weights (source-available)",
    validate=map_config,
    streams=True,
)
def protect_map(inputs: MethodInputs) -> MethodOutput:
    """Learn a mask keeping ``source`` (+ ``keep``) and degrading every target; bake it in."""
    cfg = map_config(inputs.options, inputs.seed)
    keep = [
        batch_source(d, seed=cfg.seed + i, workers=inputs.workers)
        for i, d in enumerate((inputs.source, *inputs.keep))
    ]
    degrade = [
        batch_source(d, seed=cfg.seed + 100 + i, workers=inputs.workers)
        for i, d in enumerate(inputs.targets)
    ]
    result = learn_mask(
        inputs.model,
        keep=keep,
        degrade=degrade,
        config=cfg,
        device=inputs.device,
        progress=inputs.progress,
    )
    return MethodOutput(
        model=result.apply(inputs.model),
        config=cfg.to_dict(),
        seconds=result.seconds,
        images_per_second=result.images_per_second,
        mask=result.mask,
        info={"history": list(result.history), "world_size": result.world_size},
    )
