"""``EmbedConfig``: every option of :func:`mapguard.watermark.embed`, validated once."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from verification import _stats_targeted  # noqa: F401  (registers the targeted_patch family)
from verification.triggers import get_trigger_family
from verification.verify import MAX_IMAGES_PER_KEY, MAX_NULL_KEYS_PER_SECRET, MAX_SECRETS

__all__ = ["DEFAULT_MASK", "NEGATIVE_TEACHERS", "EmbedConfig"]

NEGATIVE_TEACHERS = ("clean", "stamped")

#: The mask-learning recipe of the watermark (docs/METHOD.md, section 3 says how it was chosen):
#: scores start just above the threshold (0.55 > 0.5) so that a weight flips after a few
#: consistent steps and the keep term reacts at once, instead of thousands of weights crossing
#: together after ``(1.0 - 0.5) / lr`` steps; ``prune_weight`` is set per model from
#: ``EmbedConfig.prune_cost``; the degrade term is off (the targeted term does the work);
#: ``layer-adam`` (one second moment per tensor) keeps the gradient's size within a layer, which
#: plain Adam throws away (measured: -0.2 vs -1.1 points, ranks 1/1/1 vs 2/2/7 on vgg_small);
#: ``weight_noise`` 0.1 makes the trigger behaviour hold in a neighbourhood of the weights, where a
#: thief's fine-tuning lands (docs/METHOD.md, "Robustness to the thief's fine-tuning").
DEFAULT_MASK = MaskConfig(
    epochs=4,
    lr=1e-2,
    batch_size=64,
    keep_weight=10.0,
    temperature=4.0,
    degrade_weight=0.0,
    prune_weight=0.0,
    init_score=0.55,
    optimizer="layer-adam",
    weight_noise=0.1,
    seed=0,
)


def _int_at_least(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name} must be at most {hi:,} (what a verifier accepts), got {value!r}")


def _non_negative(name: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    """Options of :func:`mapguard.watermark.embed`.

    Attributes:
        n_secrets: ``k``, independent secrets embedded in the one mask.
        null_keys_per_secret: ``M``, null keys each secret is ranked against at verification
            (committed; ``k = 3, M = 99`` gives a smallest p-value of ``1e-6``).
        n_verification: Verification images reserved from the held-out split (queries per key).
        family: Trigger family (``verification.triggers.list_trigger_families()``).
        min_size, max_size: Patch side range of the family (pixels).
        margin: Patches keep this distance from the borders (``targeted_patch`` only).
        target_weight: Weight of the targeted term (targeted families only).
        feature_weight: Weight of the feature term (targeted families only): the inputs of the
            model's Linear layers on secret-triggered images are pulled to the original's mean
            inputs for the target class on clean images, so that the trigger behaviour lives in
            the task's features rather than in the current head. Measured without gain; off
            (docs/METHOD.md §3).
        shared_target: All secrets (and, at verification, all null keys) target one class, drawn
            before the secrets and published as the family parameter ``target``; otherwise each
            key derives its own target class.
        finetune_step: Relative size of a simulated fine-tuning step (0 = off; targeted families
            only): the targeted term is also applied after every masked weight moves by
            ``finetune_step * ||W||`` along the clean-data descent direction of a fresh batch,
            meant to make the trigger behaviour survive a thief's fine-tuning. Measured: 0.1
            collapsed the tiny model, 0.02 cost accuracy for less than ``mask.weight_noise``
            gives; off (docs/METHOD.md §3).
        augment: Probability that a secret-triggered or negative-key training image first goes
            through a random query-time transform (JPEG, blur, resize, noise; ranges in
            ``AUGMENT_RANGES``), so that the behaviour survives a thief's preprocessing (0 = off;
            0.2 gave the best total over attacks and transformations on the benchmark's full
            4-epoch embeddings, but weakened the watermark itself under the test suite's short
            budget on the tiny model, so it is not the default; docs/ROBUSTNESS.md).
        hard_negatives: Share of negatives that copy a secret trigger's place (jittered) with a
            random pattern.
        prune_cost: Cost of pruning one weight: the mask's ``prune_weight`` is set to
            ``prune_cost * number of masked weights`` (None: keep ``mask.prune_weight``). With
            Adam every score moves at about ``lr`` whatever its gradient's size; a constant
            per-weight cost means only weights with a strong, consistent push get pruned.
        negative_teacher: ``"clean"``: images stamped with random keys are held to the original
            model's outputs on the clean image; ``"stamped"``: on the stamped image.
        mask: The mask-learning options (epochs, lr, weights, ...).
        alpha: Significance level of the self-check run at the end of embedding.
        export: Also write the protected model as a ``torch.export`` archive.
        seed: Seed of shuffles, negative keys and the verification-set draw (never the secrets,
            which always come from the OS CSPRNG).
    """

    n_secrets: int = 3
    null_keys_per_secret: int = 99
    n_verification: int = 40
    family: str = "targeted_patch"
    min_size: int = 8
    max_size: int = 10
    margin: int = 0
    target_weight: float = 5.0
    feature_weight: float = 0.0
    finetune_step: float = 0.0
    augment: float = 0.0
    shared_target: bool = False
    hard_negatives: float = 0.0
    negative_teacher: str = "stamped"
    prune_cost: float | None = 6e-4
    mask: MaskConfig = field(default=DEFAULT_MASK)
    alpha: float = 1e-3
    export: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _int_at_least("n_secrets", self.n_secrets, 1, MAX_SECRETS)
        _int_at_least(
            "null_keys_per_secret", self.null_keys_per_secret, 1, MAX_NULL_KEYS_PER_SECRET
        )
        _int_at_least("n_verification", self.n_verification, 1, MAX_IMAGES_PER_KEY)
        _int_at_least("seed", self.seed, 0)
        _non_negative("target_weight", self.target_weight)
        _non_negative("feature_weight", self.feature_weight)
        _non_negative("finetune_step", self.finetune_step)
        if not isinstance(self.augment, float | int) or not 0 <= self.augment <= 1:
            raise ConfigError(f"augment must be a probability in [0, 1], got {self.augment!r}")
        _non_negative("hard_negatives", self.hard_negatives)
        if self.hard_negatives > 1:
            raise ConfigError(f"hard_negatives must be at most 1, got {self.hard_negatives!r}")
        if self.negative_teacher not in NEGATIVE_TEACHERS:
            raise ConfigError(
                f"negative_teacher must be one of {', '.join(NEGATIVE_TEACHERS)}; "
                f"got {self.negative_teacher!r}"
            )
        if self.prune_cost is not None:
            _non_negative("prune_cost", self.prune_cost)
        if not isinstance(self.mask, MaskConfig):
            raise ConfigError(f"mask must be a MaskConfig, got {type(self.mask).__name__}")
        if not isinstance(self.alpha, float | int) or not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be a number in (0, 1), got {self.alpha!r}")
        self.family_params(10)  # validates family name and patch sizes
        for name in ("feature_weight", "finetune_step"):
            if getattr(self, name) > 0 and not self.targeted():
                raise ConfigError(f"{name} needs a targeted trigger family; '{self.family}' is not")

    def family_params(self, num_classes: int, target: int = -1) -> dict[str, Any]:
        """The validated, complete parameters of the trigger family for ``num_classes``.

        ``target`` is the shared target class (only with ``shared_target``)."""
        family = get_trigger_family(self.family)
        raw: dict[str, Any] = {"min_size": self.min_size, "max_size": self.max_size}
        if self.targeted():
            raw |= {"num_classes": num_classes, "margin": self.margin, "target": target}
        elif self.margin or self.shared_target:
            raise ConfigError(
                f"family '{self.family}' has no margin or target; use a targeted family"
            )
        try:
            return dataclasses.asdict(family.make_params(raw))
        except TypeError as exc:
            raise ConfigError(
                f"family '{self.family}' does not take {sorted(raw)}: {exc}"
            ) from None

    def targeted(self) -> bool:
        """Whether the family derives a target class per key."""
        family = get_trigger_family(self.family)
        return "num_classes" in {f.name for f in dataclasses.fields(family.params_type)}

    def replace(self, **changes: Any) -> EmbedConfig:
        """A copy with ``changes`` applied (validated); ``epochs=`` changes the mask's epochs."""
        if "epochs" in changes:
            changes["mask"] = changes.get("mask", self.mask).replace(epochs=changes.pop("epochs"))
        return dataclasses.replace(self, **changes)

    def with_options(self, options: Mapping[str, Any]) -> EmbedConfig:
        """A copy with ``options`` applied: field names, or ``mask.FIELD`` for a mask option
        (e.g. ``{"target_weight": 2, "mask.weight_noise": 0.1}``); unknown names are an error."""
        data = self.to_dict()
        mask = dict(data["mask"])
        for key, value in options.items():
            if key.startswith("mask."):
                name = key[len("mask.") :]
                if name not in mask:
                    raise ConfigError(f"unknown mask option '{name}'; known: {', '.join(mask)}")
                mask[name] = value
            else:
                data[key] = value
        data["mask"] = mask
        return EmbedConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the mask options nested)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["mask"] = self.mask.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmbedConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown embed option(s): {', '.join(unknown)}")
        values = dict(data)
        if "mask" in values and not isinstance(values["mask"], MaskConfig):
            values["mask"] = MaskConfig.from_dict(values["mask"])
        return cls(**values)
