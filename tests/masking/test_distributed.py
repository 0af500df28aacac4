"""The learner under ``torchrun`` with 2 CPU processes (gloo): the ranks agree, and match one
process (about 15 s on 2 cores, so not marked slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from mapguard.masking import load_mask

HERE = Path(__file__).parent


def test_two_process_ddp_matches_single_process(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        from _ddp_worker import run
    finally:
        sys.path.remove(str(HERE))
    torch.manual_seed(123)  # the worker seeds its own model; global state must not matter
    single = run()
    out = tmp_path / "mask.bin"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_worker.py"), str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    assert "world=2" in done.stdout and f"images={single.images}" in done.stdout
    ddp, other = load_mask(f"{out}.0"), load_mask(f"{out}.1")
    assert ddp.equals(other)  # both ranks end with the same mask, bit for bit
    assert single.pruned_fraction > 0.005  # the mask moved away from all-ones ...
    a = torch.cat([~layer.bits.flatten() for layer in single.mask.layers])
    b = torch.cat([~layer.bits.flatten() for layer in ddp.layers])
    iou = float((a & b).sum() / (a | b).sum())
    assert iou > 0.98, iou  # ... and both runs pruned the same weights (float-sum order aside)
    assert abs(ddp.pruned_fraction - single.pruned_fraction) < 1e-3


def test_outside_torchrun_the_helpers_change_nothing(monkeypatch):
    from mapguard.masking import broadcast_from_main, launched_rank

    value = object()
    assert broadcast_from_main(value) is value  # no process group: this process's own value
    monkeypatch.delenv("RANK", raising=False)
    assert launched_rank() == 0
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it, still true once the group is left
    assert launched_rank() == 1
