"""The drop-estimate report of ``benchmarks.authorization_free``: which runs it reads, the
"within 2 pts" and interval counts it prints, and its scatter plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._free_estimates import estimate_rows, print_estimates, scatter


def _row(variant: str, before: float, after: float, restyled: tuple, collateral: float) -> dict:
    est, low, high = restyled
    return {
        "kind": "sf-map", "variant": variant, "source": "mnist", "targets": ["mnistm"],
        "before": {"mnist": before, "mnistm": 0.6}, "after": {"mnist": after, "mnistm": 0.2},
        "restyled_drop": {"estimate": est, "low": low, "high": high},
        "estimated_source_drop": {"estimate": collateral},
        "loo_estimate": {"estimate": collateral, "low": 0.0, "high": collateral + 0.02},
    }  # fmt: skip


ROWS = [
    # measured 1 pt: restyled 0 (within, covered), collateral 5 (not within)
    _row("restyle", 0.99, 0.98, (0.0, -0.02, 0.03), 0.05),
    # measured 5 pts: restyled 1 (under by 4, not covered), collateral 4 (within)
    _row("restyle", 0.99, 0.94, (0.01, -0.02, 0.04), 0.04),
    # another variant, and a run without a restyled estimate: neither is counted for "restyle"
    _row("other", 0.99, 0.90, (0.09, 0.05, 0.12), 0.09),
    {**_row("restyle", 0.99, 0.98, (0.0, 0.0, 0.0), 0.0), "restyled_drop": None},
]


def test_rows_are_the_variants_runs_with_a_restyled_estimate() -> None:
    es = estimate_rows(ROWS, "restyle")
    assert len(es) == 2
    assert es[0]["measured"] == pytest.approx(1.0)
    assert es[1]["larger"] == pytest.approx(4.0)  # max(restyled 1, collateral 4)


def test_counts_within_two_points_and_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    print_estimates(ROWS, ["restyle", "other", "absent"])
    out = capsys.readouterr().out
    assert ("restyle: within 2 pts of the measured drop — restyled 1 of 2, collateral 1 of 2, "
            "the larger of the two 1 of 2; the restyled interval contains the measured drop on "
            "1 of 2; restyled under-estimates by more than 2 pts on 1 of 2.") in out  # fmt: skip
    assert "other: within 2 pts of the measured drop — restyled 1 of 1" in out
    assert "absent" not in out


def test_scatter_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "scatter.png"
    scatter(ROWS, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
