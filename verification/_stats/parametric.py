"""Parametric tail p-values from a distribution fitted to the null statistics (supplementary).

These p-values extrapolate past the smallest null value, so they can go below the rank test's
floor ``1 / (m + 1)`` — but only as far as the fitted family is right about the tail, which
nothing in the design guarantees. They are therefore reported as *supplementary*; the verdict
uses the exact rank test only. :func:`fake_secret_calibration` measures how honest they are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from verification._errors import VerificationError
from verification._jsonsafe import jsonsafe
from verification._stats.validation import ALTERNATIVES, check_choice, finite_scalar, finite_vector

__all__ = ["TAIL_MODELS", "TailFitResult", "parametric_tail_test"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TailFitResult:
    """Result of :func:`parametric_tail_test`.

    Attributes:
        statistic: The secret's statistic.
        pvalue: Tail probability under the fitted null, or ``None`` if the fit is degenerate.
        model: Name of the fitted family.
        params: Fitted parameters.
        alternative: As in the rank tests.
        supplementary: Always ``True``: never use this p-value for a verdict.
        note: Why ``pvalue`` is ``None``, else empty.
    """

    statistic: float
    pvalue: float | None
    model: str
    params: dict[str, float]
    alternative: str
    supplementary: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return jsonsafe(self)


# A model maps (null values, trials) to (params, sf, cdf) or raises _Degenerate.
_Tail = tuple[dict[str, float], Callable[[float], float], Callable[[float], float]]


LOG_CLIP = 30.0  # |log a|, |log b| <= 30: beyond that the fit is binomial for all purposes


class _Degenerate(Exception):
    """The null values do not identify the model's parameters."""


def _fit_normal(nulls: np.ndarray, trials: int | None) -> _Tail:
    mu, sd = float(nulls.mean()), float(nulls.std(ddof=1)) if nulls.size > 1 else 0.0
    if sd <= 0:
        raise _Degenerate("all null statistics are equal")
    params = {"mean": mu, "sd": sd}
    return params, lambda x: stats.norm.sf(x, mu, sd), lambda x: stats.norm.cdf(x, mu, sd)


def _beta_moments(mean: float, var: float) -> tuple[float, float]:
    if not (0 < mean < 1) or var <= 0 or mean * (1 - mean) <= var:
        raise _Degenerate(f"moments (mean {mean:.4g}, var {var:.4g}) fit no beta distribution")
    common = mean * (1 - mean) / var - 1
    if common <= 0:
        raise _Degenerate(f"moments (mean {mean:.4g}, var {var:.4g}) fit no beta distribution")
    return mean * common, (1 - mean) * common


def _fit_beta(nulls: np.ndarray, trials: int | None) -> _Tail:
    if nulls.min() < 0 or nulls.max() > 1:
        raise _Degenerate("beta model needs statistics in [0, 1]")
    a, b = _beta_moments(float(nulls.mean()), float(nulls.var(ddof=1)))
    params = {"a": a, "b": b}
    return params, lambda x: stats.beta.sf(x, a, b), lambda x: stats.beta.cdf(x, a, b)


def _trigamma(x: np.ndarray | float) -> np.ndarray:
    return special.zeta(2.0, x)  # trigamma(x) = zeta(2, x); cheaper than polygamma's wrapper


def _betabinom_loglik(theta: np.ndarray, counts: np.ndarray, n: int) -> float:
    a, b = np.exp(theta)
    return float(
        special.betaln(counts + a, n - counts + b).sum() - counts.size * special.betaln(a, b)
    )


def _betabinom_newton(theta: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """One Newton direction for the log-likelihood in ``theta = (log a, log b)``."""
    a, b = np.exp(theta)
    m, x = counts.size, counts
    c1 = m * (special.digamma(a + b) - special.digamma(a + b + n))
    c2 = m * (_trigamma(a + b) - _trigamma(a + b + n))
    da = special.digamma(x + a).sum() - m * special.digamma(a) + c1
    db = special.digamma(n - x + b).sum() - m * special.digamma(b) + c1
    daa = _trigamma(x + a).sum() - m * _trigamma(a) + c2
    dbb = _trigamma(n - x + b).sum() - m * _trigamma(b) + c2
    grad = np.array([a * da, b * db])
    hess = np.array([[a * a * daa + a * da, a * b * c2], [a * b * c2, b * b * dbb + b * db]])
    if np.all(np.linalg.eigvalsh(hess) < 0):
        return -np.linalg.solve(hess, grad)
    return grad / max(1.0, float(np.abs(grad).max()))  # not concave here: gradient ascent


def _betabinom_mle(counts: np.ndarray, n: int, theta: np.ndarray) -> np.ndarray:
    """Damped Newton ascent of the beta-binomial log-likelihood, ``|theta| <= LOG_CLIP``."""
    best = _betabinom_loglik(theta, counts, n)
    for _ in range(100):
        step = _betabinom_newton(theta, counts, n)
        for scale in 0.5 ** np.arange(30):
            cand = np.clip(theta + scale * step, -LOG_CLIP, LOG_CLIP)
            value = _betabinom_loglik(cand, counts, n)
            if value >= best:
                break
        else:
            return theta
        converged = abs(value - best) < 1e-10 * (1 + abs(best))
        theta, best = cand, value
        if converged:
            break
    return theta


def _fit_betabinom(nulls: np.ndarray, trials: int | None) -> _Tail:
    if trials is None or trials < 1:
        raise VerificationError(f"the betabinom model needs trials >= 1, got {trials!r}")
    if np.any(nulls != np.round(nulls)) or nulls.min() < 0 or nulls.max() > trials:
        raise VerificationError(f"betabinom needs integer counts in [0, {trials}]")
    mean, var = float(nulls.mean()) / trials, float(nulls.var(ddof=1)) / trials**2
    # Method of moments on the proportions as the start; MLE refines it.
    start = np.log(_beta_moments(mean, max(var, mean * (1 - mean) / trials * 1.01)))
    theta = _betabinom_mle(nulls, trials, start)
    a, b = (float(v) for v in np.exp(theta))
    params = {"a": a, "b": b, "trials": float(trials)}
    return (
        params,
        lambda x: stats.betabinom.sf(x - 1, trials, a, b),
        lambda x: stats.betabinom.cdf(x, trials, a, b),
    )


TAIL_MODELS: dict[str, Callable[[np.ndarray, int | None], _Tail]] = {
    "betabinom": _fit_betabinom,
    "beta": _fit_beta,
    "normal": _fit_normal,
}


def _tail_iv(
    secret_stat: object, null_stats: object, model: object, alternative: object
) -> tuple[float, np.ndarray, str, str]:
    stat = finite_scalar("secret_stat", secret_stat)
    nulls = finite_vector("null_stats", null_stats, min_len=2)
    name = check_choice("model", model, tuple(TAIL_MODELS))
    return stat, nulls, name, check_choice("alternative", alternative, ALTERNATIVES)


def parametric_tail_test(
    secret_stat: float,
    null_stats: Sequence[float] | np.ndarray,
    *,
    model: str = "betabinom",
    trials: int | None = None,
    alternative: str = "greater",
) -> TailFitResult:
    """Fit ``model`` to the null statistics and return the secret's tail probability.

    Null hypothesis and assumption: the secret's statistic is a draw from the same distribution
    as the null statistics *and* that distribution belongs to ``model``. The second assumption is
    untestable in the far tail, so the result is supplementary (see module docstring).

    Models:
        ``betabinom``: statistics are integer counts out of ``trials`` (e.g. images right clean
        and wrong under the trigger, out of the images right clean); maximum-likelihood fit.
        Over-dispersion across keys is what the beta mixing absorbs. ``P(X >= x)``.
        ``beta``: statistics in ``[0, 1]``; method-of-moments fit.
        ``normal``: mean and sample s.d. Known to be anti-conservative here; included so that
        :func:`fake_secret_calibration` can show it.

    Returns:
        :class:`TailFitResult` (``pvalue`` None with a ``note`` when the fit is degenerate,
        e.g. all null statistics equal).

    References:
        Skellam, J. G. (1948). A probability distribution derived from the binomial
        distribution by regarding the probability of success as variable between the sets of
        trials. JRSS B 10, 257-261.
    """
    stat, nulls, name, alt = _tail_iv(secret_stat, null_stats, model, alternative)
    try:
        params, sf, cdf = TAIL_MODELS[name](nulls, trials)
    except _Degenerate as exc:
        return TailFitResult(
            statistic=stat, pvalue=None, model=name, params={}, alternative=alt, note=str(exc)
        )
    upper, lower = float(sf(stat)), float(cdf(stat))
    pvalue = {"greater": upper, "less": lower, "two-sided": min(1.0, 2 * min(upper, lower))}[alt]
    if not math.isfinite(pvalue):
        pvalue, note = None, "non-finite tail probability"
    else:
        note = ""
    return TailFitResult(
        statistic=stat, pvalue=pvalue, model=name, params=params, alternative=alt, note=note
    )
