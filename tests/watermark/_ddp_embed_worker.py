"""Run by ``torchrun`` in test_embed_distributed.py: one embedding, data parallel.

``argv``: checkpoint, data, owner key, config JSON, output folder; each rank writes its result
line to ``rank<N>.txt`` next to the output folder, with the stopping rule's decision after each
epoch on that rank (``stops=1:0,2:1``: go on after epoch 1, stop after epoch 2; ``stops=-``
without a rule). Each rank passes a *different* secret generator (seed 7 + 1000 * rank): the
embedding must use rank 0's secrets on every rank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from mapguard.masking import launched_rank
from mapguard.watermark import EmbedConfig, embed
from mapguard.watermark._stopping import StopRule
from protocols import keys


def record_decisions() -> list[str]:
    """Wrap the stopping rule's callback so that each of this rank's decisions is kept."""
    decisions, rule = [], StopRule.__call__

    def recorded(self: StopRule, info) -> bool:  # noqa: ANN001 - an EpochInfo
        stop = rule(self, info)
        decisions.append(f"{info.epoch}:{int(stop)}")
        return stop

    StopRule.__call__ = recorded
    return decisions


if __name__ == "__main__":
    decisions = record_decisions()
    torch.set_num_threads(1)
    model, data, key, config, out = sys.argv[1:6]
    rank = launched_rank()
    cfg = EmbedConfig.from_dict(json.loads(Path(config).read_text()))
    result = embed(model, data, keys.load_private_key(key), cfg, out=out, progress=False,
                   device="cpu", secret_rng=np.random.default_rng(7 + 1000 * rank))  # fmt: skip
    # one file per rank: lines the ranks print into torchrun's shared stdout were seen to go
    # missing (1 run in ~8 under load), which made the test flaky
    line = (f"rank={rank} commitment={result.commitment_digest} ready={result.ready} "
            f"stops={','.join(decisions) or '-'}\n")  # fmt: skip
    (Path(out).parent / f"rank{rank}.txt").write_text(line)
    print(line, end="", flush=True)
