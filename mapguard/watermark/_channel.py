"""The committed second channel at embedding (``EmbedConfig.channel``; issue 15, item 3).

With ``channel.family = "pair-preference"`` the embedding, before the mask is learned:

1. draws the channel's query set from ``cfg.seed`` *before any secret*: ``natural`` held-out
   images outside the verification set (they fix each key's standardisation) and ``queries``
   boundary images, mixtures of two other held-out images at the original model's switch point
   (``boundary_images``);
2. draws the channel secret (OS randomness) and commits to it (``protocols.commitments``);
3. teaches the original ``logits + eps * pref_secret(x)`` (``embed_tilt``, ``torch_preference``)
   — **this changes weights**: it is a separate recipe from the MAP mask, which is then learned
   over the taught (frozen) weights and holds their clean outputs, the keyed shift included.

The committed block (``protocols.channel_analysis.ChannelAnalysis``) goes into the analysis,
the secret, its opening nonce and the query set into the watermark file
(``verification.channel.encode_channel``).
"""

from __future__ import annotations

import dataclasses
import secrets as _secrets
from dataclasses import dataclass

import numpy as np
import torch

from mapguard._config import ConfigMixin, check_int, check_number
from mapguard._errors import ConfigError
from mapguard.watermark._tilt import TiltRecipe, boundary_images, embed_tilt, torch_preference
from protocols.channel_analysis import MAX_CHANNEL_NULL_KEYS, MAX_CHANNEL_QUERIES, ChannelAnalysis
from protocols.commitments import commit
from verification.channel import ChannelSpec, query_set_digest
from verification.tilt import PreferenceReference, TiltQueries, lowfreq_features

__all__ = [
    "CHANNEL_FAMILIES",
    "ChannelConfig",
    "DrawnChannel",
    "draw_channel",
    "teach_channel",
]

CHANNEL_FAMILIES = ("off", "pair-preference")
#: Most boundary mixtures ``channel.keep_mix`` may ask for (held in memory as float images).
MAX_KEEP_MIX = 100_000


@dataclass(frozen=True, kw_only=True)
class ChannelConfig(ConfigMixin, what="channel"):
    """Options of the committed second channel (off by default).

    Attributes:
        family: ``"off"`` or ``"pair-preference"``.
        eps: Strength of the taught keyed shift (logits at a boundary).
        epochs: Teaching epochs over the training images.
        queries: Boundary images committed and queried (``n_c``).
        natural: Held-out images that fix the keys' standardisation (not queried).
        null_keys: ``M_c``: the smallest channel p-value is ``1 / (M_c + 1)``.
        regions, sharpness: The family's public parameters.
        keep_mix: Mixtures of two training images of different classes (weights drawn
            uniformly in [0.3, 0.7]) that the mask learner holds to the taught model's outputs
            beside the clean images, so that the mask keeps the taught behaviour near the class
            boundaries (0: none). Session 16 measured why: on the default model the teaching
            reaches z 5.5 and the trigger mask learned over the taught weights left z 1.1.
    """

    family: str = "off"
    eps: float = 2.0
    epochs: int = 8
    queries: int = 2000
    natural: int = 400
    null_keys: int = 9999
    regions: int = 4
    sharpness: float = 3.0
    keep_mix: int = 0

    def __post_init__(self) -> None:
        if self.family not in CHANNEL_FAMILIES:
            raise ConfigError(
                f"channel.family must be one of {', '.join(CHANNEL_FAMILIES)}; got {self.family!r}"
            )
        check_number("channel.eps", self.eps, positive=True)
        check_int("channel.epochs", self.epochs, low=1)
        check_int("channel.queries", self.queries, low=1, high=MAX_CHANNEL_QUERIES)
        check_int("channel.natural", self.natural, low=2)
        check_int("channel.null_keys", self.null_keys, low=1, high=MAX_CHANNEL_NULL_KEYS)
        check_int("channel.regions", self.regions, low=1, high=16)
        check_number("channel.sharpness", self.sharpness, positive=True)
        check_int("channel.keep_mix", self.keep_mix, low=0, high=MAX_KEEP_MIX)

    @property
    def on(self) -> bool:
        return self.family != "off"


@dataclasses.dataclass(frozen=True, eq=False)
class DrawnChannel:
    """The channel as drawn: ``spec`` (secret, opening nonce, query set, committed block)."""

    spec: ChannelSpec

    @property
    def block(self) -> ChannelAnalysis:
        return self.spec.analysis


def _query_set(model: torch.nn.Module, holdout: object, taken: set[int], cfg: ChannelConfig,
               seed: int) -> TiltQueries:  # fmt: skip
    """Natural images and boundary mixtures from held-out images outside ``taken``."""
    from mapguard.watermark._recipe import pixels

    labels = getattr(holdout, "labels", None)
    if labels is None:
        raise ConfigError("the channel needs labelled held-out images (built-in data or a folder)")
    spare = np.array([i for i in range(len(labels)) if i not in taken], dtype=np.int64)
    spare = np.random.default_rng([seed, 0xC4A]).permutation(spare)
    if len(spare) < cfg.natural + 20:
        raise ConfigError(
            f"the channel needs {cfg.natural} natural and >= 20 pool images outside the "
            f"verification set; the data hold out {len(spare)}"
        )
    nat = torch.from_numpy(np.sort(spare[: cfg.natural]))
    pool = torch.from_numpy(np.sort(spare[cfg.natural :]))
    x_pool = pixels(holdout, pool).float().div(255.0)
    bset = boundary_images(model, x_pool, torch.as_tensor(labels)[pool], cfg.queries, seed=seed)
    if len(bset.images) < cfg.queries:
        raise ConfigError(
            f"only {len(bset.images)} of channel.queries={cfg.queries} boundary images could be "
            "made from the held-out images (too few correctly answered pairs)"
        )
    return TiltQueries(pixels(holdout, nat).numpy(), bset.images, bset.pairs)


def draw_channel(
    model: torch.nn.Module,
    holdout: object,
    taken: set[int],
    cfg: ChannelConfig,
    *,
    num_classes: int,
    seed: int,
    secret_rng: np.random.Generator | None = None,
) -> DrawnChannel:
    """The query set (from ``seed``, before the secret), the secret and its commitment."""
    queries = _query_set(model.eval(), holdout, taken, cfg, seed)
    secret = _secrets.token_bytes(32) if secret_rng is None else secret_rng.bytes(32)
    opening = commit(secret)
    block = ChannelAnalysis(
        null_keys=cfg.null_keys, queries=cfg.queries, secret_commitment=opening.digest,
        query_set_sha256=query_set_digest(queries.natural, queries.boundary, queries.pairs),
        regions=cfg.regions, sharpness=cfg.sharpness,
    )  # fmt: skip
    spec = ChannelSpec(analysis=block, num_classes=num_classes, secret=secret,
                       secret_nonce=opening.nonce, queries=queries)  # fmt: skip
    return DrawnChannel(spec)


def teach_channel(
    model: torch.nn.Module, train: object, drawn: DrawnChannel, cfg: ChannelConfig, *, seed: int
) -> torch.nn.Module:
    """A copy of ``model`` taught the secret's keyed pair preferences (weights change)."""
    if not hasattr(train, "floats"):
        raise ConfigError("the channel is taught on training images held in memory (built-in "
                          "data); a streamed folder is not supported yet")  # fmt: skip
    spec = drawn.spec
    family, key = spec.family, spec.family.derive(spec.secret)
    natural = lowfreq_features(spec.queries.natural, grid=family.grid, order=family.order)
    ref = PreferenceReference.from_features(key, natural)
    side = int(spec.queries.natural.shape[-1])
    shift = torch_preference(family, key, ref, side, model.eval())
    recipe = TiltRecipe(eps=cfg.eps, epochs=cfg.epochs)
    return embed_tilt(model, train.floats(), shift, recipe, seed=seed)
