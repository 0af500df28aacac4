"""The drop estimate: which signal it uses, how the mask's effect on the target moves it, and
its interval (constants: ``CALIBRATION``, fitted by ``benchmarks/_free_tables.calibrate``)."""

from __future__ import annotations

import pytest
import torch

from mapguard.methods.free import CALIBRATION, estimate_drop
from mapguard.methods.free._estimate import collateral, paired_drop


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


def test_paired_drop_counts_the_discordant_images() -> None:
    before = torch.tensor([True] * 90 + [False] * 10)
    after = before.clone()
    after[:5] = False  # five images the mask broke
    after[95] = True  # one it fixed
    d = paired_drop(before, after)
    assert d["table"] == [85, 5, 1, 9] and d["n"] == 100
    assert abs(d["estimate"] - 0.04) < 1e-9 and d["low"] < 0.04 < d["high"]
    same = paired_drop(before, before)  # no discordant image: the interval still has width
    assert same["estimate"] == 0.0 and same["low"] < 0.0 < same["high"]
    with pytest.raises(ValueError, match="equally long"):
        paired_drop(before, after[:50])


def test_paired_drop_interval_covers_at_its_level() -> None:
    """Simulated probes (a masked model that breaks a known share of the images): the 90%
    interval contains the true drop in at least 88% of 400 draws for each setting."""
    gen = torch.Generator().manual_seed(0)
    for n, right, drop in ((100, 0.98, 0.02), (100, 0.9, 0.05), (60, 0.9, 0.0), (200, 0.9, 0.1)):
        hits = 0
        for _ in range(400):
            before = torch.rand(n, generator=gen) < right
            after = before & (torch.rand(n, generator=gen) >= drop / right)
            d = paired_drop(before, after)
            hits += d["low"] <= drop <= d["high"]
        assert hits / 400 >= 0.88, (n, right, drop, hits)
