"""Removal and adaptation attacks on a stolen model, for robustness evaluation.

Each *kind* is a registered recipe (``list_attacks()``): fine-tuning (``ftll``, ``ftal``,
``rtal``), pruning (``prune``, ``fine-prune``), int8 ``quantize``, distillation (``distill``,
``distill-arch``) and label-only ``extract``ion, the MAP-aware ``regrow``, the watermark-aware
``unlearn-triggers`` (knows the trigger family, not the key), the WRK-style ``wrk`` (boundary
samples relabelled at random, no key), ``adabn`` (BatchNorm statistics re-estimated on a few
unlabelled images, no gradient) and ``target-ft`` (a few labelled target images, against the
authorization property). Adding one is a registration::

    @register_attack("my-attack", description="...", defaults={"epochs": 5})
    def my_attack(ctx: AttackContext) -> AttackOutput: ...

Example:
    >>> import torch
    >>> from mapguard.models import create_model
    >>> model = create_model("vgg_tiny")
    >>> pruned, info = attack(model, "prune", config=AttackConfig(amount=0.3))
    >>> info.kind, round(info.details["zero_fraction"], 2)
    ('prune', 0.3)
    >>> "ftal" in list_attacks()
    True
"""

from mapguard.attacks import _adabn, _adaptive, _distill, _finetune, _prune, _quantize, _wrk
from mapguard.attacks._config import AttackConfig
from mapguard.attacks._registry import (
    AttackContext,
    AttackKind,
    AttackOutput,
    get_attack,
    list_attacks,
    register_attack,
)
from mapguard.attacks._run import AttackInfo, attack, attack_file

#: The modules of the built-in recipes (each registers its kinds where they are defined).
BUILTIN_MODULES = (_finetune, _prune, _quantize, _distill, _adaptive, _wrk, _adabn)

__all__ = [
    "BUILTIN_MODULES",
    "AttackConfig",
    "AttackContext",
    "AttackInfo",
    "AttackKind",
    "AttackOutput",
    "attack",
    "attack_file",
    "get_attack",
    "list_attacks",
    "register_attack",
]
