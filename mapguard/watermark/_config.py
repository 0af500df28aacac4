"""``EmbedConfig``: every option of :func:`mapguard.watermark.embed`, validated once."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mapguard._config import ConfigMixin, check_int, check_number, check_range
from mapguard._errors import ConfigError
from mapguard.masking import MaskConfig
from mapguard.watermark._channel import ChannelConfig
from mapguard.watermark._harden import HardenConfig
from protocols.analysis import Analysis
from verification.triggers import get_trigger_family, public_params
from verification.verify import MAX_IMAGES_PER_KEY, MAX_NULL_KEYS_PER_SECRET, MAX_SECRETS

__all__ = ["ADAPT_MODES", "DEFAULT_MASK", "NEGATIVE_TEACHERS", "STOP_RULES", "EmbedConfig"]

NEGATIVE_TEACHERS = ("clean", "stamped")
#: ``auto``: the recipe adapts to the model (``watermark._adapt.adapt_recipe``); ``off``: as set.
ADAPT_MODES = ("auto", "off")
#: ``level``: stop at the first rehearsal that meets the level; ``record``: rehearse, never stop.
STOP_RULES = ("level", "record")
#: The recipe's trigger lattice: patch sizes are in cells of a GRID x GRID lattice over the image.
GRID = 32
_VERIFIER_LIMIT = "what a verifier accepts"

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
    epochs=16,
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


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(ConfigMixin, what="embed"):
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
        augment: Probability that a secret-triggered or negative-key training image first goes
            through a random query-time transform (JPEG, blur, resize, noise; ranges in
            ``AUGMENT_RANGES``), so that the behaviour survives a thief's preprocessing (0 = off;
            0.2 gave the best total over attacks and transformations on the benchmark's full
            4-epoch embeddings, but weakened the watermark itself under the test suite's short
            budget on the tiny model, so it is not the default; docs/ROBUSTNESS.md).
        prune_cost: Cost of pruning one weight: the mask's ``prune_weight`` is set to
            ``prune_cost * number of masked weights`` (None: keep ``mask.prune_weight``). With
            Adam every score moves at about ``lr`` whatever its gradient's size; a constant
            per-weight cost means only weights with a strong, consistent push get pruned.
        negative_teacher: ``"clean"``: images stamped with random keys are held to the original
            model's outputs on the clean image; ``"stamped"``: on the stamped image.
        mask: The mask-learning options (epochs, lr, weights, ...).
        trigger_batch: Negative-key and secret-trigger images per mask step, as a fraction of
            ``mask.batch_size`` (rounded; at least one per process); the clean source keeps the
            whole batch. 1: as many as the clean source (the zoo's recipe); less makes each step
            cheaper (docs/BENCHMARKS.md, "Embedding into a model from outside the zoo").
        mask_images: The mask-learning budget in training images seen: the mask learns for
            ``max(1, ceil(mask_images / len(train)))`` epochs, so a small data set gets more
            passes and a large one fewer (64,000 = the 16 epochs measured on the 4,000 MNIST
            training digits). ``None``: ``mask.epochs`` as given. Setting the epochs explicitly
            (``replace(epochs=)``, ``--epochs``, ``-o mask.epochs=``) turns the budget off.
        alpha: Significance level of the committed analysis (and of the self-check).
        test: The committed test (``protocols.analysis.TESTS``; ``pooled-rank-sum``, the default
            since session 16, ranks all ``k (M + 1)`` keys together and the secrets' rank sum
            decides, so one erased secret costs its rank, not the verdict; ``pooled-min`` ranks
            them together and the weakest secret decides (the default before): floor
            ``1 / C(N, k)`` for both; docs/ROBUSTNESS.md, "Issue 15 (session 16)").
        mode_rule: Which answers of a suspect the committed analysis uses
            (``protocols.analysis.MODE_RULES``).
        effect_floor: Committed minimum of the secrets' ``floor_statistic`` for a verdict of
            "evidenced", above what keys chosen after seeing an innocent model reach (the
            forgery margin by the same statistic, docs/METHOD.md section 4).
        floor_statistic: ``"median"`` (the median of the k secrets' statistics: a theft that
            weakens a few secrets keeps the verdict) or ``"min"`` (the weakest secret, the
            rule of analysis version 2); ``protocols.analysis.FLOOR_STATISTICS``.
        resist_weight: Weight of the experimental term that simulates the thief who knows the
            trigger family (``unlearn-triggers``) while the mask is learned
            (``mapguard.watermark._resist``); 0 (default) leaves it out.
        bn_robust: Weight of the term that asks the secret triggers to keep their targets (and
            source images the original's answers) under BatchNorm statistics re-estimated on
            shifted unlabelled batches, as an AdaBN thief re-estimates them
            (``mapguard.watermark._bn_robust``); 0 (default) leaves it out, and out of
            ``to_dict`` (an embedding without it records exactly what it did before the option
            existed). Needs the training images in memory.
        awp: Radius of the experimental adversarial weight perturbation term
            (``mapguard.watermark._awp``): the secret triggers must still reach their targets
            after a worst-case step of this size (a fraction of each layer's weight norm); 0
            (default) leaves it out, and out of ``to_dict``.
        max_accuracy_drop: The embedding is *ready for publication* only if its clean-accuracy
            cost is at most this (fraction; 0.01 = one point) and its self-check is evidenced
            under the committed analysis; otherwise the outputs are kept but marked not ready
            (``NOT_READY.txt``, ``metrics.json`` ``"ready": false``, CLI exit code 3). Fixed with
            the recipe before the secrets are drawn, so it is no way to pick among attempts.
        adapt: ``"auto"``: ``adapt_recipe`` (:mod:`mapguard.watermark._adapt`) adapts the
            recipe to the model and data before the secrets are drawn (large models: the
            stopping rule); ``"off"``: the recipe as given.
        adapted: What ``adapt_recipe`` decided, in words (set by it; ``""``: not adapted).
        stop_every: The stopping rule: every this many training images seen (checked at epoch
            ends) the mask is rehearsed against the committed analysis on held-out tuning
            images outside the verification set, and learning stops at the first rehearsal
            that is evidenced (effect floor raised by ``stop_margin``) at a cost of at most
            ``max_accuracy_drop`` (:mod:`mapguard.watermark._stopping`); ``None``: no rule, the
            whole budget is learned.
        stop_images: Tuning images of a rehearsal (at most; the first ``n_verification`` of them
            answer the analysis, all of them measure the cost).
        stop_margin: Added to ``effect_floor`` for a rehearsal to count as met (the rehearsal's
            images and null keys are not the self-check's).
        stop_rule: ``"level"``: stop when a rehearsal is met; ``"record"``: rehearse and record
            only (``metrics.json`` ``learning``), never stop (benchmarks).
        channel: The committed second channel (``watermark._channel``; off by default): keyed
            pair preferences taught into the weights before the mask, which a clean-data
            student inherits (analysis version 4).
        harden: The experimental hardening after the mask (``watermark._harden``; off:
            ``harden.epochs`` 0): every weight fine-tuned so that the secret triggers keep their
            targets after simulated FTAL / RTAL / unlearning thieves (the weights change).
        export: Also write the protected model as a ``torch.export`` archive.
        seed: Seed of shuffles, negative keys and the verification-set draw (never the secrets,
            which always come from the OS CSPRNG).
    """

    n_secrets: int = 8
    null_keys_per_secret: int = 7
    n_verification: int = 64
    family: str = "targeted_patch"
    min_size: int = 5
    max_size: int = 6
    margin: int = 0
    target_weight: float = 10.0
    augment: float = 0.0
    negative_teacher: str = "stamped"
    prune_cost: float | None = 6e-4
    mask: MaskConfig = field(default=DEFAULT_MASK)
    trigger_batch: float = 1.0
    mask_images: int | None = 64_000
    alpha: float = 1e-3
    test: str = "pooled-rank-sum"
    mode_rule: str = "labels"
    effect_floor: float = 0.3
    floor_statistic: str = "median"
    resist_weight: float = 0.0
    bn_robust: float = 0.0
    awp: float = 0.0
    max_accuracy_drop: float = 0.01
    adapt: str = "auto"
    adapted: str = ""
    stop_every: int | None = None
    stop_images: int = 256
    stop_margin: float = 0.1
    stop_rule: str = "level"
    channel: ChannelConfig = field(default=ChannelConfig())
    harden: HardenConfig = field(default=HardenConfig())
    export: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Every option; the channel, hardening, ``bn_robust`` and ``awp`` only when on (so an
        embedding without them records, and hashes, exactly what it did before they existed)."""
        out = super().to_dict()
        if not self.channel.on:
            del out["channel"]
        if not self.harden.on:
            del out["harden"]
        for name in ("bn_robust", "awp"):
            if not getattr(self, name):
                del out[name]
        return out

    def __post_init__(self) -> None:
        check_int("n_secrets", self.n_secrets, low=1, high=MAX_SECRETS, why=_VERIFIER_LIMIT)
        check_int("null_keys_per_secret", self.null_keys_per_secret, low=1,
                  high=MAX_NULL_KEYS_PER_SECRET, why=_VERIFIER_LIMIT)  # fmt: skip
        check_int("n_verification", self.n_verification, low=1, high=MAX_IMAGES_PER_KEY,
                  why=_VERIFIER_LIMIT)  # fmt: skip
        check_int("seed", self.seed, low=0)
        if self.mask_images is not None:
            check_int("mask_images", self.mask_images, low=1)
        check_number("target_weight", self.target_weight, positive=False)
        check_range("augment", self.augment, lo=0, hi=1)
        check_range("trigger_batch", self.trigger_batch, lo=0, hi=1, lo_open=True)
        if self.negative_teacher not in NEGATIVE_TEACHERS:
            raise ConfigError(
                f"negative_teacher must be one of {', '.join(NEGATIVE_TEACHERS)}; "
                f"got {self.negative_teacher!r}"
            )
        if self.prune_cost is not None:
            check_number("prune_cost", self.prune_cost, positive=False)
        if not isinstance(self.channel, ChannelConfig):
            raise ConfigError(f"channel must be a ChannelConfig, got {type(self.channel).__name__}")
        if not isinstance(self.harden, HardenConfig):
            raise ConfigError(f"harden must be a HardenConfig, got {type(self.harden).__name__}")
        if not isinstance(self.mask, MaskConfig):
            raise ConfigError(f"mask must be a MaskConfig, got {type(self.mask).__name__}")
        if self.mask.update_bn:  # embed writes mask.apply(model): learned statistics would be lost
            raise ConfigError("mask.update_bn is not supported by embed (BatchNorm stays frozen)")
        check_range("alpha", self.alpha, lo=0, hi=1, lo_open=True, hi_open=True)
        check_range("max_accuracy_drop", self.max_accuracy_drop, lo=0, hi=1)
        check_number("resist_weight", self.resist_weight, positive=False)
        check_number("bn_robust", self.bn_robust, positive=False)
        check_range("awp", self.awp, lo=0, hi=1)
        if self.adapt not in ADAPT_MODES:
            raise ConfigError(f"adapt must be one of {', '.join(ADAPT_MODES)}; got {self.adapt!r}")
        if self.stop_every is not None:
            check_int("stop_every", self.stop_every, low=1)
        check_int("stop_images", self.stop_images, low=1)
        check_range("stop_margin", self.stop_margin, lo=0, hi=1)
        if self.stop_rule not in STOP_RULES:
            raise ConfigError(
                f"stop_rule must be one of {', '.join(STOP_RULES)}; got {self.stop_rule!r}"
            )
        self.analysis()  # the committed analysis must be valid too
        self.family_params(10)  # validates family name and patch sizes

    def analysis(self, *, attempt: int = 1, discarded: tuple[str, ...] = ()) -> Analysis:
        """The analysis this recipe commits (attempt ``attempt`` of this key on this model)."""
        try:
            return Analysis(
                n_secrets=self.n_secrets,
                null_keys_per_secret=self.null_keys_per_secret,
                images_per_key=self.n_verification,
                test=self.test,
                mode_rule=self.mode_rule,
                alpha=self.alpha,
                effect_floor=self.effect_floor,
                floor_statistic=self.floor_statistic,
                attempt=attempt,
                discarded_attempts=discarded,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def family_params(self, num_classes: int, *, image_size: int = GRID) -> dict[str, Any]:
        """The validated, complete parameters of the trigger family for ``num_classes`` and
        ``image_size``-pixel images, as committed.

        The recipe's sizes are cells of a ``GRID``-cell lattice over the image (trigger geometry
        v2, docs/TRIGGERS.md section 4a), so they are the same fraction of the side at every
        resolution; at ``GRID`` pixels that is geometry v1 (``grid`` not committed).
        """
        family = get_trigger_family(self.family)
        raw: dict[str, Any] = {"min_size": self.min_size, "max_size": self.max_size}
        if image_size != GRID:
            raw |= {"image_size": image_size, "grid": GRID}
        if self.targeted():
            raw |= {"num_classes": num_classes, "margin": self.margin}
        elif self.margin:
            raise ConfigError(f"family '{self.family}' has no margin; use a targeted family")
        try:
            return public_params(family.make_params(raw))
        except TypeError as exc:
            raise ConfigError(
                f"family '{self.family}' does not take {sorted(raw)}: {exc}"
            ) from None

    def targeted(self) -> bool:
        """Whether the family derives a target class per key."""
        family = get_trigger_family(self.family)
        return "num_classes" in {f.name for f in dataclasses.fields(family.params_type)}

    def replace(self, **changes: Any) -> EmbedConfig:
        """A copy with ``changes`` applied (validated); ``epochs=`` sets the mask's epochs (and
        turns the ``mask_images`` budget off)."""
        if "epochs" in changes:
            changes["mask"] = changes.get("mask", self.mask).replace(epochs=changes.pop("epochs"))
            changes.setdefault("mask_images", None)
        return super().replace(**changes)

    def with_options(self, options: Mapping[str, Any]) -> EmbedConfig:
        """As :meth:`ConfigMixin.with_options`; ``mask.epochs`` turns the ``mask_images`` budget
        off (unless ``mask_images`` is given too)."""
        options = dict(options)
        if "mask.epochs" in options:
            options.setdefault("mask_images", None)
        # ``to_dict`` leaves an "off" channel or hardening out, so their options are applied here
        nested = {name: {k.partition(".")[2]: options.pop(k) for k in list(options)
                         if k.startswith(f"{name}.")}
                  for name in ("channel", "harden")}  # fmt: skip
        out = super().with_options(options)
        for name, given in nested.items():
            if given:
                out = dataclasses.replace(out, **{name: getattr(out, name).with_options(given)})
        return out

    def for_data(self, n_train: int) -> EmbedConfig:
        """This recipe with the mask epochs resolved for ``n_train`` training images (the
        ``mask_images`` budget kept for the record)."""
        if self.mask_images is None:
            return self
        epochs = max(1, math.ceil(self.mask_images / max(1, n_train)))
        return super().replace(mask=self.mask.replace(epochs=epochs))
