"""Fake-secret calibration: how often would a random key be 'evidenced'?"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from verification._errors import VerificationError
from verification._jsonsafe import jsonsafe
from verification._stats.parametric import TAIL_MODELS, parametric_tail_test
from verification._stats.rank import combined_rank_test

__all__ = ["CalibrationResult", "fake_secret_calibration"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CalibrationResult:
    """Result of :func:`fake_secret_calibration`.

    Attributes:
        alphas: The significance levels examined.
        n_trials: Number of fake secrets (= null keys per secret, ``m``).
        exact_fraction: Per alpha, fraction of fake secrets with exact p-value ``<= alpha``.
        parametric_fraction: Same for the parametric p-values (``None`` without a model or
            when every fit was degenerate; degenerate fits count as not significant).
        exact_pvalues: The exact p-value of every fake secret.
        parametric_pvalues: The parametric p-value of every fake secret (``None`` if degenerate).
        model: The parametric model, or ``None``.
        method: Description.
    """

    alphas: tuple[float, ...]
    n_trials: int
    exact_fraction: tuple[float, ...]
    parametric_fraction: tuple[float | None, ...]
    exact_pvalues: tuple[float, ...]
    parametric_pvalues: tuple[float | None, ...]
    model: str | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return jsonsafe(self)


def _calibration_iv(
    null_stats_matrix: object, alphas: object, model: object
) -> tuple[np.ndarray, tuple[float, ...]]:
    mat = np.asarray(null_stats_matrix, dtype=np.float64)
    mat = mat[None] if mat.ndim == 1 else mat
    if mat.ndim != 2 or mat.shape[1] < 3 or not np.isfinite(mat).all():
        raise VerificationError(
            f"null_stats_matrix must be finite, [m] or [k, m] with m >= 3; got shape {mat.shape}"
        )
    levels = tuple(float(a) for a in alphas)  # type: ignore[attr-defined]
    if not levels or any(not 0 < a < 1 for a in levels):
        raise VerificationError(f"alphas must be non-empty, each in (0, 1); got {levels}")
    if model is not None and model not in TAIL_MODELS:
        choices = ", ".join(TAIL_MODELS)
        raise VerificationError(f"model must be None or one of {choices}; got {model!r}")
    return mat, levels


def _parametric_fake(
    mat: np.ndarray, j: int, model: str, trials: int | None, alternative: str
) -> float | None:
    """Combined parametric p of column ``j`` against the rest: ``(max_i p_i) ** k``."""
    rest = np.delete(mat, j, axis=1)
    ps = [
        parametric_tail_test(
            mat[i, j], rest[i], model=model, trials=trials, alternative=alternative
        ).pvalue
        for i in range(mat.shape[0])
    ]
    return None if any(p is None for p in ps) else max(ps) ** len(ps)  # type: ignore[type-var]


def fake_secret_calibration(
    null_stats_matrix: np.ndarray | Sequence[Sequence[float]],
    alphas: Sequence[float] = (1e-3, 1e-2, 5e-2),
    *,
    model: str | None = "betabinom",
    trials: int | None = None,
    alternative: str = "greater",
    ties: str = "conservative",
    rng: np.random.Generator | int | None = None,
) -> CalibrationResult:
    """Use each null key in turn as a fake secret against the others; count false evidence.

    For column ``j`` of a ``[k, m]`` matrix (row ``i``: the null statistics of secret ``i``'s
    keys), the fake secrets are ``matrix[:, j]`` and each is ranked against the other ``m - 1``
    keys of its row by :func:`combined_rank_test`. The parametric counterpart combines the
    per-row tail p-values as ``(max_i p_i) ** k`` (exact for continuous independent uniforms).
    A calibrated test gives a fraction ``<= alpha`` up to binomial noise; the exact test is so
    by construction (its p-values cannot go below ``1 / m``), the parametric one only if the
    fitted family is right.

    Args:
        null_stats_matrix: ``[m]`` or ``[k, m]`` null statistics.
        alphas: Levels at which to report the fraction of ``p <= alpha``.
        model: Parametric model name (see :func:`parametric_tail_test`) or ``None``.
        trials: ``trials`` for the ``betabinom`` model.
        alternative, ties, rng: As in :func:`combined_rank_test`.
    """
    mat, levels = _calibration_iv(null_stats_matrix, alphas, model)
    m = mat.shape[1]
    rng = np.random.default_rng(rng) if ties == "randomized" else rng
    exact = np.array(
        [
            combined_rank_test(
                mat[:, j],
                list(np.delete(mat, j, axis=1)),
                alternative=alternative,
                ties=ties,
                rng=rng,
            ).pvalue
            for j in range(m)
        ]
    )
    param = [
        None if model is None else _parametric_fake(mat, j, model, trials, alternative)
        for j in range(m)
    ]
    usable = model is not None and any(p is not None for p in param)
    return CalibrationResult(
        alphas=levels,
        n_trials=m,
        exact_fraction=tuple(float(np.mean(exact <= a)) for a in levels),
        parametric_fraction=tuple(
            float(np.mean([p is not None and p <= a for p in param])) if usable else None
            for a in levels
        ),
        exact_pvalues=tuple(float(p) for p in exact),
        parametric_pvalues=tuple(param),
        model=model,
        method=f"fake-secret calibration: each of {m} null keys (per secret) against the other "
        f"{m - 1}",
    )
