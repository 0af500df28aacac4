"""``benchmarks.authorization_free --report-only``: the tables come from the runs of the
variants asked for with ``--variants`` only, so two variants of a cache holding more are
paired on every pair both have (issue 17, session 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DOMAINS = ("mnist", "mnistm", "optdigits", "svhnlike", "syn")


def _row(variant: str, target: str, src_after: float) -> dict:
    before = dict.fromkeys(DOMAINS, 0.5) | {"mnist": 0.99}
    after = dict.fromkeys(DOMAINS, 0.2) | {"mnist": src_after}
    return {
        "key": f"sf-map:{variant}:mnist:{target}:1", "kind": "sf-map", "variant": variant,
        "source": "mnist", "targets": [target], "before": before, "after": after,
        "pruned": 0.01, "chosen_epoch": 1, "epochs_run": 1, "seconds": 10.0,
        "degrade_accuracy": [0.2], "estimated_source_drop": {
            "estimate": 0.01, "low": 0.0, "high": 0.03, "disagreement": 0.1,
            "target_transfer": 0.5},
        "restyled_drop": {"estimate": 0.01, "low": -0.01, "high": 0.03},
    }  # fmt: skip


def _report(out: Path, *variants: str) -> str:
    cmd = [sys.executable, "-m", "benchmarks.authorization_free", "--methods", "sf-map",
           "--out", str(out), "--report-only", "--variants", *variants]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


def test_report_only_reads_the_variants_asked_for(tmp_path: Path) -> None:
    rows = [_row("restyle", "mnistm", 0.98), _row("restyle", "syn", 0.97),
            _row("restyle-s50", "mnistm", 0.99), _row("restyle-s50", "syn", 0.90),
            _row("restyle-s200", "mnistm", 0.95)]  # fmt: skip
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    two = _report(tmp_path, "restyle", "restyle-s50")
    assert "variant restyle-s200" not in two
    # restyle-s200 has one pair only; without it, the two variants pair on both pairs
    assert "paired over 2 runs present in every variant" in two
    assert "| restyle | 1.50 | 1.50 | 2.0 |" in two  # drops 1 and 2 pts
    assert "| restyle-s50 | 4.50 | 4.50 | 9.0 |" in two  # drops 0 and 9 pts

    one = _report(tmp_path, "restyle-s50")
    assert "variant restyle-s50" in one
    assert "variant restyle\n" not in one and "| restyle | " not in one
