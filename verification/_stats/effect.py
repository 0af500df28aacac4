"""Effect size of the secret triggers over the null triggers, with a bootstrap interval."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from verification._errors import VerificationError
from verification._jsonsafe import jsonsafe
from verification._stats.validation import as_rng, finite_scalar

__all__ = ["EffectSize", "effect_size"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EffectSize:
    """Effect ``mean_i [g(secret_i) - mean_j g(null_ij)]`` with a confidence interval.

    Attributes:
        estimate: The point estimate (same unit as the statistic ``g``).
        ci_low, ci_high: Percentile-bootstrap interval bounds.
        confidence_level: Coverage the interval aims at.
        method: How the interval was computed.
    """

    estimate: float
    ci_low: float
    ci_high: float
    confidence_level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return jsonsafe(self)


def _effect_size_iv(
    secret_values: object, null_values: object, confidence_level: object, n_resamples: object
) -> tuple[np.ndarray, np.ndarray, float, int]:
    sec = np.asarray(secret_values, dtype=np.float64)
    nul = np.asarray(null_values, dtype=np.float64)
    shapes_ok = sec.ndim == 2 and nul.ndim == 3 and nul.shape[::2] == sec.shape
    if not shapes_ok:
        raise VerificationError(
            "secret_values must be [k, n] and null_values [k, m, n] (per-image contributions); "
            f"got {list(sec.shape)} and {list(nul.shape)}"
        )
    if sec.shape[1] < 1 or nul.shape[1] < 1:
        raise VerificationError(f"need n >= 1 images and m >= 1 null keys, got {list(nul.shape)}")
    if not (np.isfinite(sec).all() and np.isfinite(nul).all()):
        raise VerificationError("per-image contributions must be finite")
    level = finite_scalar("confidence_level", confidence_level)
    if not 0 < level < 1:
        raise VerificationError(f"confidence_level must be in (0, 1), got {level}")
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 100:
        raise VerificationError(f"n_resamples must be an integer >= 100, got {n_resamples!r}")
    return sec, nul, level, n_resamples


def effect_size(
    secret_values: np.ndarray,
    null_values: np.ndarray,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = 2000,
    rng: np.random.Generator | int | None = None,
) -> EffectSize:
    """Effect size of ``k`` secret triggers over their null triggers, with a bootstrap CI.

    ``g`` of a key is the mean over the ``n`` verification images of a per-image contribution
    (e.g. 1 if the image is right clean and wrong under the trigger). The estimate is
    ``mean_i [g(secret_i) - mean_j g(null_ij)]``. The interval is a percentile bootstrap that
    resamples the three sources of variation: the images (with replacement, shared by all keys,
    as in the real queries), independently per secret the null keys, and the secrets themselves
    (each secret with its own null keys is one unit, drawn ``k`` times with replacement): keys
    differ in strength on any model, so an interval over images alone is too narrow (it excluded
    0 on innocent models). With ``k = 1`` the key-to-key part cannot be estimated and the
    interval covers images and null keys only.

    Assumptions: images are exchangeable draws from the verification distribution and null keys
    iid from the family; the percentile interval is approximate (first-order accurate).

    Args:
        secret_values: ``[k, n]`` per-image contributions of the secret triggers.
        null_values: ``[k, m, n]`` per-image contributions of the null triggers.
        confidence_level: Interval coverage, in (0, 1).
        n_resamples: Bootstrap resamples (>= 100).
        rng: Generator or seed.

    References:
        Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap, ch. 13.
    """
    sec, nul, level, n_resamples = _effect_size_iv(
        secret_values, null_values, confidence_level, n_resamples
    )
    k, m, n = nul.shape
    gen = as_rng(rng)
    estimate = float(np.mean(sec.mean(axis=1) - nul.mean(axis=(1, 2))))
    img_w = gen.multinomial(n, np.full(n, 1.0 / n), size=n_resamples) / n  # [B, n]
    key_w = gen.multinomial(m, np.full(m, 1.0 / m), size=(n_resamples, k)) / m  # [B, k, m]
    sec_b = img_w @ sec.T  # [B, k]
    null_b = np.einsum("bkm,bkm->bk", key_w, np.einsum("bn,kmn->bkm", img_w, nul))
    unit_w = gen.multinomial(k, np.full(k, 1.0 / k), size=n_resamples) / k  # [B, k]
    boot = np.einsum("bk,bk->b", unit_w, sec_b - null_b)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    method = (
        f"percentile bootstrap over images, null keys and secrets ({n_resamples} resamples); "
        "effect = g(secret) - mean g(null), averaged over secrets"
    )
    return EffectSize(
        estimate=estimate,
        ci_low=float(low),
        ci_high=float(high),
        confidence_level=level,
        method=method,
    )
