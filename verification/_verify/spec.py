"""Inputs of :func:`verification.verify.verify`: the revealed watermark and the options."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from protocols.analysis import FLOOR_STATISTICS, TESTS, Analysis, resolve_mode
from verification._errors import VerificationError
from verification._jsonsafe import jsonsafe
from verification._stats.parametric import TAIL_MODELS
from verification._stats.validation import TIES
from verification._triggers.validation import check_secret
from verification.triggers import get_trigger_family, public_params

__all__ = [
    "MAX_IMAGES_PER_KEY",
    "MAX_NULL_KEYS_PER_SECRET",
    "MAX_SECRETS",
    "NULL_SEED_DOMAIN",
    "VerifyConfig",
    "WatermarkSpec",
    "check_count",
    "public_null_seed",
]

NULL_SEED_DOMAIN = b"mapguard/null-seed/v1"
PARAMETRIC_CHOICES = ("auto", *TAIL_MODELS)

#: Upper limits of the sizes an arbiter accepts, so that a crafted watermark file or option cannot
#: make a verification run for days (one image is queried once per key: ``n * (1 + k * (1 + M))``
#: queries). Each is far above the embedding defaults (k = 3 secrets, M = 99, n = 40 images); a
#: file within them is at most ``verification.watermark_file.MAX_FILE_BYTES`` large.
MAX_SECRETS = 64
MAX_NULL_KEYS_PER_SECRET = 10_000
MAX_IMAGES_PER_KEY = 1_000


def check_count(name: str, value: object, *, lo: int = 1, hi: int) -> int:
    """``value`` if it is an integer in ``[lo, hi]``, else a :class:`VerificationError` naming
    ``name`` and the bad value."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise VerificationError(f"{name} must be an integer >= {lo}, got {value!r}")
    if value > hi:
        raise VerificationError(
            f"{name} must be at most {hi:,} (a limit of this verifier), got {value!r}"
        )
    return value


def public_null_seed(*, suspect_digest: str, commitment_digest: str) -> str:
    """The default null-key seed: ``sha256(b"mapguard/null-seed/v1" 0x00 suspect 0x00 commitment)``.

    Both inputs are public, so any third party recomputes the same null keys; neither party can
    choose the seed after the fact (see docs/METHOD.md, section 4, "Null keys").
    """
    parts = (NULL_SEED_DOMAIN, suspect_digest.encode("utf-8"), commitment_digest.encode("utf-8"))
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class WatermarkSpec:
    """The revealed watermark an arbiter verifies against.

    Attributes:
        family: Trigger family name (see :func:`verification.triggers.list_trigger_families`).
        family_params: Family parameters (validated; defaults filled in).
        secrets: The revealed 32-byte secrets, one trigger each.
        images: Verification images, uint8 ``[n, 3, 32, 32]``, in committed order.
        labels: Their true labels, int64 ``[n]``.
        num_classes: Number of classes of the watermarked model.
        commitment_digest: Public digest of the owner's commitment (enters the null seed).
        owner_key: Fingerprint of the key that signed the watermark file, if known; copied into
            the result so that it can say whose watermark was tested (not checked here).
    """

    family: str
    family_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    secrets: tuple[bytes, ...]
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    commitment_digest: str = ""
    owner_key: str = ""

    def __post_init__(self) -> None:
        params, secrets, images, labels = _spec_iv(self)
        object.__setattr__(self, "family_params", params)
        object.__setattr__(self, "secrets", secrets)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)

    @property
    def n_images(self) -> int:
        """Number of verification images."""
        return int(self.images.shape[0])


def _spec_iv(spec: WatermarkSpec) -> tuple[dict[str, Any], tuple[bytes, ...], Any, Any]:
    family = get_trigger_family(spec.family)
    params = public_params(family.make_params(dict(spec.family_params)))
    if isinstance(spec.secrets, bytes | str) or len(spec.secrets) == 0:
        raise VerificationError("secrets must be a non-empty sequence of 32-byte strings")
    check_count("the number of secrets", len(spec.secrets), hi=MAX_SECRETS)
    secrets = tuple(check_secret(s) for s in spec.secrets)
    if len(set(secrets)) != len(secrets):
        raise VerificationError("secrets must be distinct")
    images = np.asarray(spec.images)
    size = params["image_size"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, size, size):
        raise VerificationError(
            f"images must be uint8 [n, 3, {size}, {size}], got {images.dtype} {list(images.shape)}"
        )
    check_count("the number of verification images", images.shape[0], lo=0, hi=MAX_IMAGES_PER_KEY)
    labels = np.asarray(spec.labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or images.shape[0] == 0:
        raise VerificationError(
            f"need n >= 1 images and n labels; got {images.shape[0]} images, labels of shape "
            f"{list(labels.shape)}"
        )
    k = spec.num_classes
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise VerificationError(f"num_classes must be an integer >= 2, got {k!r}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k:
        raise VerificationError(f"labels must be integers in [0, {k}), got {labels.dtype} values")
    return params, secrets, images, labels.astype(np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyConfig:
    """Options of :func:`verification.verify.verify`.

    Attributes:
        null_keys_per_secret: ``M``, null keys ranked against each secret.
        n_query_images: Use the first ``n`` verification images (None: all).
        query_budget: Total queries the suspect may be sent (probe included); the number of images
            per key is then the largest ``n`` with ``probe + n * (1 + k * (1 + M))`` within it
            (``k`` secrets, ``M`` null keys each). Not together with ``n_query_images``.
        alpha: Significance level of the verdict.
        labels_only: Use only the suspect's top-1 labels even if it gives probabilities.
        null_seed: Public seed of the null keys; None derives it with :func:`public_null_seed`
            from the suspect's digest and the spec's commitment digest.
        batch_size: Images per query sent to the backend (several triggers are stacked).
        confidence_level: Of the effect-size interval.
        ties: Tie handling of the rank tests (``"conservative"`` or ``"randomized"``).
        parametric_model: Supplementary tail model; ``"auto"`` = ``betabinom`` for labels,
            ``beta`` for probabilities; None disables it.
        n_resamples: Bootstrap resamples of the effect-size interval.
        seed: Seed of the bootstrap and of randomized tie-breaking.
        test: ``"exact-max-rank"`` (each secret among its own null keys), ``"pooled-min"``
            (all keys together, the weakest secret decides; see
            :func:`verification.stats.pooled_min_test`) or ``"pooled-rank-sum"`` (all keys
            together, the secrets' rank sum decides;
            :func:`verification.stats.pooled_rank_sum_test`).
        effect_floor: The secrets' ``floor_statistic`` must also reach this for ``evidenced``.
        floor_statistic: ``"min"`` (the weakest secret's statistic) or ``"median"`` (the median
            of the secrets' statistics): what ``effect_floor`` applies to.
        attempt: Embedding attempt number ``a``; the verdict uses ``min(1, a * p)``.
    """

    null_keys_per_secret: int = 99
    n_query_images: int | None = None
    query_budget: int | None = None
    alpha: float = 1e-3
    labels_only: bool = False
    null_seed: str | None = None
    batch_size: int = 256
    confidence_level: float = 0.95
    ties: str = "conservative"
    parametric_model: str | None = "auto"
    n_resamples: int = 2000
    seed: int = 0
    test: str = "exact-max-rank"
    effect_floor: float = 0.0
    floor_statistic: str = "median"
    attempt: int = 1

    def __post_init__(self) -> None:
        _config_iv(self)

    @classmethod
    def from_analysis(
        cls, analysis: Analysis, *, null_seed: str, gives_probabilities: bool, **options: Any
    ) -> VerifyConfig:
        """The configuration of a pre-registered analysis (nothing left to choose but the
        non-statistical ``options``: ``batch_size``, ``n_resamples``, ``confidence_level``).

        With a committed channel (version 4) the trigger test runs at ``alpha / 2``, its share
        of the Bonferroni verdict (``verification.channel.combine``).

        Raises:
            VerificationError: ``options`` names a field the analysis fixes, or the mode rule
                needs probabilities from a suspect that gives labels only.
        """
        fixed = set(options) - {"batch_size", "n_resamples", "confidence_level"}
        if fixed:
            raise VerificationError(
                f"the committed analysis fixes {', '.join(sorted(fixed))}; it cannot be changed"
            )
        try:
            mode = resolve_mode(analysis.mode_rule, gives_probabilities=gives_probabilities)
        except ValueError as exc:
            raise VerificationError(str(exc)) from None
        return cls(
            null_keys_per_secret=analysis.null_keys_per_secret,
            n_query_images=analysis.images_per_key,
            alpha=analysis.alpha / analysis.channels,  # Bonferroni with a committed channel
            labels_only=mode == "labels",
            null_seed=null_seed,
            ties=analysis.ties,
            test=analysis.test,
            effect_floor=analysis.effect_floor,
            floor_statistic=analysis.floor_statistic,
            attempt=analysis.attempt,
            seed=int(null_seed[:8], 16),
            **options,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return jsonsafe(self)


def _positive_int(name: str, value: object, lo: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise VerificationError(f"{name} must be an integer >= {lo}, got {value!r}")


def _in_unit(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
        raise VerificationError(f"{name} must be a number in (0, 1), got {value!r}")


def _query_budget_iv(cfg: VerifyConfig) -> None:
    budget = cfg.query_budget
    if budget is None:
        return
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise VerificationError(f"query_budget must be an integer or None, got {budget!r}")
    if cfg.n_query_images is not None:
        raise VerificationError(
            f"give n_query_images or query_budget, not both (got {cfg.n_query_images} and {budget})"
        )


def _config_iv(cfg: VerifyConfig) -> None:
    check_count("null_keys_per_secret", cfg.null_keys_per_secret, hi=MAX_NULL_KEYS_PER_SECRET)
    if cfg.n_query_images is not None:
        check_count("n_query_images", cfg.n_query_images, hi=MAX_IMAGES_PER_KEY)
    _query_budget_iv(cfg)
    _in_unit("alpha", cfg.alpha)
    _in_unit("confidence_level", cfg.confidence_level)
    _positive_int("batch_size", cfg.batch_size)
    _positive_int("n_resamples", cfg.n_resamples, 100)
    _positive_int("seed", cfg.seed, 0)
    if cfg.null_seed is not None and (not isinstance(cfg.null_seed, str) or not cfg.null_seed):
        raise VerificationError(
            f"null_seed must be a non-empty string or None, got {cfg.null_seed!r}"
        )
    if cfg.test not in TESTS:
        raise VerificationError(f"test must be one of {', '.join(TESTS)}; got {cfg.test!r}")
    _positive_int("attempt", cfg.attempt)
    floor = cfg.effect_floor
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not -1 <= floor <= 1:
        raise VerificationError(f"effect_floor must be a number in [-1, 1], got {floor!r}")
    if cfg.floor_statistic not in FLOOR_STATISTICS:
        raise VerificationError(
            f"floor_statistic must be one of {', '.join(FLOOR_STATISTICS)}; "
            f"got {cfg.floor_statistic!r}"
        )
    if cfg.ties not in TIES:
        raise VerificationError(f"ties must be one of {', '.join(TIES)}; got {cfg.ties!r}")
    if cfg.parametric_model is not None and cfg.parametric_model not in PARAMETRIC_CHOICES:
        raise VerificationError(
            f"parametric_model must be None or one of {', '.join(PARAMETRIC_CHOICES)}; "
            f"got {cfg.parametric_model!r}"
        )
