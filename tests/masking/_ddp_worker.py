"""Run by ``torchrun`` in test_distributed.py (imported by it for the one-process reference)."""

from __future__ import annotations

import sys

import torch

from mapguard.masking import (
    MaskConfig,
    TensorSource,
    finish_distributed,
    init_distributed,
    learn_mask,
    save_mask,
)
from mapguard.models import create_model

CONFIG = MaskConfig(epochs=2, batch_size=32, max_steps_per_epoch=5, lr=0.05, init_score=0.6)


def run():
    """The same deterministic model, data and config in every process."""
    torch.manual_seed(0)
    model = create_model("vgg_tiny").eval()
    gen = torch.Generator().manual_seed(1)
    keep = TensorSource(torch.rand(160, 3, 32, 32, generator=gen), seed=0, name="keep")
    x = torch.rand(160, 3, 32, 32, generator=gen) * 0.5
    degrade = TensorSource(x, torch.randint(0, 10, (160,), generator=gen), seed=1, name="deg")
    return learn_mask(
        model, keep=keep, degrade=degrade, config=CONFIG, device="cpu", progress=False
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    info = init_distributed()
    result = run()
    save_mask(result.mask, f"{sys.argv[1]}.{info.rank}")  # every rank: they must agree
    if info.is_main:
        print(f"world={result.world_size} images={result.images}")
    finish_distributed()
