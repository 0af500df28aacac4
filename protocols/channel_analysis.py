"""The second evidence channel of a pre-registered analysis (analysis version 4).

A version-4 analysis fixes, besides the trigger test, a test of keyed *pair preferences* on
natural inputs (``verification._tilt.preference``): the one channel a clean-data student
inherits (docs/ROBUSTNESS.md, issue 15). Everything that moves its p-value is here and
committed before any suspect is seen:

- the family and its public parameters (``regions``, ``sharpness``, ``grid``, ``order``);
- ``null_keys`` ``M_c`` (the channel secret is ranked among ``M_c`` null keys derived from the
  claim's null seed under their own domain, so they never coincide with the trigger null keys);
- the committed query set: ``queries`` boundary images with their candidate class pairs and the
  natural images that fix each key's standardisation, bound by ``query_set_sha256``;
- the channel secret, bound by ``secret_commitment`` (``protocols.commitments``, opened by the
  watermark file);
- ``combination`` ``"bonferroni"``: the verdict's p-value is ``min(1, 2 a min(p_trigger,
  p_channel))`` with ``a`` the embedding attempt, and each channel is decided at ``alpha / 2``
  (the trigger one with its effect floor), so the verdict keeps level ``alpha`` whatever the
  suspect;
- ``admissible_if`` ``"time-order"``: the channel's p-value counts only when a trusted timestamp
  shows the commitment existed before the suspect's first known date; otherwise it is reported
  and taken as 1. Reason: a channel key is one of ``2**256``, and an owner who saw an innocent
  model could search keys until one scores high on it (measured: 2**30 keys reach z = 6, the
  marked model's own level); keys fixed before the suspect existed cannot have been chosen to
  fit it. The trigger channel is protected by its effect floor instead.

Example:
    >>> c = ChannelAnalysis(null_keys=1999, queries=500, query_set_sha256="0" * 64,
    ...                     secret_commitment="1" * 64)
    >>> c.pvalue_floor
    0.0005
    >>> ChannelAnalysis.from_block(c.to_block()) == c
    True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from protocols.errors import SchemaError

__all__ = ["ADMISSIBLE_IF", "CHANNEL_FAMILIES", "COMBINATION", "ChannelAnalysis"]

CHANNEL_FAMILIES = ("pair-preference",)
COMBINATION = "bonferroni"
ADMISSIBLE_IF = "time-order"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Limits an arbiter accepts (a crafted commitment must not make verification run for days).
MAX_CHANNEL_NULL_KEYS = 100_000
MAX_CHANNEL_QUERIES = 10_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChannelAnalysis:
    """The committed channel test (see the module docstring).

    Attributes:
        null_keys: ``M_c``; the smallest channel p-value is ``1 / (M_c + 1)``.
        queries: Boundary images queried (``n_c``).
        query_set_sha256: Digest of the committed query set (natural images, boundary images,
            candidate pairs; ``verification.channel.query_set_digest``).
        secret_commitment: Commitment digest of the channel secret.
        family, regions, sharpness, grid, order: The key family and its public parameters.
    """

    null_keys: int
    queries: int
    query_set_sha256: str
    secret_commitment: str
    family: str = "pair-preference"
    regions: int = 4
    sharpness: float = 3.0
    grid: int = 8
    order: int = 3

    def __post_init__(self) -> None:
        _channel_iv(self)

    @property
    def pvalue_floor(self) -> float:
        """The smallest channel p-value (before the Bonferroni and attempt factors)."""
        return 1.0 / (self.null_keys + 1)

    @property
    def family_params(self) -> dict[str, Any]:
        """The family's public parameters (``verification.tilt.PairPreferenceFamily`` fields)."""
        return {"regions": self.regions, "sharpness": self.sharpness, "grid": self.grid,
                "order": self.order}  # fmt: skip

    def to_block(self) -> dict[str, Any]:
        """The ``channel`` object of a version-4 ``verification`` block."""
        return {
            "family": self.family,
            **self.family_params,
            "null_keys": self.null_keys,
            "queries": self.queries,
            "query_set_sha256": self.query_set_sha256,
            "secret_commitment": self.secret_commitment,
            "combination": COMBINATION,
            "admissible_if": ADMISSIBLE_IF,
        }

    @classmethod
    def from_block(cls, block: object) -> ChannelAnalysis:
        """Read a ``channel`` object.

        Raises:
            SchemaError: Missing or malformed fields, or a combination or admissibility rule
                this code does not apply.
        """
        if not isinstance(block, Mapping):
            raise SchemaError("the analysis's channel is not an object")
        rules = (("combination", COMBINATION), ("admissible_if", ADMISSIBLE_IF))
        for name, want in rules:
            if block.get(name) != want:
                raise SchemaError(
                    f"the channel's {name} {str(block.get(name))[:30]!r} is not known to this "
                    f"verifier (it applies {want!r})"
                )
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = set(block) - set(fields) - {name for name, _ in rules}
        if unknown:
            raise SchemaError(f"the analysis's channel has unknown fields: {sorted(unknown)}")
        try:
            return cls(**{name: block[name] for name in fields})
        except KeyError as exc:
            raise SchemaError(f"the analysis's channel lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"the analysis's channel is malformed: {exc}") from None


def _count(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"channel {name} must be an integer in [{lo}, {hi}], got {value!r}")


def _channel_iv(c: ChannelAnalysis) -> None:
    if c.family not in CHANNEL_FAMILIES:
        raise ValueError(f"channel family must be one of {', '.join(CHANNEL_FAMILIES)}; "
                         f"got {c.family!r}")  # fmt: skip
    _count("null_keys", c.null_keys, 1, MAX_CHANNEL_NULL_KEYS)
    _count("queries", c.queries, 1, MAX_CHANNEL_QUERIES)
    _count("regions", c.regions, 1, 16)
    _count("grid", c.grid, 1, 64)
    _count("order", c.order, 1, 64)
    s = c.sharpness
    if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 100:
        raise ValueError(f"channel sharpness must be a number in (0, 100], got {s!r}")
    for name in ("query_set_sha256", "secret_commitment"):
        value = getattr(c, name)
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise ValueError(f"channel {name} must be 64 lowercase hex digits, got {value!r}")
