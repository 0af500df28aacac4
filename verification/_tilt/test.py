"""The tilt's exact rank test: the secret's statistic among null keys of the same family."""

from __future__ import annotations

import dataclasses

import numpy as np

from verification._stats.rank import RankTestResult, rank_test
from verification._tilt.family import CosineTiltFamily
from verification._tilt.features import lowfreq_features
from verification._tilt.statistic import key_statistics

__all__ = ["TiltQueries", "tilt_test"]


@dataclasses.dataclass(frozen=True)
class TiltQueries:
    """The committed set, fixed before any secret is drawn (images ``[n, 3, S, S]`` uint8):
    natural images (not queried; they fix each key's standardisation) and the boundary images
    with their candidate class pairs (queried)."""

    natural: np.ndarray
    boundary: np.ndarray
    pairs: np.ndarray


def tilt_test(
    family: CosineTiltFamily,
    secret: bytes,
    null_keys: list[bytes],
    queries: TiltQueries,
    *,
    suspect_labels: np.ndarray,
    suspect_logprobs: np.ndarray | None = None,
) -> dict[str, RankTestResult]:
    """Rank the secret's labels (and, with log-probabilities, probability) statistic among the
    null keys' (``alternative="greater"``, ties conservative).

    Null hypothesis: the suspect was built without ``secret``; ``secret`` and ``null_keys`` are
    iid draws of 32 random bytes. Then the ``1 + M`` statistics are exchangeable (each is the
    same function of its key, the suspect's answers and the committed queries) and
    ``P(p <= r / (M + 1)) <= r / (M + 1)`` exactly.

    Args:
        suspect_labels: The suspect's labels on ``queries.boundary``.
        suspect_logprobs: Its log-probabilities on the same images (probabilities mode).
    """
    natural = lowfreq_features(queries.natural, grid=family.grid, order=family.order)
    keys = family.derive_many([secret, *null_keys], natural=natural)
    stats = key_statistics(
        keys,
        natural_features=natural,
        boundary_features=lowfreq_features(queries.boundary, grid=family.grid, order=family.order),
        pairs=queries.pairs,
        suspect_labels=suspect_labels,
        suspect_logprobs=suspect_logprobs,
    )
    return {name: rank_test(g[0], g[1:]) for name, g in stats.items()}
