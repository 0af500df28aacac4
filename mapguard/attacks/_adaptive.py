"""``unlearn-triggers``: the adaptive attacker who knows the watermarking method but not the key.

The trigger family and its public parameters are published in every commitment, so a thief can
draw as many keys of that family as they like. This recipe fine-tunes all layers on the
attacker's labelled data with half of every batch stamped with a random key of the family (a
pool of ``POOL`` keys drawn from the attack seed) and trained to its *clean* label: the model
learns to ignore every patch of the family, the secret ones included if they behave like the
rest. It is the trigger-family analogue of adversarial training, and of the "unlearning" removal
attacks of Neural Cleanse (Wang et al., S&P 2019) without the trigger reverse-engineering step:
knowing the family makes that step unnecessary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mapguard._errors import ConfigError
from mapguard.attacks._registry import AttackContext, AttackOutput, register_attack
from mapguard.attacks._train import fit

__all__ = ["POOL", "unlearn_triggers"]

#: Random keys the attacker stamps (each batch draws from them); more than any watermark embeds.
POOL = 256


def _family_pool(ctx: AttackContext, side: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Alpha maps ``[POOL, 3, S, S]`` and patterns of ``POOL`` random keys of the default
    recipe's family at the victim's class count and image side (the public parameters)."""
    from mapguard.watermark import EmbedConfig
    from verification.triggers import get_trigger_family, random_secret

    recipe = EmbedConfig()
    params = recipe.family_params(ctx.num_classes, image_size=side)
    family = get_trigger_family(recipe.family)
    rng = np.random.default_rng(ctx.seed)
    triggers = [family.derive(random_secret(rng), params=params) for _ in range(POOL)]
    alpha = torch.stack([t.alpha_map.expand(3, -1, -1) for t in triggers]).float()
    pattern = torch.stack([t.pattern for t in triggers]).float()
    return alpha, pattern, {"family": recipe.family, "params": params, "keys": POOL}


@register_attack(
    "unlearn-triggers",
    description="adaptive: fine-tune all on clean labels with random keys of the public "
    "trigger family stamped",
    defaults={"fraction": 0.1, "epochs": 10, "lr": 0.01},
)
def unlearn_triggers(ctx: AttackContext) -> AttackOutput:
    """FTAL where half of each batch carries a random family trigger and keeps its label."""
    if ctx.data is None:
        raise ConfigError("unlearn-triggers needs the attacker's labelled data (--data)")
    alpha, pattern, what = _family_pool(ctx, ctx.data.side)
    gen = torch.Generator().manual_seed(ctx.seed + 1)

    def loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        pick = torch.randint(POOL, (half,), generator=gen)
        a, p = alpha[pick].to(x), pattern[pick].to(x)
        stamped = torch.cat([torch.lerp(x[:half], p, a), x[half:]])  # as Trigger.apply
        return F.cross_entropy(model(stamped), y)

    fit(ctx, ctx.model, params=ctx.model.parameters(), loss_fn=loss, label="unlearn-triggers")
    details = {"trained": "all layers", "stamped_share": 0.5, "trigger_family": what["family"],
               "family_params": what["params"], "random_keys": what["keys"]}  # fmt: skip
    return AttackOutput(model=ctx.model, arch=ctx.arch, details=details)
