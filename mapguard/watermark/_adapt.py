"""The embedding recipe adapted to the model it is given, decided before the secrets are drawn.

:func:`adapt_recipe` turns the recipe (:class:`~mapguard.watermark.EmbedConfig`) into the one
this model and data get. It reads only the model's structure (:func:`profile`), the number of
training images and the number of held-out images left beside the verification set; it is called
by :func:`mapguard.watermark.embed` before the secrets are drawn, and what it decided is written
into ``embed-config.json`` (the resolved fields, and ``adapted``: the rule that fired, in words).
So adapting is not choosing: nothing in it can depend on the secrets or on how well they took.

The rules (docs/BENCHMARKS.md, "Embedding into a model from outside the zoo", measured them):

* every model: the mask budget in training images seen (``mask_images``) becomes epochs;
* *small* models (at most :data:`SMALL_MODEL` maskable weights: the zoo's ``vgg_tiny``,
  ``vgg_small`` and ``mobilenet_v3_small``, on which the recipe was measured): nothing else;
* *large* models: the stopping rule is on (a rehearsal every ``1 / STOP_CHECKS`` of the budget,
  :mod:`mapguard.watermark._stopping`), when the hold-out leaves tuning images for it. The
  rates (``mask.lr``, ``prune_cost``), the granularity and ``trigger_batch`` stay the zoo's: no
  other value was measured to do better on a large model yet (docs/BENCHMARKS.md says what was
  tried: a 3x rate, and a half or a quarter of the negative-key and secret-trigger batch, which
  cut the embedding's CPU time on one secret draw and raised it on the other).

``adapt="off"`` keeps the recipe as given (only the budget resolves). Fields set away from the
default recipe (``-o mask.lr=...``) are the user's and are never changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from mapguard.masking import maskable_weights
from mapguard.watermark._config import EmbedConfig

__all__ = ["MIN_TUNING", "SMALL_MODEL", "STOP_CHECKS", "ModelProfile", "adapt_recipe", "profile"]

#: Maskable weights of the largest model the fixed recipe was measured on (mobilenet_v3_small:
#: 1.51 M; vgg_small 0.50 M), rounded up.
SMALL_MODEL = 2_000_000
#: Rehearsals of the stopping rule over the whole budget.
STOP_CHECKS = 16
#: Fewest spare held-out images for which the stopping rule runs (fewer: it is off).
MIN_TUNING = 32


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelProfile:
    """What the recipe reads from a model: its maskable weights and layers, and its kind."""

    weights: int
    layers: int
    attention: bool
    batchnorm: int

    @property
    def large(self) -> bool:
        return self.weights > SMALL_MODEL

    def describe(self) -> str:
        kind = "attention, " if self.attention else ""
        return (f"{self.weights / 1e6:.2f} M maskable weights in {self.layers} layers, {kind}"
                f"{self.batchnorm} BatchNorm")  # fmt: skip


def profile(model: nn.Module, *, exclude: tuple[str, ...] = ()) -> ModelProfile:
    """The :class:`ModelProfile` of ``model`` (the weights the mask would cover)."""
    names = maskable_weights(model, exclude=exclude)
    return ModelProfile(
        weights=sum(model.get_parameter(n).numel() for n in names),
        layers=len(names),
        attention=any(isinstance(m, nn.MultiheadAttention) for m in model.modules()),
        batchnorm=sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()),
    )


def adapt_recipe(cfg: EmbedConfig, model: nn.Module, *, n_train: int, n_spare: int) -> EmbedConfig:
    """The recipe for ``model`` with ``n_train`` training images and ``n_spare`` held-out images
    beside the verification set (see the module docstring); never reads a secret.

    Applying it to its own result changes nothing (``adapted`` is set).
    """
    if cfg.adapted:
        return cfg
    resolved = cfg.for_data(n_train)
    if cfg.adapt == "off":
        return resolved
    prof = profile(model, exclude=cfg.mask.exclude)
    if not prof.large:
        return _done(resolved, f"small model ({prof.describe()}): the fixed recipe")
    notes = [f"large model ({prof.describe()})"]
    changes: dict[str, Any] = {}
    if cfg.stop_every is None:
        if n_spare >= MIN_TUNING:
            changes["stop_every"] = max(1, resolved.mask.epochs * n_train // STOP_CHECKS)
            notes.append(f"stopping rule every {changes['stop_every']:,} training images")
        else:
            notes.append(f"no stopping rule ({n_spare} spare held-out images < {MIN_TUNING})")
    return _done(resolved.replace(**changes) if changes else resolved, "; ".join(notes))


def _done(cfg: EmbedConfig, why: str) -> EmbedConfig:
    return dataclasses.replace(cfg, adapted=why)
