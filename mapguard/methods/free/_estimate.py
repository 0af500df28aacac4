"""The estimated source-accuracy drop of a source-free mask, with an interval.

Signals: the disagreement rate ``d`` of the masked model ``f_M`` with the original ``f`` (their
argmax classes differ) on ``n`` held-out *boundary-aware* pseudo-source images (the held-out
pseudo-source plus fixed mixtures of two of its classes, :func:`boundary_probe`), and for SF-MAP
given labelled targets the *target transfer* ``t``: the original model's accuracy on the
held-out target probe (a target the source model already reads well lies close to the source,
and breaking it costs the source more).

Mapping (``docs/METHOD-free.md``, section 8): ``drop = slope * d + transfer_slope * max(0, t -
knot) + offset`` (without ``t``: the ``disagreement`` calibration, ``slope * d + offset``), with
an interval ``[slope * d_lo + ... - margin, slope * d_hi + ... + margin]`` clipped to ``[0, 1]``,
where ``[d_lo, d_hi]`` is the Wilson score interval of ``d`` (``n`` images, level
``confidence``) and ``margin`` the 90% quantile of the calibration's leave-one-pair-out
residuals. Assumptions: the relation is the same for every model and pair (empirical, fitted on
the benchmark's pairs; not a guarantee). :data:`CALIBRATION` says how the constants were
obtained.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from mapguard.methods.free._sources import step_generator
from mapguard.synthesis import class_mixtures

__all__ = ["CALIBRATION", "boundary_probe", "disagreement", "estimate_drop"]

#: The two calibrations (with and without the target transfer) and where they come from.
CALIBRATION: dict[str, dict[str, Any]] = {
    "transfer": {
        "slope": 0.0, "transfer_slope": 1.5045, "knot": 0.8, "offset": 0.0219, "margin": 0.1298,
        "source": "fitted on 24 SF-MAP runs (issue 17 benchmark: 12 pairs with sources mnist, "
        "mnistm and optdigits, 2 variants); least squares with non-negative coefficients (the "
        "disagreement's came out 0 next to the transfer); margin = 90% quantile of the "
        "leave-one-pair-out residuals; leave-one-pair-out estimate within 2 pts on 8 of 24",
    },
    "disagreement": {
        "slope": 0.1603, "transfer_slope": 0.0, "knot": 0.8, "offset": 0.0359, "margin": 0.0683,
        "source": "fitted on the same 24 SF-MAP runs, disagreement alone; leave-one-pair-out "
        "estimate within 2 pts on 6 of 24",
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


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def estimate_drop(
    d: float, n: int, *, transfer: float | None = None, confidence: float = 0.9
) -> dict[str, Any]:
    """The estimated source drop (a fraction) for disagreement ``d`` on ``n`` images (and the
    target transfer ``transfer`` when known)."""
    cal = CALIBRATION["transfer" if transfer is not None else "disagreement"]
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    lo, hi = _wilson(d, n, z)
    shift = cal["offset"] + cal["transfer_slope"] * max(0.0, (transfer or 0.0) - cal["knot"])

    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return {
        "estimate": clip(cal["slope"] * d + shift),
        "low": clip(min(cal["slope"] * lo, cal["slope"] * hi) + shift - cal["margin"]),
        "high": clip(max(cal["slope"] * lo, cal["slope"] * hi) + shift + cal["margin"]),
        "confidence": confidence,
        "disagreement": d,
        "n": n,
        "target_transfer": transfer,
        "calibration": cal["source"],
    }
