"""Pruning attacks: layer-wise magnitude pruning and fine-pruning (Liu et al., RAID 2018)."""

from __future__ import annotations

import torch
from torch import nn

from mapguard._errors import ConfigError
from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack
from mapguard.attacks._train import fit, weight_tensors

__all__ = ["fine_prune", "magnitude_prune", "prune"]


@torch.no_grad()
def magnitude_prune(model: nn.Module, amount: float) -> float:
    """Zero the ``round(amount * n)`` smallest-magnitude weights of every Conv/Linear layer.

    Returns:
        The fraction of all Conv/Linear weights that are zero afterwards.
    """
    zeros = total = 0
    for w in weight_tensors(model).values():
        flat = w.view(-1)
        k = round(amount * flat.numel())
        if k:
            order = torch.argsort(flat.abs(), stable=True)
            flat[order[:k]] = 0
        zeros += int((flat == 0).sum())
        total += flat.numel()
    return zeros / max(total, 1)


@register_attack(
    "prune",
    description="magnitude pruning: zero the smallest |w| of every Conv/Linear layer (--amount)",
    needs_data=False,
    defaults={"amount": 0.5},
)
def prune(ctx: AttackContext) -> AttackOutput:
    """Layer-wise unstructured magnitude pruning, no retraining."""
    frac = magnitude_prune(ctx.model, ctx.config.amount)
    return AttackOutput(
        model=ctx.model.eval().cpu(), arch=ctx.arch, details={"zero_fraction": frac}
    )


def _last_conv_block(model: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
    """The last Conv2d and the BatchNorm2d that normalises its output (if one follows it)."""
    modules = list(model.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError("fine-prune needs a model with a Conv2d layer")
    conv = modules[convs[-1]]
    for m in modules[convs[-1] + 1 :]:
        if isinstance(m, nn.BatchNorm2d) and m.num_features == conv.out_channels:
            return conv, m
    return conv, None


@torch.no_grad()
def _mean_activation(ctx: AttackContext, model: nn.Module, layer: nn.Module) -> torch.Tensor:
    """Mean ReLU activation of each output channel of ``layer`` over the attacker's data."""
    sums: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: sums.append(out.relu().sum((0, 2, 3))))
    try:
        model.to(ctx.device).eval()
        x = ctx.data.floats()  # type: ignore[union-attr]
        for i in range(0, len(x), 256):
            model(x[i : i + 256].to(ctx.device))
    finally:
        hook.remove()
    return torch.stack(sums).sum(0).cpu() / len(x)


@register_attack(
    "fine-prune",
    description="prune the least active channels of the last conv (--amount), then fine-tune all",
    defaults={"amount": 0.5, "fraction": 0.1, "epochs": 10, "lr": 0.01},
)
def fine_prune(ctx: AttackContext) -> AttackOutput:
    """Fine-pruning: remove the ``amount`` least active (on clean data) channels of the last
    convolution (its filters and, if present, its BatchNorm affine terms), then fine-tune all
    layers while keeping those channels removed."""
    model = ctx.model
    conv, bn = _last_conv_block(model)
    activity = _mean_activation(ctx, model, bn if bn is not None else conv)
    k = round(ctx.config.amount * conv.out_channels)
    dead = torch.argsort(activity, stable=True)[:k].to(conv.weight.device)

    def remove() -> None:
        with torch.no_grad():
            for t in (conv.weight, conv.bias, *((bn.weight, bn.bias) if bn is not None else ())):
                if t is not None:
                    t[dead.to(t.device)] = 0

    remove()
    fit(ctx, model, params=model.parameters(), after_step=remove, label="fine-prune")
    details = {"pruned_channels": k, "channels": conv.out_channels, "batchnorm": bn is not None}
    return AttackOutput(model=model, arch=ctx.arch, details=details)
