"""Channels on natural inputs that a clean-data student inherits (experimental): the keyed
cosine tilt and keyed pair preferences.

Not yet part of the committed analysis (``protocols.analysis``): the benchmark
``benchmarks/inherited_channel.py`` measures it, and docs/ROBUSTNESS.md says what remains before
``mapguard verify`` may use it. See ``verification._tilt`` for the definition.

Example:
    >>> import numpy as np
    >>> from verification.tilt import CosineTiltFamily, lowfreq_features
    >>> from verification.triggers import random_secret
    >>> family = CosineTiltFamily(num_classes=10)
    >>> key = family.derive(random_secret(np.random.default_rng(0)))
    >>> key.directions.shape, 0.5 <= key.omega <= 1.0
    ((27, 10), True)
    >>> lowfreq_features(np.zeros((2, 3, 64, 64), np.uint8), grid=8, order=3).shape
    (2, 27)
"""

from verification._tilt.family import TILT_INFO, CosineTiltFamily, TiltKey
from verification._tilt.features import dct_basis, lowfreq_features
from verification._tilt.preference import (
    PREFERENCE_INFO,
    PairPreferenceFamily,
    PreferenceKey,
    PreferenceReference,
    preference_values,
)
from verification._tilt.statistic import (
    TiltReference,
    labels_statistic,
    probs_statistic,
    tilt_values,
)
from verification._tilt.test import TiltQueries, channel_statistics, tilt_test

__all__ = [
    "PREFERENCE_INFO",
    "TILT_INFO",
    "CosineTiltFamily",
    "PairPreferenceFamily",
    "PreferenceKey",
    "PreferenceReference",
    "TiltKey",
    "TiltQueries",
    "TiltReference",
    "dct_basis",
    "channel_statistics",
    "labels_statistic",
    "lowfreq_features",
    "preference_values",
    "probs_statistic",
    "tilt_test",
    "tilt_values",
]
