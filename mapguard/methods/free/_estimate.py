"""The estimated source-accuracy drop of a source-free mask, with an interval.

Two signals, both measured on the *learned mask* (nothing of the source is read):

* **collateral** (SF-MAP with labelled targets, the default there): ``c = t * max(0, t - a)``,
  where ``t`` is the original model's accuracy on the held-out target probe (the *target
  transfer*: how well the source model already reads the target) and ``a`` the masked model's
  accuracy on the same probe. ``t - a`` is what the mask took from the target; the factor ``t``
  says how much of that was knowledge the target shares with the source, so the source loses a
  share of it. ``drop = slope * c + offset``.
* **disagreement** (DF-MAP, unlabelled targets): the rate ``d`` at which the masked model's and
  the original's argmax classes differ on ``n`` held-out *boundary-aware* pseudo-source images
  (the held-out pseudo-source plus fixed mixtures of two of its classes, :func:`boundary_probe`).
  ``drop = slope * d + offset``. Weak: on the benchmark pairs ``d`` hardly tracked the real drop
  (the pseudo-source sits far from the real source's fragile images).

Interval: ``estimate -/+ (q * (estimate + floor) + w)`` clipped to ``[0, 1]``, where ``q`` is the
90% quantile of the calibration's leave-one-pair-out residuals relative to ``prediction +
floor`` (errors grow with the drop) and ``w`` the half-width of the signal's own sampling
interval mapped through the slope (Wilson score interval of ``d`` on ``n`` images, or of ``a``
on the ``probe_n`` probe images; level ``confidence``). Assumptions: one relation for every
model and pair (empirical, fitted on the benchmark's pairs; not a guarantee). :data:`CALIBRATION`
says how the constants were obtained (``docs/METHOD-free.md``, section 8).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from mapguard.methods.free._sources import step_generator
from mapguard.synthesis import class_mixtures

__all__ = [
    "CALIBRATION",
    "boundary_probe",
    "collateral",
    "disagreement",
    "estimate_drop",
    "paired_drop",
]

#: The two calibrations and where their constants come from (``benchmarks/_free_tables.py``,
#: ``calibrate``; printed by ``python -m benchmarks.authorization_free --report-only``).
CALIBRATION: dict[str, dict[str, Any]] = {
    "collateral": {
        "slope": 0.3203, "offset": -0.0246, "relative_margin": 0.733, "floor": 0.02,
        "source": "fitted on 66 SF-MAP runs (issue 17 benchmark after session 7: all 20 pairs, "
        "variants base, boundary, term, term-goal); least squares, non-negative signal "
        "coefficient; relative margin = 90% quantile of |leave-one-pair-out residual| / "
        "(prediction + floor); leave-one-pair-out estimate within 2 pts on 31 of 66, interval "
        "covers 59 of 66",
    },
    "disagreement": {
        "slope": 0.8659, "offset": -0.0405, "relative_margin": 2.100, "floor": 0.02,
        "source": "fitted on the same 66 SF-MAP runs, disagreement alone (a weak signal, pulled "
        "by the plain pseudo-source's font-pair runs that lost 52-68 pts: leave-one-pair-out "
        "estimate within 2 pts on 24 of 66, interval covers 59 of 66)",
    },
}  # fmt: skip


def boundary_probe(x: torch.Tensor, y: torch.Tensor, *, per_image: int, seed: int) -> torch.Tensor:
    """The held-out images plus ``per_image`` fixed two-class mixtures per image."""
    if per_image <= 0 or len(x) < 2:
        return x
    gen = step_generator(seed, 0xB0B)
    return torch.cat([x, class_mixtures(x, y, per_image * len(x), gen)])


def disagreement(reference: torch.Tensor, masked: torch.Tensor) -> float:
    """Fraction of rows whose argmax class differs between two logit tensors."""
    return float((reference.argmax(1) != masked.argmax(1)).float().mean())


def collateral(transfer: float, target_after: float) -> float:
    """``t * max(0, t - a)``: the target accuracy the mask removed, weighted by the original
    model's accuracy ``t`` on the target (how much of the target it shares with the source)."""
    return transfer * max(0.0, transfer - target_after)


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def estimate_drop(
    d: float,
    n: int,
    *,
    transfer: float | None = None,
    target_after: float | None = None,
    probe_n: int = 0,
    confidence: float = 0.9,
) -> dict[str, Any]:
    """The estimated source drop (a fraction) of a mask.

    Args:
        d: disagreement rate on the held-out boundary set of ``n`` images.
        transfer: the original model's accuracy on the held-out target probe (labelled targets).
        target_after: the masked model's accuracy on that probe of ``probe_n`` images. With
            both, the ``collateral`` calibration is used, else the ``disagreement`` one.
        confidence: level of the signal's own sampling interval.
    """
    signal = "collateral" if transfer is not None and target_after is not None else "disagreement"
    cal = CALIBRATION[signal]
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    if signal == "collateral":
        value = collateral(transfer, target_after)
        lo_a, hi_a = _wilson(target_after, probe_n, z)
        lo, hi = collateral(transfer, hi_a), collateral(transfer, lo_a)
    else:
        value = d
        lo, hi = _wilson(d, n, z)
    estimate = max(0.0, cal["slope"] * value + cal["offset"])
    spread = cal["relative_margin"] * (estimate + cal["floor"])
    width = cal["slope"] * (hi - lo) / 2

    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return {
        "estimate": clip(estimate),
        "low": clip(estimate - spread - width),
        "high": clip(estimate + spread + width),
        "confidence": confidence,
        "signal": signal,
        "disagreement": d,
        "n": n,
        "target_transfer": transfer,
        "target_after": target_after,
        "calibration": cal["source"],
    }


def paired_drop(
    before: torch.Tensor, after: torch.Tensor, *, confidence: float = 0.9
) -> dict[str, Any]:
    """The accuracy loss ``p_before - p_after`` on the same images, with an interval.

    ``before`` / ``after``: boolean per-image correctness of the original and the masked model.
    Interval: Newcombe's hybrid score interval for a difference of *paired* proportions
    (Newcombe, Statistics in Medicine 1998, method 10: Wilson intervals of both proportions
    combined through the phi correlation of the 2x2 table, phi's numerator continuity-corrected),
    at level ``confidence``. It covers the probe's sampling error only, not how far the probe's
    images are from the real source.
    """
    b, a = before.bool().flatten(), after.bool().flatten()
    n = len(b)
    if n == 0 or len(a) != n:
        raise ValueError(f"need two equally long non-empty correctness vectors, got {n}, {len(a)}")
    both, only_b = int((b & a).sum()), int((b & ~a).sum())
    only_a, neither = int((~b & a).sum()), int((~b & ~a).sum())
    p1, p2 = (both + only_b) / n, (both + only_a) / n
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    (l1, u1), (l2, u2) = _wilson(p1, n, z), _wilson(p2, n, z)
    den = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    num = both * neither - only_b * only_a
    num = max(0.0, num - n / 2) if num > 0 else num
    phi = num / math.sqrt(den) if den > 0 else 0.0
    theta = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return {
        "estimate": theta,
        "low": max(-1.0, theta - lower),
        "high": min(1.0, theta + upper),
        "confidence": confidence,
        "n": n,
        "before": p1,
        "after": p2,
        "table": [both, only_b, only_a, neither],
    }
