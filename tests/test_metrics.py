"""ST-D and the protection metrics: range, edge cases, validation."""

from __future__ import annotations

import math

import pytest

from mapguard._errors import ConfigError
from mapguard.metrics import protection_metrics, source_retention, st_d, target_degradation


def test_perfect_protection_scores_one():
    assert st_d(source_before=0.98, source_after=0.98, target_before=0.6, target_after=0.1) == 1.0
    # below chance after protection counts as fully degraded (clipped), not more than 1
    assert st_d(source_before=0.98, source_after=0.99, target_before=0.6, target_after=0.0) == 1.0


def test_either_side_at_zero_gives_zero():
    # untouched model: nothing degraded
    assert st_d(source_before=0.98, source_after=0.98, target_before=0.6, target_after=0.6) == 0.0
    # collapsed model: target at chance but source at chance too
    assert st_d(source_before=0.98, source_after=0.1, target_before=0.6, target_after=0.1) == 0.0
    # target got *better*: degradation clips at 0
    assert st_d(source_before=0.98, source_after=0.98, target_before=0.6, target_after=0.7) == 0.0


def test_harmonic_mean_of_retention_and_degradation():
    r = source_retention(0.9, 0.8, num_classes=10)
    d = target_degradation(0.5, 0.3, num_classes=10)
    assert r == pytest.approx(0.7 / 0.8) and d == pytest.approx(0.2 / 0.4)
    got = st_d(source_before=0.9, source_after=0.8, target_before=0.5, target_after=0.3)
    assert got == pytest.approx(2 * r * d / (r + d))
    assert min(r, d) <= got <= max(r, d)  # a mean: neither side can be traded away


def test_uninformative_target_has_no_st_d():
    assert target_degradation(0.1, 0.05, num_classes=10) is None  # at chance before: nothing to do
    assert st_d(source_before=0.98, source_after=0.9, target_before=0.08, target_after=0.05) is None


def test_several_targets_average_their_degradations_skipping_uninformative():
    got = st_d(
        source_before=0.98, source_after=0.98, target_before=[0.6, 0.5, 0.05],
        target_after=[0.1, 0.3, 0.05],
    )  # fmt: skip
    d = (1.0 + 0.5) / 2
    assert got == pytest.approx(2 * d / (1 + d))


def test_chance_depends_on_the_class_count():
    # 2 classes: chance 0.5, so 0.55 -> 0.5 is full degradation
    assert target_degradation(0.55, 0.5, num_classes=2) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source_before": 1.5}, "source_before"),
        ({"source_after": math.nan}, "source_after"),
        ({"source_before": 0.05}, "not above chance"),
        ({"target_before": [0.5, 0.4], "target_after": [0.1]}, "same, non-zero length"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_values_are_refused_with_the_value(kwargs, match):
    args = {"source_before": 0.9, "source_after": 0.9, "target_before": 0.5, "target_after": 0.1}
    with pytest.raises(ConfigError, match=match):
        st_d(**(args | kwargs))


def test_protection_metrics_drops_and_json():
    m = protection_metrics(
        source="a", source_before=0.98, source_after=0.97, targets={"b": (0.6, 0.1)},
        others={"c": (0.7, 0.2)}, pruned_fraction=0.03, num_classes=10,
    )  # fmt: skip
    d = m.to_dict()
    assert d["source_drop"] == pytest.approx(0.01) and d["targets"]["b"]["drop"] == pytest.approx(
        0.5
    )
    assert d["others"]["c"]["after"] == 0.2 and d["st_d"] == pytest.approx(m.st_d)
    with pytest.raises(ConfigError, match="accuracy on c"):
        protection_metrics(
            source="a", source_before=0.98, source_after=0.97, targets={},
            others={"c": (0.7, 1.2)}, pruned_fraction=0.0, num_classes=10,
        )  # fmt: skip
