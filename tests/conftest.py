"""Shared fixtures: a hermetic data cache and a tiny model trained on real data in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Use $MAPGUARD_CACHE_DIR when CI sets it (shared across runs), else a per-session dir."""
    if os.environ.get("MAPGUARD_CACHE_DIR"):
        return Path(os.environ["MAPGUARD_CACHE_DIR"])
    path = tmp_path_factory.mktemp("mapguard-cache")
    os.environ["MAPGUARD_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def mnist_small():
    """(train, test) ImageSets: 1,200 / 400 real MNIST digits."""
    from mapguard.data import load_data

    train = load_data("builtin:mnist", split="train", progress=False).take(1200, seed=0)
    test = load_data("builtin:mnist", split="test", progress=False).take(400, seed=0)
    return train, test


@pytest.fixture(scope="session")
def tiny_model(mnist_small):
    """vgg_tiny trained for 3 epochs on 1,200 MNIST digits (a few seconds on 2 cores)."""
    from mapguard.models import create_model
    from mapguard.training import train_model

    torch.manual_seed(0)
    model = create_model("vgg_tiny", num_classes=10)
    return train_model(model, mnist_small[0], epochs=3, lr=0.05, seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny model saved as a mapguard checkpoint."""
    from mapguard.checkpoint import ModelMeta, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(
        tiny_model, ModelMeta(arch="vgg_tiny", extra={"trained_on": "builtin:mnist"}), path
    )
    return path
