"""``mapguard protect --method sf-map|df-map``: runs end to end; bad input exits 2 in one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.checkpoint import load_checkpoint

QUICK = [
    "-o", "n_pseudo=20", "-o", "synthesis_steps=3", "-o", "synthesis_batch_size=20",
    "-o", "steps_per_epoch=2", "--epochs", "1", "--batch-size", "16", "--quiet",
]  # fmt: skip


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapguard: error:") and needle in lines[0], lines


def test_sf_map_without_target_is_one_line_exit_2(tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "p.pt"
    res = invoke("protect", tiny_checkpoint, "--source", "builtin:mnist", "--method", "sf-map",
                 "--out", out, *QUICK)  # fmt: skip
    _one_line(res, "--target")
    assert not out.exists()


def test_free_methods_reject_unknown_options_before_work(tiny_checkpoint, tmp_path) -> None:
    for method in ("sf-map", "df-map"):
        res = invoke("protect", tiny_checkpoint, "--source", "builtin:mnist", "--target",
                     "builtin:optdigits", "--method", method, "--out", tmp_path / "p.pt",
                     "-o", "n_psuedo=30", "--quiet")  # fmt: skip
        _one_line(res, "unknown option 'n_psuedo'")
    assert list(tmp_path.iterdir()) == []


def test_df_map_runs_without_any_target(tiny_checkpoint, tmp_path) -> None:
    out, metrics = tmp_path / "p.pt", tmp_path / "m.json"
    res = invoke("protect", tiny_checkpoint, "--source", "builtin:mnist", "--method", "df-map",
                 "--out", out, "--metrics-out", metrics, *QUICK)  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(metrics.read_text())
    assert doc["method"] == "df-map" and doc["metrics"]["targets"] == {}
    assert set(doc["metrics"]["others"]) >= {"builtin:mnistm", "builtin:optdigits"}
    assert doc["config"]["free"]["n_pseudo"] == 20
    _, meta = load_checkpoint(out)
    assert meta.extra["method"] == "df-map"


def test_a_mask_the_stopping_rule_never_accepted_is_flagged(tiny_checkpoint, tmp_path) -> None:
    """A stop_kl no epoch can meet: the run still writes (the lowest-KL epoch's mask) but says
    on stderr, in one line, that the rule accepted nothing; the metrics file records it."""
    out, metrics = tmp_path / "p.pt", tmp_path / "m.json"
    res = invoke("protect", tiny_checkpoint, "--source", "builtin:mnist", "--method", "df-map",
                 "--out", out, "--metrics-out", metrics, *QUICK, "-o", "stop_kl=1e-12")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(metrics.read_text())["method_info"]["within_threshold"] is False
    warned = [line for line in res.output.splitlines() if "accepted no epoch" in line]
    assert len(warned) == 1 and warned[0].startswith("mapguard: warning:"), res.output
