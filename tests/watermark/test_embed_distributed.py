"""``embed`` under ``torchrun`` with 2 CPU processes (gloo; issue 14 item 6): rank 0's secrets
on every rank, one output folder written by rank 0, one logged attempt, and the same watermark as
a single process with the same secrets (about 20 s on 2 cores); the stopping rule stops every
rank after the same epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mapguard.checkpoint import load_checkpoint
from mapguard.masking import maskable_weights
from mapguard.watermark import embed
from mapguard.watermark._attempts import previous_attempts
from protocols import dsse, keys, statements
from verification.watermark_file import read_watermark

HERE = Path(__file__).parent


def _zeroed(path: Path) -> torch.Tensor:
    model, _ = load_checkpoint(path)
    return torch.cat([model.get_parameter(n).flatten() == 0 for n in maskable_weights(model)])


def _document(out: Path) -> dict:
    return read_watermark(out / "owner.wm").document


def test_two_process_embed_matches_one_process(
    tiny_checkpoint, digit_folders, owner, tmp_path, tiny_config
):
    data = digit_folders["src"]
    cfg = tiny_config(n_verification=40)
    single = embed(tiny_checkpoint, str(data), owner.key(), cfg, out=tmp_path / "one",
                   progress=False, device="cpu", secret_rng=np.random.default_rng(7))  # fmt: skip
    before = previous_attempts(owner.fingerprint, _sha(tiny_checkpoint))
    assert before[-1] == single.commitment_digest
    lines = _torchrun(tiny_checkpoint, data, owner, cfg, tmp_path / "two")
    env_file = dsse.read_envelope(tmp_path / "two" / "commitment.dsse.json")
    stmt = statements.verify_statement(env_file, keys.load_public_key(owner.public))
    digest = statements.statement_digest(stmt)
    # every rank returns rank 0's result; one attempt more in the log, not two
    assert [line.split()[:2] for line in lines] == [
        ["rank=0", f"commitment={digest}"], ["rank=1", f"commitment={digest}"]]  # fmt: skip
    after = previous_attempts(owner.fingerprint, _sha(tiny_checkpoint))
    assert after == [*before, digest]
    assert not list(tmp_path.glob(".two.*"))  # no staging folder left behind
    one, two = _document(tmp_path / "one"), _document(tmp_path / "two")
    # rank 0's secrets (rank 1 drew others), so the same triggers and verification set
    for part in ("secrets", "verification_set", "trigger_family"):
        assert one[part] == two[part], part
    a, b = _zeroed(tmp_path / "one" / "protected.pt"), _zeroed(tmp_path / "two" / "protected.pt")
    assert a.sum() > 0
    iou = float((a & b).sum() / (a | b).sum())
    # the same mask up to the gradient's float-sum order (bit-identical here: IoU 1.0; with
    # rank 1 on its own secrets it fell to 0.45)
    assert iou > 0.95, iou


#: A stopping rule decided by the cost alone: 10 of the 80 tuning images lost after epoch 1 (12.5
#: points > 8), 3 after epoch 2 (3.8 points) in this test's single-process run.
COST_RULE = {"alpha": 0.99, "effect_floor": 0.0, "stop_margin": 0.0, "max_accuracy_drop": 0.08}


@pytest.mark.slow
def test_two_processes_stop_where_one_process_stops(
    tiny_checkpoint, digit_folders, owner, tmp_path, tiny_config
):
    """Rank 0 rehearses and every rank takes its decision: both go on after epoch 1 and stop
    after epoch 2 of 3, and learn what one process learns (the same rehearsals, the same mask).
    The negative-key and secret-trigger batches are a quarter of 32 (4 images a rank).
    About 40 s on 2 cores."""
    data = digit_folders["src"]
    cfg = tiny_config(n_verification=40, stop_every=224, trigger_batch=0.25, export=False,
                      mask=tiny_config().mask.replace(epochs=3), **COST_RULE)  # fmt: skip
    embed(tiny_checkpoint, str(data), owner.key(), cfg, out=tmp_path / "one", progress=False,
          device="cpu", secret_rng=np.random.default_rng(7))  # fmt: skip
    lines = _torchrun(tiny_checkpoint, data, owner, cfg, tmp_path / "two")
    assert [line.split()[-1] for line in lines] == ["stops=1:0,2:1"] * 2, lines
    one, two = (_learning(tmp_path / name) for name in ("one", "two"))
    assert one["epochs"] == two["epochs"] == 2 and one["steps"] == two["steps"] == 14
    # 32 + 8 + 8 images a step, and the degrade source's placeholder image, one a rank
    assert (one["images"], two["images"]) == (14 * 49, 14 * 50)
    assert [r["met"] for r in two["rehearsals"]] == [False, True]
    for a, b in zip(one["rehearsals"], two["rehearsals"], strict=True):
        assert a.keys() == b.keys() and a["cost"] == pytest.approx(b["cost"]), (a, b)
        assert a["effects"] == pytest.approx(b["effects"]), (a, b)
    assert "pvalue" not in two["rehearsals"][0]  # the cost failed the pre-check
    a, b = _zeroed(tmp_path / "one" / "protected.pt"), _zeroed(tmp_path / "two" / "protected.pt")
    assert a.sum() > 0 and float((a & b).sum() / (a | b).sum()) > 0.95


def _torchrun(checkpoint: Path, data: Path, owner, cfg, out: Path) -> list[str]:  # noqa: ANN001
    """Embed with 2 gloo processes (the worker script); each rank's result line, sorted."""
    (out.parent / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_embed_worker.py"), str(checkpoint), str(data),
           str(owner.private), str(out.parent / "cfg.json"), str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        # SIGTERM: torchrun ends its workers (a SIGKILL would leave them hanging, in their own
        # sessions); a rank that stops alone leaves the other waiting in a collective
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"torchrun ran past 300 s (a rank hung?):\n{err[-1500:]}")
    assert proc.returncode == 0, err[:3000] + "\n...\n" + err[-1500:]
    return sorted((out.parent / f"rank{r}.txt").read_text().strip() for r in (0, 1))


def _learning(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["learning"]


def _sha(path: Path) -> str:
    from protocols.fileio import sha256_file

    return sha256_file(path)
