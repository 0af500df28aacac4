"""MAP mask learning: restrict a trained classifier to its authorized domains.

A binary mask over the frozen weights of every Conv/Linear layer and attention projection
(:func:`maskable_weights`; biases and normalisation layers stay unmasked) is learned so that the
masked model keeps the original's behaviour on *keep* data and fails on *degrade* data. The original
weights are never modified; :func:`apply_mask` bakes the mask into a plain copy of the model, and
the mask itself is stored bit-packed (:func:`save_mask`, about one bit per weight).

Example:
    >>> import torch
    >>> from mapguard.models import create_model
    >>> model = create_model("vgg_tiny").eval()
    >>> keep = TensorSource(torch.rand(32, 3, 32, 32), seed=0, name="keep")
    >>> degrade = TensorSource(torch.rand(32, 3, 32, 32), torch.zeros(32, dtype=torch.long), seed=1)
    >>> result = learn_mask(model, keep=keep, degrade=degrade,
    ...                     config=MaskConfig(epochs=1, batch_size=16), progress=False)
    >>> protected = apply_mask(model, result.mask)
    >>> 0.0 <= result.pruned_fraction <= 1.0
    True
"""

from mapguard.masking._config import GRANULARITIES, MaskConfig
from mapguard.masking._distributed import (
    DistInfo,
    broadcast_from_main,
    device_for,
    dist_info,
    finish_distributed,
    init_distributed,
    launched_rank,
)
from mapguard.masking._learner import EpochInfo, MaskResult, learn_mask
from mapguard.masking._mask import Mask, MaskLayer, apply_mask, load_mask, save_mask
from mapguard.masking._objectives import (
    BNStatistics,
    BoundedDegrade,
    KeepAgreement,
    KeepKL,
    ObjectiveTerm,
    PrunedFraction,
    StepView,
    bn_distance,
    bounded_cross_entropy,
    default_terms,
    keep_kl,
)
from mapguard.masking._parametrize import MaskedModel, MaskScores, maskable_weights
from mapguard.masking._sources import Batch, BatchSource, TensorSource
from mapguard.masking._summary import LayerSummary, mask_summary

__all__ = [
    "GRANULARITIES",
    "BNStatistics",
    "Batch",
    "BatchSource",
    "BoundedDegrade",
    "DistInfo",
    "EpochInfo",
    "KeepAgreement",
    "KeepKL",
    "LayerSummary",
    "Mask",
    "MaskConfig",
    "MaskLayer",
    "MaskResult",
    "MaskScores",
    "MaskedModel",
    "ObjectiveTerm",
    "PrunedFraction",
    "StepView",
    "TensorSource",
    "apply_mask",
    "bn_distance",
    "bounded_cross_entropy",
    "broadcast_from_main",
    "default_terms",
    "device_for",
    "dist_info",
    "finish_distributed",
    "init_distributed",
    "keep_kl",
    "launched_rank",
    "learn_mask",
    "load_mask",
    "mask_summary",
    "maskable_weights",
    "save_mask",
]
