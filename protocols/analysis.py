"""The pre-registered analysis: the one hypothesis test a commitment fixes before any suspect.

Everything that changes a verification's p-value is here and is committed (the ``verification``
block of the commitment, copied into the owner's watermark file): the test, the number of secrets
``k``, of null keys per secret ``M`` and of images per key ``n``, the mode rule (which answers of a
suspect are used), tie handling, the significance level, the effect-size floor, and the embedding
attempt number. The null keys come from :func:`claim_null_seed`: the commitment digest and a claim
nonce that is fixed after the claim is filed by someone other than the owner (the arbiter's nonce
or a public randomness-beacon value), never from the suspect file's bytes.

Commitments written before analysis version 2 carry only ``n_secrets``, ``null_keys_per_secret``,
``queries_per_key`` and ``test``; :meth:`Analysis.from_block` reads them as the legacy analysis
(max-rank test, probabilities when the suspect gives them, alpha 1e-3, no effect floor, one
attempt).

Example:
    >>> a = Analysis(n_secrets=8, null_keys_per_secret=7, images_per_key=64)
    >>> a.n_keys, f"{a.pvalue_floor:.2e}"
    (64, '2.27e-10')
    >>> Analysis.from_block(a.to_block()) == a
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from protocols.channel_analysis import ChannelAnalysis
from protocols.errors import SchemaError

__all__ = [
    "ANALYSIS_VERSION",
    "FLOOR_STATISTICS",
    "KNOWN_VERSIONS",
    "MODE_RULES",
    "NULL_SEED_RULE",
    "POOLED_TESTS",
    "TESTS",
    "CHANNEL_VERSION",
    "Analysis",
    "ChannelAnalysis",
    "claim_null_seed",
    "resolve_mode",
]

ANALYSIS_VERSION = "3"
#: A version-3 analysis plus a second evidence channel (``protocols.channel_analysis``).
CHANNEL_VERSION = "4"
#: Versions this code reads: "2" fixed the floor on the weakest secret (``floor_statistic``
#: "min", not written in its block); "3" names the floor statistic; "4" adds the channel.
KNOWN_VERSIONS = ("2", ANALYSIS_VERSION, CHANNEL_VERSION)
#: What the effect floor applies to: the weakest secret's statistic (``min``; one weakened
#: secret sinks the verdict) or the median of the k secrets' statistics (half of them may fail).
FLOOR_STATISTICS = ("min", "median")
#: ``pooled-min``: all N = k (M + 1) keys ranked together, p = C(c, k) / C(N, k);
#: ``pooled-rank-sum``: all N keys ranked together, p = P(rank sum <= the secrets'), exact;
#: ``exact-max-rank``: each secret ranked among its own M null keys, the ranks combined exactly.
TESTS = ("pooled-min", "pooled-rank-sum", "exact-max-rank")
#: The tests that rank all N keys together (floor 1 / C(N, k)).
POOLED_TESTS = ("pooled-min", "pooled-rank-sum")
#: Which answers of a suspect are used; one p-value per suspect whatever the suspect offers.
MODE_RULES = ("labels", "probabilities", "probabilities-if-available")
NULL_SEED_RULE = "sha256('mapguard/null-seed/v2' 0 commitment-digest 0 claim-nonce)"
_NULL_SEED_DOMAIN = b"mapguard/null-seed/v2"
_MAX_NONCE = 512


@dataclasses.dataclass(frozen=True, kw_only=True)
class Analysis:
    """One pre-registered analysis (see the module docstring).

    Attributes:
        n_secrets: ``k``, secret keys embedded.
        null_keys_per_secret: ``M``; ``N = k (M + 1)`` keys in all.
        images_per_key: ``n``, verification images each key is queried on.
        test: One of :data:`TESTS`.
        mode_rule: One of :data:`MODE_RULES`.
        ties: ``"randomized"`` (tied keys ordered by coins drawn from the null seed: an exact
            level, and a re-run draws the same coins) or ``"conservative"`` (ties counted
            against the secrets: labels-mode statistics tie a lot, and the level falls far
            below alpha).
        alpha: Significance level of the verdict.
        effect_floor: The secrets' ``floor_statistic`` must reach this too (0: no floor); set
            above the forgery margin measured by the same statistic, so that keys chosen after
            seeing an innocent model cannot reach it.
        floor_statistic: One of :data:`FLOOR_STATISTICS` (``"min"`` in a version-2 analysis).
        attempt: Embedding attempt number ``a``; the reported p-value is ``min(1, a p)``
            (Bonferroni over attempts, so re-running ``embed`` until it looks good buys nothing).
        discarded_attempts: Commitment digests of the earlier attempts (recorded, not tested).
        channel: The second evidence channel (version 4), or None (the trigger test alone).
            With a channel each test is decided at ``alpha / 2`` and the verdict's p-value is
            Bonferroni's (see :mod:`protocols.channel_analysis`).
        version: ``"4"`` (given a channel: set by itself), ``"3"``, ``"2"`` (no
            ``floor_statistic`` field: the weakest secret), or
            ``"legacy"`` for a commitment that fixed only k, M, n and the test.
    """

    n_secrets: int
    null_keys_per_secret: int
    images_per_key: int
    test: str = "pooled-min"
    mode_rule: str = "labels"
    ties: str = "randomized"
    alpha: float = 1e-3
    effect_floor: float = 0.0
    floor_statistic: str = "median"
    attempt: int = 1
    discarded_attempts: tuple[str, ...] = ()
    channel: ChannelAnalysis | None = None
    version: str = ANALYSIS_VERSION

    def __post_init__(self) -> None:
        if self.channel is not None and self.version == ANALYSIS_VERSION:
            object.__setattr__(self, "version", CHANNEL_VERSION)
        _analysis_iv(self)

    @property
    def channels(self) -> int:
        """Evidence channels the verdict combines (1, or 2 with a channel: Bonferroni)."""
        return 1 if self.channel is None else 2

    @property
    def n_keys(self) -> int:
        """``N = k (M + 1)``, secret and null keys together."""
        return self.n_secrets * (self.null_keys_per_secret + 1)

    @property
    def pvalue_floor(self) -> float:
        """The smallest p-value this analysis can report (before the attempt factor)."""
        if self.test in POOLED_TESTS:
            return 1.0 / math.comb(self.n_keys, self.n_secrets)
        return (1.0 / (self.null_keys_per_secret + 1)) ** self.n_secrets

    @property
    def queries(self) -> int:
        """Queries one verification sends: clean and every key, ``n (1 + N)``, plus the probe,
        plus the channel's boundary images."""
        extra = 0 if self.channel is None else self.channel.queries
        return self.images_per_key * (1 + self.n_keys) + 2 + extra

    def to_block(self) -> dict[str, Any]:
        """The commitment's ``verification`` block (legacy analyses keep their four fields)."""
        block = {
            "n_secrets": self.n_secrets,
            "null_keys_per_secret": self.null_keys_per_secret,
            "queries_per_key": self.images_per_key,
            "test": self.test,
        }
        if self.version == "legacy":
            return block
        if self.version in (ANALYSIS_VERSION, CHANNEL_VERSION):
            block["floor_statistic"] = self.floor_statistic
        if self.channel is not None:
            block["channel"] = self.channel.to_block()
        return {
            **block,
            "analysis_version": self.version,
            "mode_rule": self.mode_rule,
            "ties": self.ties,
            "alpha": self.alpha,
            "effect_floor": self.effect_floor,
            "attempt": self.attempt,
            "discarded_attempts": list(self.discarded_attempts),
            "null_seed_rule": NULL_SEED_RULE,
        }

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Analysis:
        """Read a commitment's ``verification`` block (either version).

        Raises:
            SchemaError: Missing or malformed fields, or an analysis version this code does not
                know.
        """
        if not isinstance(block, Mapping):
            raise SchemaError("the commitment's verification block is not an object")
        try:
            base = {
                "n_secrets": block["n_secrets"],
                "null_keys_per_secret": block["null_keys_per_secret"],
                "images_per_key": block["queries_per_key"],
            }
            if "analysis_version" not in block:
                return cls(**base, test="exact-max-rank", mode_rule="probabilities-if-available",
                           ties="conservative", floor_statistic="min",
                           version="legacy")  # fmt: skip
            version = block["analysis_version"]
            if version not in KNOWN_VERSIONS:
                raise SchemaError(
                    f"analysis version {str(version)[:20]!r} is not known to this verifier "
                    f"(it reads {', '.join(KNOWN_VERSIONS)})"
                )
            floor_statistic = "min" if version == "2" else block["floor_statistic"]
            channel = None
            if version == CHANNEL_VERSION:
                channel = ChannelAnalysis.from_block(block.get("channel"))
            elif "channel" in block:
                raise SchemaError(f"a version-{version} analysis has no channel")
            if block.get("null_seed_rule") != NULL_SEED_RULE:
                raise SchemaError(
                    "the commitment names a null-seed rule this verifier does not use"
                )
            return cls(
                **base,
                test=block["test"],
                mode_rule=block["mode_rule"],
                ties=block["ties"],
                alpha=block["alpha"],
                effect_floor=block["effect_floor"],
                floor_statistic=floor_statistic,
                attempt=block["attempt"],
                discarded_attempts=tuple(block.get("discarded_attempts", ())),
                channel=channel,
                version=version,
            )
        except KeyError as exc:
            raise SchemaError(f"the commitment's analysis lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"the commitment's analysis is malformed: {exc}") from None


def _int(name: str, value: object, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")


def _analysis_iv(a: Analysis) -> None:
    _int("n_secrets", a.n_secrets, 1)
    _int("null_keys_per_secret", a.null_keys_per_secret, 1)
    _int("images_per_key", a.images_per_key, 1)
    _int("attempt", a.attempt, 1)
    if not all(isinstance(d, str) for d in a.discarded_attempts):
        raise ValueError("discarded_attempts must be commitment digests (strings)")
    for name, value, choices in (
        ("test", a.test, TESTS),
        ("mode_rule", a.mode_rule, MODE_RULES),
        ("ties", a.ties, ("conservative", "randomized")),
        ("version", a.version, (*KNOWN_VERSIONS, "legacy")),
        ("floor_statistic", a.floor_statistic, FLOOR_STATISTICS),
    ):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    for name, value, lo, hi in (("alpha", a.alpha, 0.0, 1.0), ("effect_floor", a.effect_floor,
                                                                -1.0, 1.0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    if not a.alpha > 0:
        raise ValueError(f"alpha must be > 0, got {a.alpha!r}")
    if (a.version == CHANNEL_VERSION) != (a.channel is not None):
        raise ValueError("a channel needs analysis version 4, and version 4 a channel")
    if a.channel is not None and not isinstance(a.channel, ChannelAnalysis):
        raise ValueError(f"channel must be a ChannelAnalysis, got {type(a.channel).__name__}")
    if a.version in ("2", "legacy") and a.floor_statistic != "min":
        raise ValueError(
            f"a version-{a.version} analysis floors the weakest secret (floor_statistic 'min')"
        )


def claim_null_seed(*, commitment_digest: str, claim_nonce: str) -> str:
    """The null-key seed of a claim: ``sha256(domain 0 commitment digest 0 claim nonce)``, hex.

    Neither the owner (the nonce is fixed after the claim, by someone else) nor the suspect's
    bytes (re-saving a model changes nothing) can move it; any third party recomputes it.

    Raises:
        ValueError: An empty, over-long or non-printable nonce.
    """
    if not isinstance(claim_nonce, str) or not claim_nonce.strip():
        raise ValueError("the claim nonce must be a non-empty string")
    if len(claim_nonce) > _MAX_NONCE or not claim_nonce.isprintable():
        raise ValueError(f"the claim nonce must be at most {_MAX_NONCE} printable characters")
    parts = (_NULL_SEED_DOMAIN, commitment_digest.encode("utf-8"), claim_nonce.encode("utf-8"))
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


def resolve_mode(mode_rule: str, *, gives_probabilities: bool) -> str:
    """The mode (``"labels"`` or ``"probabilities"``) a mode rule picks for a suspect.

    Raises:
        ValueError: The rule needs probabilities and the suspect gives labels only.
    """
    if mode_rule == "labels":
        return "labels"
    if gives_probabilities:
        return "probabilities"
    if mode_rule == "probabilities":
        raise ValueError("the committed analysis needs probabilities; the suspect gives labels")
    return "labels"
