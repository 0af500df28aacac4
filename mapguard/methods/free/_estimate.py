"""The estimated source-accuracy drop of a source-free mask, with an interval.

Signal: the disagreement rate ``d`` of the masked model ``f_M`` with the original ``f`` (their
argmax classes differ) on ``n`` held-out *boundary-aware* pseudo-source images (the held-out
pseudo-source plus fixed mixtures of two of its classes, :func:`boundary_probe`).

Mapping (``docs/METHOD-free.md``, section 7): ``drop = slope * d + offset``, with an interval
``[slope * d_lo + offset - margin, slope * d_hi + offset + margin]`` clipped to ``[0, 1]``, where
``[d_lo, d_hi]`` is the Wilson score interval of ``d`` (``n`` images, level ``confidence``) and
``margin`` the residual allowance of the calibration. Assumptions: (i) the real source's images
flip in proportion to the boundary-aware pseudo-source's (the same ``slope`` for every model and
pair: an empirical, not a guaranteed relation); (ii) an image whose class does not change keeps
its correctness, so the real drop is at most the real disagreement rate.
The constants come from :data:`CALIBRATION` (its ``source`` says how they were obtained).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mapguard.methods.free._sources import step_generator
from mapguard.synthesis import class_mixtures

__all__ = ["CALIBRATION", "boundary_probe", "disagreement", "estimate_drop"]

#: ``slope``, ``offset`` and ``margin`` of the mapping, and where they come from.
CALIBRATION: dict[str, Any] = {
    "slope": 1.0,
    "offset": 0.0,
    "margin": 0.02,
    "source": "prior: drop ~ disagreement (uncalibrated; assumption (ii) as an equality)",
}


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


def estimate_drop(d: float, n: int, *, confidence: float = 0.9) -> dict[str, Any]:
    """The estimated source drop (a fraction) for disagreement ``d`` on ``n`` images."""
    cal = CALIBRATION
    z = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}.get(confidence, 1.6449)
    lo, hi = _wilson(d, n, z)

    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return {
        "estimate": clip(cal["slope"] * d + cal["offset"]),
        "low": clip(cal["slope"] * lo + cal["offset"] - cal["margin"]),
        "high": clip(cal["slope"] * hi + cal["offset"] + cal["margin"]),
        "confidence": confidence,
        "disagreement": d,
        "n": n,
        "calibration": cal["source"],
    }
