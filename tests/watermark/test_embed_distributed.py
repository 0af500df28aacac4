"""``embed`` under ``torchrun`` with 2 CPU processes (gloo; issue 14 item 6): rank 0's secrets
on every rank, one output folder written by rank 0, one logged attempt, and the same watermark as
a single process with the same secrets (about 20 s on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    before = previous_attempts(owner.fingerprint, _sha(tiny_checkpoint))
    assert before[-1] == single.commitment_digest
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_embed_worker.py"), str(tiny_checkpoint), str(data),
           str(owner.private), str(tmp_path / "cfg.json"), str(tmp_path / "two")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    lines = sorted((tmp_path / f"rank{r}.txt").read_text().strip() for r in (0, 1))
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


def _sha(path: Path) -> str:
    from protocols.fileio import sha256_file

    return sha256_file(path)
