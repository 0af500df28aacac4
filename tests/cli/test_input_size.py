"""One chain of owner commands at 64 px (issue 14): ``train --size 64`` a torchvision architecture,
then ``evaluate``, ``protect``, ``attack`` and ``synthesize`` read the side from the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from mapguard._cli import cli
from mapguard.checkpoint import load_checkpoint
from mapguard.synthesis import load_result

ARCH = "torchvision:shufflenet_v2_x0_5"  # any side, 0.35 M parameters: seconds on 2 cores


def run(*args) -> dict:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _side(path) -> int:
    size = load_checkpoint(path)[1].input_size
    assert size[0] == 3 and size[1] == size[2], size
    return size[2]


def test_train_evaluate_protect_attack_synthesize_at_64(folders_64, tmp_path) -> None:
    m, p, a, s = (tmp_path / n for n in ("m.pt", "p.pt", "a.pt", "s"))
    src, tgt = folders_64["src"], folders_64["tgt"]  # 3 classes: no built-in domain is measured
    trained = run("train", "--data", src, "--arch", ARCH, "--size", "64", "--epochs", "1",
                  "--batch-size", "8", "--out", m, "--quiet", "--json")  # fmt: skip
    assert trained["size"] == 64 and _side(m) == 64
    report = run("evaluate", m, "--data", src, "--quiet", "--json")
    assert report["accuracy"][str(src)]["accuracy"] == trained["test_accuracy"]
    run("protect", m, "--source", src, "--target", tgt, "--out", p, "--export",
        tmp_path / "p.pt2", "--epochs", "1", "--batch-size", "8", "-o", "max_steps_per_epoch=2",
        "--quiet", "--json")  # fmt: skip
    exported = torch.export.load(str(tmp_path / "p.pt2")).module()
    assert _side(p) == 64 and exported(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    attacked = run("attack", p, "--kind", "ftll", "--data", src, "--n-images", "12", "--epochs",
                   "1", "--out", a, "--quiet", "--json")  # fmt: skip
    assert attacked["n_images"] == 12 and _side(a) == 64
    summary = run("synthesize", a, "--n", "3", "--steps", "2", "--batch-size", "3", "--out", s,
                  "--no-cache", "--quiet", "--json")  # fmt: skip
    assert summary["image_side"] == 64
    assert tuple(load_result(s / "pseudo_source.npz").images.shape) == (3, 3, 64, 64)
    png = next((s / "images").rglob("*.png"))
    assert np.asarray(Image.open(png)).shape == (64, 64, 3)
