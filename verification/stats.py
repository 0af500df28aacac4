"""Hypothesis tests for watermark verification, in the style of ``scipy.stats``.

The verdict rests on exact rank tests: under H0 ("the suspect was made without knowledge of the
secret") the secret keys are exchangeable with null keys drawn from the same trigger family, so
their ranks among them are uniform. ``pooled_rank_sum_test`` ranks all keys together and sums
the secrets' ranks (the test new commitments fix by default); ``pooled_min_test`` ranks all keys
together and decides on the weakest secret; ``combined_rank_test`` ranks each secret among its
own null keys. ``POOLED_TESTS`` maps the committed names of the pooled tests to them.
Parametric tail fits are *supplementary* only.

Example:
    >>> import numpy as np
    >>> from verification.stats import combined_rank_test, pooled_min_test, rank_test
    >>> rank_test(0.9, np.linspace(0.1, 0.3, 99)).pvalue
    0.01
    >>> res = combined_rank_test([0.9, 0.8, 0.85], [np.linspace(0.1, 0.3, 99)] * 3)
    >>> res.ranks, f"{res.pvalue:.0e}"
    ((1, 1, 1), '1e-06')
    >>> pooled = pooled_min_test([0.9, 0.8, 0.85], np.linspace(0.1, 0.3, 297))
    >>> pooled.count, f"{pooled.pvalue:.1e}"
    (3, '2.2e-07')
"""

from __future__ import annotations

from verification._stats.calibration import CalibrationResult, fake_secret_calibration
from verification._stats.effect import EffectSize, effect_size
from verification._stats.parametric import TAIL_MODELS, TailFitResult, parametric_tail_test
from verification._stats.pooled import PooledTestResult, pooled_min_test
from verification._stats.rank import (
    CombinedRankTestResult,
    RankTestResult,
    combined_rank_test,
    rank_test,
)
from verification._stats.ranksum import pooled_rank_sum_test
from verification._stats.validation import ALTERNATIVES, TIES

#: The pooled tests by the name a commitment gives them (``protocols.analysis.POOLED_TESTS``).
POOLED_TESTS = {"pooled-min": pooled_min_test, "pooled-rank-sum": pooled_rank_sum_test}

__all__ = [
    "ALTERNATIVES",
    "POOLED_TESTS",
    "TAIL_MODELS",
    "TIES",
    "CalibrationResult",
    "CombinedRankTestResult",
    "EffectSize",
    "PooledTestResult",
    "RankTestResult",
    "TailFitResult",
    "combined_rank_test",
    "effect_size",
    "fake_secret_calibration",
    "parametric_tail_test",
    "pooled_min_test",
    "pooled_rank_sum_test",
    "rank_test",
]
