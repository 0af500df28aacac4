"""``mapguard synthesize``: outputs, reuse as an ImageFolder, and bad input (exit 2, one line)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.data import load_data
from mapguard.synthesis import load_result


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("mapguard: error:") and needle in lines[0], lines


def test_synthesize_writes_result_folder_and_grid(tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "pseudo"
    r = run(
        "synthesize",
        str(tiny_checkpoint),
        "--n",
        "20",
        "--steps",
        "3",
        "--out",
        str(out),
        "-q",
        "--json",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["n"] == 20 and summary["config"]["steps"] == 3
    assert {p.name for p in out.iterdir()} == {
        "pseudo_source.npz",
        "synthesis.json",
        "images",
        "grid.png",
    }
    result = load_result(out / "pseudo_source.npz")
    folder = load_data(str(out / "images"), split="all", progress=False)
    assert len(folder) == 20 and sorted(folder.labels.tolist()) == sorted(result.labels.tolist())
    assert (out / "grid.png").stat().st_size < 300_000
    assert not list(tmp_path.glob(".pseudo.*"))  # no temporary directory left behind


def test_synthesize_refuses_occupied_output_and_bad_n(tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _one_line_error(
        run("synthesize", str(tiny_checkpoint), "--n", "4", "--out", str(out), "-q"), "--force"
    )
    assert (out / "keep.txt").read_text() == "mine"
    _one_line_error(
        run("synthesize", str(tiny_checkpoint), "--n", "0", "--out", str(tmp_path / "x"), "-q"),
        "got 0",
    )
    _one_line_error(
        run("synthesize", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "y"), "-q"),
        "missing.pt",
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_synthesize_bad_steps(tiny_checkpoint, tmp_path, steps) -> None:
    _one_line_error(
        run(
            "synthesize", str(tiny_checkpoint), "--steps", steps, "--out", str(tmp_path / "z"), "-q"
        ),
        "steps",
    )
