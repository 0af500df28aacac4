"""The tilt's statistics for many keys at once.

For key ``K`` with directions ``A`` (``[D, C]``), phases ``phi`` and frequency ``omega``, the
tilt of class ``c`` on an image with features ``f`` is ``cos(omega * (f . A_c - m_c) / s_c +
phi_c)``, where ``m_c``, ``s_c`` are the mean and standard deviation of ``f . A_c`` over the
committed natural images (the same for the owner, who embeds it, and the arbiter).

- **labels** (committed boundary images ``x_j`` between classes ``a_j`` and ``b_j``):
  ``g = mean_j sigma_j (t_{a_j}(x_j) - t_{b_j}(x_j))`` with ``sigma_j = +1`` when the suspect
  says ``a_j``, ``-1`` when it says ``b_j``, ``0`` otherwise;
- **probs** (the same images): ``g = mean_j clip(log p_{a_j} - log p_{b_j}, +-10) (t_{a_j}(x_j)
  - t_{b_j}(x_j))``, the suspect's log-probability gap between the two candidates. (A first
  version correlated centred log-probabilities with the tilt on natural images: on a small model
  the natural variation of the logits swamped the keyed term, p = 0.64 on the marked model itself,
  where the boundary images, at which the original model's gap is zero, show it at once.)

Each is one fixed function of the key, the suspect's answers and committed data, so under H0
(a suspect built without the secret) the secret's and the null keys' statistics are
exchangeable and the rank test is exact, whatever the suspect does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from verification._tilt.family import TiltKey

__all__ = [
    "TiltReference",
    "labels_score",
    "labels_statistic",
    "pair_differences",
    "probs_score",
    "probs_statistic",
    "tilt_values",
]

LOGIT_CLIP = 10.0


@dataclasses.dataclass(frozen=True)
class TiltReference:
    """Per key and class projection mean and std (``[K, C]``) on the committed natural images."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_features(cls, keys: TiltKey, features: np.ndarray) -> TiltReference:
        proj = np.einsum("nd,kdc->knc", features, _stacked(keys).directions)
        return cls(mean=proj.mean(axis=1), std=np.maximum(proj.std(axis=1), 1e-12))


def _stacked(keys: TiltKey) -> TiltKey:
    if keys.directions.ndim == 3:
        return keys
    return TiltKey(keys.directions[None], keys.phases[None], np.array([keys.omega]))


def tilt_values(keys: TiltKey, ref: TiltReference, features: np.ndarray) -> np.ndarray:
    """Tilts ``[K, n, C]`` of ``features`` ``[n, D]`` (one key: ``K = 1``)."""
    k = _stacked(keys)
    proj = np.einsum("nd,kdc->knc", features, k.directions)
    z = (proj - ref.mean[:, None, :]) / ref.std[:, None, :]
    return np.cos(np.asarray(k.omega)[:, None, None] * z + k.phases[:, None, :])


def pair_differences(tilts: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``[K, n]``: ``t_{a_j}(x_j) - t_{b_j}(x_j)`` from boundary tilts ``[K, n, C]``."""
    pairs = np.asarray(pairs)
    j = np.arange(len(pairs))
    return tilts[:, j, pairs[:, 0]] - tilts[:, j, pairs[:, 1]]


def labels_score(diff: np.ndarray, pairs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[K]``: ``mean_j sigma_j diff[:, j]`` (``sigma_j`` +1 for answer ``a_j``, -1 for
    ``b_j``, 0 otherwise), for any family's keyed pair differences ``diff`` ``[K, n]``."""
    pairs, labels = np.asarray(pairs), np.asarray(labels)
    sign = (labels == pairs[:, 0]).astype(np.float64) - (labels == pairs[:, 1])
    return (diff * sign[None]).mean(axis=1)


def probs_score(
    diff: np.ndarray, pairs: np.ndarray, logprobs: np.ndarray, *, clip: float = LOGIT_CLIP
) -> np.ndarray:
    """``[K]``: ``mean_j clip(log p_a - log p_b) diff[:, j]`` from the suspect's
    log-probabilities ``[n, C]`` on the boundary images."""
    pairs = np.asarray(pairs)
    j = np.arange(len(pairs))
    lp = np.asarray(logprobs, dtype=np.float64)
    gap = np.clip(lp[j, pairs[:, 0]] - lp[j, pairs[:, 1]], -clip, clip)
    return (diff * gap[None]).mean(axis=1)


def labels_statistic(tilts: np.ndarray, pairs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[K]`` labels statistics from boundary tilts ``[K, n, C]``, candidate ``pairs`` ``[n,
    2]`` and the suspect's ``labels`` ``[n]``."""
    return labels_score(pair_differences(tilts, pairs), pairs, labels)


def probs_statistic(
    tilts: np.ndarray, pairs: np.ndarray, logprobs: np.ndarray, *, clip: float = LOGIT_CLIP
) -> np.ndarray:
    """``[K]`` probability statistics from boundary tilts ``[K, n, C]``, candidate ``pairs``
    and the suspect's log-probabilities ``[n, C]`` on the boundary images: the mean of
    ``clip(log p_a - log p_b) * (t_a - t_b)``."""
    return probs_score(pair_differences(tilts, pairs), pairs, logprobs, clip=clip)
