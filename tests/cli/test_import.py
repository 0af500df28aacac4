"""``mapguard import``: a state dict in, a checkpoint out; every bad input is one line, exit 2,
and no output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.checkpoint import load_checkpoint
from mapguard.models import create_model

SMALL = ("--arch", "vgg_tiny", "--num-classes", "10", "--input-size", "3x32x32")


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def weights(tmp_path) -> Path:
    """A vgg_tiny body's state dict as DataParallel saves it (``module.`` prefix)."""
    torch.manual_seed(0)
    body = create_model("vgg_tiny")[1]
    path = tmp_path / "w.pth"
    torch.save({"module." + k: v for k, v in body.state_dict().items()}, path)
    return path


def test_import_then_load(weights, tmp_path) -> None:
    for name in [f"digit{i}" for i in range(10)]:
        (tmp_path / "data" / name).mkdir(parents=True)
    out = tmp_path / "m.pt"
    r = run("import", weights, *SMALL, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
            "--classes-from", tmp_path / "data", "--out", out, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["stripped_prefix"] == "module." and summary["input_size"] == [3, 32, 32]
    _, meta = load_checkpoint(out)
    assert meta.classes == tuple(f"digit{i}" for i in range(10)) and meta.mean == (0.5,) * 3
    assert summary["weights_sha256"] == meta.weights_sha256
    r = run("import", weights, *SMALL, "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("imported vgg_tiny (") and "3x32x32, 10 classes: 0, 1," in r.output


def _assert_one_line(result, *needles: str) -> None:
    lines = [ln for ln in result.stderr.strip().splitlines() if ln]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("mapguard: error:") and "Traceback" not in result.output
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--input-size", "3x32"), "--input-size must be CxHxW"),
        (("--input-size", "3x32xa"), "--input-size must be CxHxW"),
        (("--input-size", "3x64x64"), "cannot take input size 3x64x64"),
        (("--mean", "a,b,c"), "--mean must be comma-separated numbers"),
        (("--std", "0.2,0.2"), "need one value per input channel (3)"),
        (("--num-classes", "7"), "has shape [10], the architecture needs [7]"),
        (("--arch", "torchvision:resnet81"), "did you mean 'torchvision:resnet18'"),
        (("--arch", "timm:nope"), ""),  # needs timm, or unknown in timm: either way one line
        (("--arch", "module:no_such_mod_xyz:f"), "cannot import it"),
        (("--classes-from", "{tmp}"), "2 class names for num_classes 10"),
        (("--classes-from", "{tmp}/a"), "no class sub-folders"),
    ],
)
def test_bad_options_are_one_line(weights, tmp_path, args, needle: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = [a.format(tmp=tmp_path) for a in args]
    r = run("import", weights, *SMALL, *args, "--out", tmp_path / "m.pt")
    _assert_one_line(r, needle)
    assert not (tmp_path / "m.pt").exists()


def test_unsafe_or_unfitting_weights_are_one_line(tmp_path) -> None:
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {}, "x": _Touch(str(marker))}, bad)
    r = run("import", bad, *SMALL, "--out", tmp_path / "m.pt")
    _assert_one_line(r, "refused without unpickling")
    assert not marker.exists()
    torch.save({"head.weight": torch.zeros(2)}, bad)
    r = run("import", bad, *SMALL, "--out", tmp_path / "m.pt")
    _assert_one_line(r, "22 missing (first '0.weight'), 1 unexpected (first 'head.weight')")
    r = run("import", tmp_path / "none.pth", *SMALL, "--out", tmp_path / "m.pt")
    _assert_one_line(r, "does not exist")
    assert not (tmp_path / "m.pt").exists()


def test_existing_output_and_output_is_input(weights, tmp_path) -> None:
    (tmp_path / "m.pt").write_bytes(b"keep")
    _assert_one_line(run("import", weights, *SMALL, "--out", tmp_path / "m.pt"), "--force")
    assert (tmp_path / "m.pt").read_bytes() == b"keep"
    r = run("import", weights, *SMALL, "--out", weights, "--force")
    assert r.exit_code == 2 and "mapguard: error:" in r.stderr


class _Touch:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))
