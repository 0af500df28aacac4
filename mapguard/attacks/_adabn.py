"""``adabn``: re-estimate every BatchNorm layer's running statistics on a few unlabelled images.

AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR-W 2017,
arXiv 1603.04779) adapts a model to a new domain by replacing each BatchNorm layer's running
mean and variance with those of the new domain's images; no label, no gradient, no weight
changes. As an attack it is the cheapest thief there is: ``n_images`` unlabelled images of the
attacker's own data (default 10) and one forward pass. Sessions 9 and 10 of issue 18 found that
AdaBN on 10 MNIST-M images removes the trigger verdict of ``vgg_small`` (docs/ROBUSTNESS.md).

The statistics are re-estimated as ``mapguard.methods.nft_weights.recalibrate_batch_norm`` does
it (reused, not copied): running statistics reset, momentum ``None`` (a cumulative average over
the batches of one pass), the model in train mode for that pass. With ``n_images <=
batch_size`` (the default batch is 512 images) all images are one batch and the result is
exactly each layer's batch mean and unbiased variance over them; with more, the average of the
per-batch ones over the full batches of a seeded shuffle (the images of a last, partial batch are
left out: ``details["images_used"]``).
"""

from __future__ import annotations

import torch
from torch import nn

from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack

__all__ = ["adabn", "batch_norm_layers", "reestimate_batch_norm"]


def batch_norm_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s BatchNorm layers that keep running statistics."""
    bn = nn.modules.batchnorm._BatchNorm
    return [n for n, m in model.named_modules() if isinstance(m, bn) and m.track_running_stats]


@torch.no_grad()
def reestimate_batch_norm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int | None = None, seed: int = 0
) -> int:
    """AdaBN in place: every BatchNorm layer of ``model`` takes the running statistics of one pass
    over ``images`` (unlabelled, ``[N, C, H, W]`` in ``[0, 1]``) in batches of ``batch_size``
    (default: all of them in one), shuffled with ``seed``; ``model`` is left in eval mode.

    Returns:
        The number of images used (the full batches; all of them when ``N <= batch_size``).
    """
    from mapguard.masking import TensorSource
    from mapguard.methods.nft_weights import recalibrate_batch_norm

    n = int(images.shape[0])
    batch = n if batch_size is None else min(n, batch_size)  # a smaller set would repeat images
    recalibrate_batch_norm(model, TensorSource(images, seed=seed), batch_size=batch)
    model.eval()
    return n // batch * batch


@register_attack(
    "adabn",
    description="re-estimate BatchNorm statistics on a few unlabelled images (AdaBN, no labels)",
    data_role="target",
    defaults={"n_images": 10, "batch_size": 512},
)
def adabn(ctx: AttackContext) -> AttackOutput:
    """One pass over the attacker's images in train mode, statistics reset, cumulative average;
    labels unused, every parameter unchanged."""
    assert ctx.data is not None  # needs_data: the runner refuses to call without data
    layers = batch_norm_layers(ctx.model)
    batch = min(len(ctx.data), ctx.config.batch_size)
    used = reestimate_batch_norm(ctx.model, ctx.data.floats(), batch_size=batch, seed=ctx.seed)
    notes = () if layers else ("the model has no BatchNorm layer: adabn changed nothing",)
    details = {"bn_layers": len(layers), "batches": used // batch, "images_used": used}
    return AttackOutput(model=ctx.model, arch=ctx.arch, details=details, notes=notes)
