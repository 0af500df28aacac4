"""The channel's exact rank test: the secret's statistic among null keys of the same family.

Both key families (``cosine_tilt``, ``pair_preference``) reduce a key to its *pair differences*
on the committed boundary images, ``d_j`` = how much the key favours candidate ``a_j`` over
``b_j`` at ``x_j``; the labels and probability statistics are the same functions of ``d``
(``verification._tilt.statistic``), so one code path ranks either family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from verification._stats.rank import RankTestResult, rank_test
from verification._tilt.family import CosineTiltFamily
from verification._tilt.features import lowfreq_features
from verification._tilt.preference import (
    PairPreferenceFamily,
    PreferenceReference,
    preference_values,
)
from verification._tilt.statistic import (
    TiltReference,
    labels_score,
    pair_differences,
    probs_score,
    tilt_values,
)

__all__ = ["TiltQueries", "channel_statistics", "tilt_test"]

Family = CosineTiltFamily | PairPreferenceFamily


@dataclasses.dataclass(frozen=True)
class TiltQueries:
    """The committed set, fixed before any secret is drawn (images ``[n, 3, S, S]`` uint8):
    natural images (not queried; they fix each key's standardisation) and the boundary images
    with their candidate class pairs (queried)."""

    natural: np.ndarray
    boundary: np.ndarray
    pairs: np.ndarray


def _differences(
    family: Family, secrets: list[bytes], queries: TiltQueries, chunk: int
) -> Iterator[np.ndarray]:
    """Pair differences ``[k, n]`` of ``secrets``, ``chunk`` keys at a time (bounded memory)."""
    natural = lowfreq_features(queries.natural, grid=family.grid, order=family.order)
    boundary = lowfreq_features(queries.boundary, grid=family.grid, order=family.order)
    for i in range(0, len(secrets), chunk):
        part = secrets[i : i + chunk]
        if isinstance(family, CosineTiltFamily):
            keys = family.derive_many(part, natural=natural)
            ref = TiltReference.from_features(keys, natural)
            yield pair_differences(tilt_values(keys, ref, boundary), queries.pairs)
        else:
            keys = family.derive_many(part)
            ref = PreferenceReference.from_features(keys, natural)
            yield preference_values(family, keys, ref, boundary, queries.pairs)


def channel_statistics(
    family: Family,
    secrets: list[bytes],
    queries: TiltQueries,
    answers: Mapping[str, Mapping[str, np.ndarray | None]],
    *,
    chunk: int = 500,
) -> dict[str, dict[str, np.ndarray]]:
    """``{suspect: {"labels": [K], "probs": [K]}}`` for every key of ``secrets`` and every
    suspect's ``answers`` (``{"labels": [n], "logprobs": [n, C] or None}`` on the boundary
    images; ``probs`` only with log-probabilities). The keys are derived once for all
    suspects."""
    out: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in answers}
    for diff in _differences(family, secrets, queries, chunk):
        for name, a in answers.items():
            stats = out[name]
            stats.setdefault("labels", []).append(labels_score(diff, queries.pairs, a["labels"]))
            if a.get("logprobs") is not None:
                prob = probs_score(diff, queries.pairs, a["logprobs"])
                stats.setdefault("probs", []).append(prob)
    return {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in out.items()}


def tilt_test(
    family: Family,
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
    answers = {"suspect": {"labels": suspect_labels, "logprobs": suspect_logprobs}}
    stats = channel_statistics(family, [secret, *null_keys], queries, answers)["suspect"]
    return {name: rank_test(g[0], g[1:]) for name, g in stats.items()}
