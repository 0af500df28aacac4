"""``train_source`` is seeded without touching the global generator; the class-count probe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mapguard._errors import ModelFileError
from mapguard.checkpoint import load_checkpoint
from mapguard.training import probe_num_classes, train_source


def test_train_source_repeats_and_leaves_the_global_generator_alone(tmp_path) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    runs = [
        train_source("builtin:optdigits", arch="vgg_tiny", out=tmp_path / f"{i}.pt", epochs=1,
                     seed=5, progress=False)
        for i in range(2)
    ]  # fmt: skip
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"]
    _, meta = load_checkpoint(tmp_path / "0.pt")
    assert meta.extra["trained_on"] == "builtin:optdigits" and meta.num_classes == 10


def test_probe_counts_classes_in_eval_mode_and_refuses_foreign_models(tiny_model) -> None:
    tiny_model.train()
    try:
        assert probe_num_classes(tiny_model) == 10 and tiny_model.training
    finally:
        tiny_model.eval()
    with pytest.raises(ModelFileError, match="does not accept 3x32x32"):
        probe_num_classes(nn.Linear(5, 3))
    with pytest.raises(ModelFileError, match="expected \\[N, classes >= 2\\]"):
        probe_num_classes(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1)))
