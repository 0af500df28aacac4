"""What the robustness benchmark runs: the attack table, the independent models, the budgets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from verification.transforms import DEFAULT_SUITE

ALPHA = 1e-3
KEEP_POINTS = 0.05  # "keeps clean accuracy": within 5 points of the watermarked model
SOURCE, TARGET = "builtin:mnist", "builtin:mnistm"
#: A transfer set that is not the owner's data (another built-in digit domain: MNIST-M; the rendered
#: font digits of `syn` left quick students at 10-17% on MNIST).
OTHER = "builtin:mnistm"


@dataclasses.dataclass(frozen=True)
class AttackRun:
    """One row of the attack table: a kind, its options and the seeds it is repeated with."""

    label: str
    kind: str
    options: Mapping[str, Any]
    seeds: tuple[int, ...] = (0,)
    data: str = SOURCE
    #: Attack the copy this row makes (its seed 0) instead of the watermarked model.
    after: AttackRun | None = None


@dataclasses.dataclass(frozen=True)
class Independent:
    """An independently trained model (never saw the watermark)."""

    name: str
    domain: str
    arch: str
    n_train: int
    epochs: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of one run (``QUICK`` or ``FULL``): the source model, the embedding, the rows."""

    arch: str
    source_epochs: int
    source_n_train: int
    embed: Mapping[str, Any]
    embed_mask: Mapping[str, Any]
    n_embed: int | None
    attacks: tuple[AttackRun, ...]
    independent: tuple[Independent, ...]
    transforms: tuple[tuple[str, Mapping[str, Any]], ...] = DEFAULT_SUITE
    derived_nulls: tuple[AttackRun, ...] = ()


def _attack_plan(
    ft_epochs: int, ft_seeds: tuple[int, ...], big_epochs: int, distill: Mapping[str, Any],
    distill_arch: Mapping[str, Any],
) -> tuple[AttackRun, ...]:  # fmt: skip
    ft = {"epochs": ft_epochs, "lr": 0.01}
    runs = []
    for frac, epochs, seeds in ((0.1, ft_epochs, ft_seeds), (0.5, big_epochs, ft_seeds[:1])):
        for kind in ("ftll", "ftal", "rtal"):
            opts = {"fraction": frac, "epochs": epochs, "lr": 0.01}
            runs.append(AttackRun(f"{kind}-{int(frac * 100)}%", kind, opts, seeds))
    strong = {"fraction": 0.1, "epochs": ft_epochs, "lr": 0.05}
    runs.append(AttackRun("ftal-10%-lr0.05", "ftal", strong, ft_seeds))
    runs += [AttackRun(f"prune-{a}%", "prune", {"amount": a / 100}) for a in (30, 50, 70)]
    runs += [
        AttackRun("fine-prune", "fine-prune", {"amount": 0.5, "fraction": 0.1, **ft}, ft_seeds),
        AttackRun("quantize-int8", "quantize", {}),
        AttackRun("regrow", "regrow", {"fraction": 0.1, "noise_scale": 0.1, **ft}, ft_seeds),
        AttackRun("distill", "distill", distill, ft_seeds[:1]),
        AttackRun("distill-arch", "distill-arch", distill_arch, ft_seeds[:1]),
        AttackRun(
            "extract",
            "extract",
            {**{k: v for k, v in distill.items() if k != "temperature"}, "lr": 0.05},
            ft_seeds[:1],
        ),  # fmt: skip
        AttackRun(
            "target-ft-100", "target-ft", {"n_images": 100, "epochs": 20}, ft_seeds[:1], TARGET
        ),  # fmt: skip
        # AdaBN: BatchNorm statistics re-estimated on unlabelled images (no gradient): 10 of the
        # target domain (issue 18 found it removes vgg_small's verdict), 100 of the source's
        AttackRun("adabn-10-target", "adabn", {"n_images": 10}, ft_seeds, TARGET),
        AttackRun("adabn-100-source", "adabn", {"n_images": 100}, ft_seeds, SOURCE),
    ]
    # Pruning, then BatchNorm re-estimated on 100 source images: what a thief (or an owner
    # compressing) does when plain pruning costs accuracy (session 16: the hardened model kept
    # 10-70 % after 50 % pruning, 98 % after the re-estimation)
    runs += [AttackRun(f"prune-{a}%+adabn", "adabn", {"n_images": 100}, ft_seeds, SOURCE,
                       after=AttackRun(f"prune-{a}%", "prune", {"amount": a / 100}))
             for a in (50, 70)]  # fmt: skip
    runs += _thief_plan(ft, ft_seeds, distill)
    return tuple(runs)


def _thief_plan(
    ft: Mapping[str, Any], ft_seeds: tuple[int, ...], distill: Mapping[str, Any]
) -> list[AttackRun]:
    """Issue 15's stronger thieves: a transfer set that is not the owner's data, a label budget,
    the adaptive attacker who knows the trigger family but not the key, and the WRK-style removal
    attack (FTAL's budget) on the stolen model and on an extracted copy."""
    hard = {**{k: v for k, v in distill.items() if k != "temperature"}, "lr": 0.05}
    extract = AttackRun("extract", "extract", hard, ft_seeds[:1])  # the row of _attack_plan
    wrk = {"fraction": 0.1, **ft}
    return [
        AttackRun("distill-on-mnistm", "distill", distill, ft_seeds[:1], OTHER),
        AttackRun("extract-on-mnistm", "extract", hard, ft_seeds[:1], OTHER),
        AttackRun("extract-1k-labels", "extract", {**hard, "n_images": 1000}, ft_seeds[:1]),
        AttackRun("unlearn-triggers", "unlearn-triggers", {"fraction": 0.1, **ft}, ft_seeds),
        AttackRun("wrk", "wrk", wrk, ft_seeds),
        AttackRun("extract+wrk", "wrk", wrk, ft_seeds, after=extract),
    ]


def _independent(quick: bool) -> tuple[Independent, ...]:
    n, e = (1000, 2) if quick else (4000, 4)
    models = [Independent(f"mnist-s{s}", SOURCE, "vgg_tiny", n, e, s) for s in range(8)]
    models += [Independent(f"mnist-small-s{s}", SOURCE, "vgg_tiny", n // 2, e + 1, 100 + s)
               for s in range(4)]  # fmt: skip
    for dom in ("mnistm", "syn", "svhnlike", "optdigits"):
        models += [Independent(f"{dom}-s{s}", f"builtin:{dom}", "vgg_tiny", n, e, s)
                   for s in range(2)]  # fmt: skip
    if not quick:
        models += [Independent(f"mnist-vgg_small-s{s}", SOURCE, "vgg_small", 4000, 4, s)
                   for s in range(3)]  # fmt: skip
        # MobileNetV3-small from scratch stays at chance after 4 epochs (10.0%), 10 give 96.8%
        models += [Independent("mnist-mobilenet-e10-s0", SOURCE, "mobilenet_v3_small", 4000, 10, 0)]
    return tuple(models)


def _derived_nulls(
    ft_epochs: int, distill: Mapping[str, Any], distill_arch: Mapping[str, Any]
) -> tuple[AttackRun, ...]:
    """How the derived null models are made from a model that never saw the secrets (each from
    the independent teacher and from the original, see ``run.derived_null_rows``): the thieves'
    copies of the attack table (students distilled into the same and another architecture,
    extracted by labels, distilled on other data), fine-tuning from the same initialisation on
    the owner's task data and on another party's (MNIST-M), and the AdaBN row's re-estimation."""
    hard = {**{k: v for k, v in distill.items() if k != "temperature"}, "lr": 0.05}
    ft = {"fraction": 0.1, "epochs": ft_epochs, "lr": 0.01}
    return (
        AttackRun("ftal-10%", "ftal", ft),
        AttackRun("distill", "distill", distill),
        AttackRun("extract", "extract", hard),
        AttackRun("distill-on-mnistm", "distill", distill, data=OTHER),
        AttackRun("distill-arch", "distill-arch", distill_arch),
        AttackRun("ftal-10%-on-mnistm", "ftal", ft, data=OTHER),
        AttackRun("adabn-10-target", "adabn", {"n_images": 10}, data=TARGET),
    )


_QUICK_DISTILL = {"fraction": 0.5, "epochs": 4, "lr": 0.01, "temperature": 4.0}
_QUICK_DISTILL_ARCH = {"fraction": 0.25, "epochs": 3, "lr": 0.01, "temperature": 4.0}
_FULL_DISTILL = {"fraction": 1.0, "epochs": 10, "lr": 0.01, "temperature": 4.0}

QUICK = Budget(
    arch="vgg_tiny",
    # the test suite's tiny model: vgg_tiny, 3 epochs on 1,200 MNIST digits (tests/conftest.py)
    source_epochs=3,
    source_n_train=1200,
    embed={"null_keys_per_secret": 19, "n_verification": 40, "export": False},
    embed_mask={},  # the default recipe (the tests' shorter one collapsed this model to 10-51%)
    n_embed=1200,
    attacks=_attack_plan(
        ft_epochs=5,
        ft_seeds=(0, 1),
        big_epochs=2,
        distill=_QUICK_DISTILL,
        distill_arch=_QUICK_DISTILL_ARCH,
    ),  # fmt: skip
    independent=_independent(True),
    derived_nulls=_derived_nulls(5, _QUICK_DISTILL, _QUICK_DISTILL_ARCH),
)
FULL = Budget(
    arch="vgg_small",  # the default model, which the watermark recipe was tuned on,
    source_epochs=8,
    source_n_train=10**9,
    embed={"export": False},
    embed_mask={},
    n_embed=None,
    attacks=_attack_plan(
        ft_epochs=10,
        ft_seeds=(0, 1, 2),
        big_epochs=5,
        distill=_FULL_DISTILL,
        distill_arch=_FULL_DISTILL,
    ),  # fmt: skip
    independent=_independent(False),
    derived_nulls=_derived_nulls(10, _FULL_DISTILL, _FULL_DISTILL),
)


def null_labels(budget: Budget) -> list[str]:
    """The labels of every null model the benchmark verifies, in its order: the original before
    embedding, the independent models, then each derived null made from the independent teacher
    (``budget.independent[0]``) and from the original."""
    victims = (budget.independent[0].name, "original")
    return ["original (before embedding)", *(i.name for i in budget.independent),
            *(f"{ar.label} of {v}" for v in victims for ar in budget.derived_nulls)]  # fmt: skip
