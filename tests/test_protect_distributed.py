"""``mapguard protect --method map`` under ``torchrun`` with 2 CPU processes (gloo): one set of
outputs and one report, from rank 0, and the mask of a single process (about 15 s on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from mapguard._cli import cli
from mapguard.masking import load_mask


def test_two_process_protect_matches_one_process(tiny_checkpoint, digit_folders, tmp_path):
    def args(name: str) -> list[str]:
        return ["protect", str(tiny_checkpoint), "--source", str(digit_folders["src"]),
                "--target", str(digit_folders["tgt"]), "--out", str(tmp_path / f"{name}.pt"),
                "--mask-out", str(tmp_path / f"{name}.mask"), "--epochs", "2", "--batch-size",
                "32", "--device", "cpu", "--quiet", "--json"]  # fmt: skip

    one = CliRunner().invoke(cli, args("one"), catch_exceptions=False)
    assert one.exit_code == 0, one.output
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mapguard", *args("two")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    report = json.loads(done.stdout)  # one JSON document: rank 1 prints nothing
    assert report["method_info"]["world_size"] == 2
    assert report["metrics"]["source"] == json.loads(one.stdout)["metrics"]["source"]
    a, b = load_mask(tmp_path / "one.mask"), load_mask(tmp_path / "two.mask")
    assert report["mask_sha256"] == b.sha256
    x = [~layer.bits.flatten() for layer in a.layers]
    y = [~layer.bits.flatten() for layer in b.layers]
    inter = sum(int((p & q).sum()) for p, q in zip(x, y))
    union = sum(int((p | q).sum()) for p, q in zip(x, y))
    assert a.pruned_fraction > 0.005 and inter / union > 0.95, (a.pruned_fraction, inter / union)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["one.mask", "one.pt", "two.mask", "two.pt"]  # rank 0's files only
