"""Fine-tuning attacks: FTLL, FTAL, RTAL (Adi et al. 2018), target-domain fine-tuning, and
``regrow``, the adaptive attack that knows MAP (refill the zeroed weights, then fine-tune)."""

from __future__ import annotations

import torch

from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack
from mapguard.attacks._train import fit, last_linear, reinit, weight_tensors

__all__ = ["ftal", "ftll", "regrow", "rtal", "target_ft"]

_FT = {"fraction": 0.1, "epochs": 10, "lr": 0.01}


@register_attack("ftll", description="fine-tune the last layer only (FTLL)", defaults=_FT)
def ftll(ctx: AttackContext) -> AttackOutput:
    """Train only the last linear layer; every other weight and BatchNorm statistic is fixed."""
    model = ctx.model
    head = last_linear(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    fit(ctx, model, params=head.parameters(), train_mode=False, label="ftll")
    for p in model.parameters():
        p.requires_grad_(True)
    return AttackOutput(model=model, arch=ctx.arch, details={"trained": "last layer"})


@register_attack("ftal", description="fine-tune all layers (FTAL)", defaults=_FT)
def ftal(ctx: AttackContext) -> AttackOutput:
    """Train every parameter (BatchNorm statistics update too)."""
    fit(ctx, ctx.model, params=ctx.model.parameters(), label="ftal")
    return AttackOutput(model=ctx.model, arch=ctx.arch, details={"trained": "all layers"})


@register_attack(
    "rtal", description="re-initialise the last layer, then fine-tune all (RTAL)", defaults=_FT
)
def rtal(ctx: AttackContext) -> AttackOutput:
    """Re-draw the last linear layer from its default initialisation, then train everything."""
    reinit(last_linear(ctx.model), ctx.seed)
    fit(ctx, ctx.model, params=ctx.model.parameters(), label="rtal")
    return AttackOutput(
        model=ctx.model, arch=ctx.arch, details={"trained": "all layers, last re-initialised"}
    )


@register_attack(
    "target-ft",
    description="fine-tune all layers on a few labelled images of a target domain",
    data_role="target",
    defaults={"n_images": 100, "epochs": 20, "lr": 0.01},
)
def target_ft(ctx: AttackContext) -> AttackOutput:
    """The authorization attack: a thief with a few labelled target images fine-tunes all."""
    fit(ctx, ctx.model, params=ctx.model.parameters(), label="target-ft")
    return AttackOutput(model=ctx.model, arch=ctx.arch, details={"trained": "all layers"})


@register_attack(
    "regrow",
    description="adaptive: refill exactly-zero weights with small noise, then fine-tune all",
    defaults={**_FT, "noise_scale": 0.1},
)
def regrow(ctx: AttackContext) -> AttackOutput:
    """Knows MAP removes weights: writes ``N(0, (noise_scale * sd)^2)`` into every exact zero
    of each Conv/Linear weight (``sd`` = the layer's non-zero weights' std), then FTAL."""
    gen = torch.Generator().manual_seed(ctx.seed)
    refilled = total = 0
    with torch.no_grad():
        for w in weight_tensors(ctx.model).values():
            zero = w == 0
            total += w.numel()
            n = int(zero.sum())
            if n == 0:
                continue
            live = w[~zero]
            sd = float(live.std()) if live.numel() > 1 else float(w.abs().max()) or 1e-2
            w[zero] = torch.randn(n, generator=gen).to(w) * (ctx.config.noise_scale * sd)
            refilled += n
    fit(ctx, ctx.model, params=ctx.model.parameters(), label="regrow")
    details = {"refilled_weights": refilled, "refilled_fraction": refilled / max(total, 1)}
    return AttackOutput(model=ctx.model, arch=ctx.arch, details=details)
