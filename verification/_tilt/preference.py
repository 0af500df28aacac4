"""The ``pair_preference`` key family: keyed preferences between classes at their boundaries.

Why a second family: the cosine tilt's labels statistic is dominated by its per-class phases (at
small ``omega`` the tilt is nearly a constant per class), i.e. by a key-chosen *class order*
with about ``C`` degrees of freedom; even an ideal teacher, whose answers follow the secret
exactly, ranks the secret only about 4 standard deviations above the null keys (measured:
docs/ROBUSTNESS.md, "Issue 15 (session 8)"). Here the key says, for every *pair* of classes and
every smooth region of input space, which of the two should win where they meet:

    pref_key(x; a, b) = sum_r w_r(x) P[r, a, b] / sqrt(R),   w_0 = 1,
    w_r(x) = tanh(sharpness * (f(x) - mu) / sd . U_r / s_r)   for r = 1 .. R - 1,

with ``P[r]`` antisymmetric ``C x C`` (``P[r, a, b] = -P[r, b, a]``), ``U_r`` unit vectors over the
``D`` standardised low-frequency features ``f`` (``verification._tilt.features``; ``mu``, ``sd``
per feature and ``s_r``, the standard deviation of the projection, on the committed natural
images). The owner teaches ``logits(x) + eps * sum_d pref(x; c, d) p_d(x)`` (``p`` the
original model's probabilities), which at a boundary between ``a`` and ``b`` (``p_a = p_b =
1/2``) shifts the gap ``a - b`` by exactly ``eps * pref(x; a, b)``. About ``R * C (C - 1) / 2``
degrees of freedom: an ideal teacher reaches z = 9-10 with R = 4 where the cosine tilt stays
near 4.

Byte layout: ``stream = HKDF-SHA256(secret, salt=None, info=b"mapguard/channel/pair-preference/
v1", length=4 * 2 * (R * C (C - 1) / 2 + (R - 1) * D))``, read as big-endian unsigned 32-bit
``w_i``, ``u_i = (w_i + 0.5) / 2**32``, Box-Muller normals ``sqrt(-2 ln u_{2j}) cos(2 pi
u_{2j+1})``: the first ``R * C (C - 1) / 2`` fill ``P[r, a, b]`` for ``a < b`` (``r``, then ``a``,
then ``b`` ascending), the rest are ``U`` row-major ``[R - 1, D]``, each row scaled to unit norm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from verification._errors import TriggerError
from verification._tilt.features import LowFreqInput
from verification._triggers.hkdf import HKDF_MAX_LENGTH, hkdf_sha256
from verification._triggers.validation import check_secret

__all__ = [
    "PREFERENCE_INFO",
    "PairPreferenceFamily",
    "PreferenceKey",
    "PreferenceReference",
    "preference_values",
]

PREFERENCE_INFO = b"mapguard/channel/pair-preference/v1"


@dataclasses.dataclass(frozen=True)
class PreferenceKey:
    """One key (``prefs`` ``[R, C, C]``, ``splits`` ``[R - 1, D]``) or ``K`` stacked ones
    (``[K, R, C, C]``, ``[K, R - 1, D]``)."""

    prefs: np.ndarray
    splits: np.ndarray

    def stacked(self) -> PreferenceKey:
        if self.prefs.ndim == 4:
            return self
        return PreferenceKey(self.prefs[None], self.splits[None])


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairPreferenceFamily(LowFreqInput):
    """Public parameters, fixed before any secret is drawn.

    Attributes:
        num_classes: Classes of the model.
        regions: ``R``: one preference matrix for all inputs plus ``R - 1`` smooth splits.
        sharpness: Slope of the splits' ``tanh`` in standard deviations of the projection.
        grid, order: The features (as for ``cosine_tilt``).
    """

    num_classes: int
    regions: int = 4
    sharpness: float = 3.0
    grid: int = 8
    order: int = 3

    def __post_init__(self) -> None:
        for name, lo in (("num_classes", 2), ("regions", 1), ("grid", 2), ("order", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise TriggerError(f"pair_preference {name} must be an integer >= {lo}")
        if not isinstance(self.sharpness, int | float) or not 0 < self.sharpness <= 100:
            raise TriggerError("pair_preference sharpness must be in (0, 100]")
        if self.order > 2 * (self.grid - 1):
            raise TriggerError(f"pair_preference order {self.order} too high for grid {self.grid}")
        if 8 * self._normals() > HKDF_MAX_LENGTH:
            raise TriggerError("pair_preference parameters need more HKDF bytes than allowed")

    def _normals(self) -> int:
        c = self.num_classes
        return self.regions * c * (c - 1) // 2 + (self.regions - 1) * self.dim

    def to_dict(self) -> dict[str, Any]:
        return {"family": "pair_preference", "version": 1, **dataclasses.asdict(self)}

    def derive(self, secret: bytes) -> PreferenceKey:
        """The key of ``secret`` (byte layout in the module docstring)."""
        n = self._normals()
        stream = hkdf_sha256(check_secret(secret), info=PREFERENCE_INFO, length=8 * n)
        u = (np.frombuffer(stream, dtype=">u4").astype(np.float64) + 0.5) / 2.0**32
        normals = np.sqrt(-2.0 * np.log(u[0::2])) * np.cos(2.0 * math.pi * u[1::2])
        r, c, d = self.regions, self.num_classes, self.dim
        upper = np.triu_indices(c, k=1)
        prefs = np.zeros((r, c, c))
        m = len(upper[0])
        for i in range(r):
            prefs[i][upper] = normals[i * m : (i + 1) * m]
        prefs = prefs - prefs.transpose(0, 2, 1)
        splits = normals[r * m :].reshape(r - 1, d)
        splits = splits / np.maximum(np.linalg.norm(splits, axis=1, keepdims=True), 1e-300)
        return PreferenceKey(prefs=prefs, splits=splits)

    def derive_many(self, secrets: list[bytes]) -> PreferenceKey:
        """Keys of ``secrets`` stacked."""
        keys = [self.derive(s) for s in secrets]
        if not keys:
            raise TriggerError("derive_many needs at least one secret")
        return PreferenceKey(np.stack([k.prefs for k in keys]), np.stack([k.splits for k in keys]))


@dataclasses.dataclass(frozen=True)
class PreferenceReference:
    """Feature ``mean``/``std`` (``[D]``) on the committed natural images, and each key's split
    projections' standard deviation there (``proj_std`` ``[K, R - 1]``)."""

    mean: np.ndarray
    std: np.ndarray
    proj_std: np.ndarray

    @classmethod
    def from_features(cls, keys: PreferenceKey, natural: np.ndarray) -> PreferenceReference:
        natural = np.asarray(natural, dtype=np.float64)
        mean, std = natural.mean(axis=0), np.maximum(natural.std(axis=0), 1e-12)
        proj = np.einsum("nd,krd->knr", (natural - mean) / std, keys.stacked().splits)
        return cls(mean=mean, std=std, proj_std=np.maximum(proj.std(axis=1), 1e-12))


def region_weights(
    family: PairPreferenceFamily, keys: PreferenceKey, ref: PreferenceReference, feats: np.ndarray
) -> np.ndarray:
    """``[K, n, R]``: ``1`` and the ``R - 1`` splits' ``tanh`` values, over ``sqrt(R)``."""
    k = keys.stacked()
    z = np.einsum("nd,krd->knr", (np.asarray(feats) - ref.mean) / ref.std, k.splits)
    w = np.tanh(family.sharpness * z / ref.proj_std[:, None, :])
    ones = np.ones((*w.shape[:2], 1))
    return np.concatenate([ones, w], axis=2) / math.sqrt(family.regions)


def preference_values(
    family: PairPreferenceFamily,
    keys: PreferenceKey,
    ref: PreferenceReference,
    feats: np.ndarray,
    pairs: np.ndarray,
) -> np.ndarray:
    """``[K, n]``: ``pref_key(x_j; a_j, b_j)`` for boundary features ``[n, D]`` and candidate
    ``pairs`` ``[n, 2]``."""
    pairs = np.asarray(pairs)
    w = region_weights(family, keys, ref, feats)
    p = keys.stacked().prefs[:, :, pairs[:, 0], pairs[:, 1]]  # [K, R, n]
    return np.einsum("knr,krn->kn", w, p)
