"""The drop estimate: which signal it uses, how the mask's effect on the target moves it, and
its interval (constants: ``CALIBRATION``, fitted by ``benchmarks/_free_tables.calibrate``)."""

from __future__ import annotations

import pytest

from mapguard.methods.free import CALIBRATION, estimate_drop
from mapguard.methods.free._estimate import collateral


def test_collateral_is_the_transfer_weighted_target_loss() -> None:
    assert collateral(0.9, 0.2) == pytest.approx(0.9 * 0.7)
    assert collateral(0.3, 0.5) == 0.0  # a mask that did not lower the target took nothing


def test_labelled_targets_use_the_collateral_signal_of_this_mask() -> None:
    # the same pair (same transfer), two masks: the one that took more from the target is
    # estimated to cost the source more -- the estimate depends on the learned mask
    light = estimate_drop(0.1, 200, transfer=0.9, target_after=0.6, probe_n=400)
    heavy = estimate_drop(0.1, 200, transfer=0.9, target_after=0.1, probe_n=400)
    assert light["signal"] == heavy["signal"] == "collateral"
    assert heavy["estimate"] > light["estimate"]
    cal = CALIBRATION["collateral"]
    assert heavy["estimate"] == pytest.approx(cal["slope"] * 0.9 * 0.8 + cal["offset"])
    for e in (light, heavy):
        assert 0.0 <= e["low"] <= e["estimate"] <= e["high"] <= 1.0
    # the interval widens with the estimate (errors grew with the drop on the benchmark pairs)
    assert heavy["high"] - heavy["low"] > light["high"] - light["low"]


def test_without_target_labels_the_disagreement_is_the_signal() -> None:
    e = estimate_drop(0.2, 200)
    cal = CALIBRATION["disagreement"]
    assert e["signal"] == "disagreement" and e["target_after"] is None
    assert e["estimate"] == pytest.approx(cal["slope"] * 0.2 + cal["offset"])
    # fewer held-out images: a wider sampling interval around the same estimate
    few = estimate_drop(0.2, 20)
    assert few["estimate"] == e["estimate"] and few["high"] - few["low"] > e["high"] - e["low"]
