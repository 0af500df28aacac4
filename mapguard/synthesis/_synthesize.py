"""``synthesize``: the public entry point (validation, caching, then :func:`invert`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mapguard._config import check_int
from mapguard._device import default_device
from mapguard._errors import ConfigError
from mapguard.checkpoint import weights_digest
from mapguard.data import MAX_SIZE, MIN_SIZE
from mapguard.synthesis._cache import cache_key, cache_path, read_cached, write_cached
from mapguard.synthesis._config import SynthesisConfig
from mapguard.synthesis._invert import invert
from mapguard.synthesis._result import SynthesisResult
from mapguard.training import DEFAULT_SIDE

__all__ = ["check_n", "synthesize"]

MAX_IMAGES = 1_000_000


def check_n(n: object) -> int:
    """Validate an image count."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise ConfigError(f"n must be an integer in 1..{MAX_IMAGES}, got {n!r}")
    return n


def synthesize(
    model: nn.Module,
    *,
    n: int,
    config: SynthesisConfig | None = None,
    seed: int = 0,
    cache: bool | str | os.PathLike[str] = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    size: int = DEFAULT_SIDE,
) -> SynthesisResult:
    """Recover ``n`` pseudo-source images from a trained classifier alone.

    Images are optimised so that the frozen model classifies them as a balanced set of labels
    while its BatchNorm layers see the running statistics they stored during training (see
    ``docs/METHOD-free.md``). Without BatchNorm the images rest on the cross-entropy, the image
    priors (total variation, L2, low-resolution parameterisation) and, when enabled, the
    feature-diversity term.

    Args:
        model: the trained classifier (not modified; taken in eval mode).
        n: number of images; labels cycle through the classes, balanced within every batch.
        config: options (defaults: :class:`SynthesisConfig`).
        seed: the same seed, model and options give the same images (bit for bit on CPU).
        cache: ``True`` uses ``$MAPGUARD_CACHE_DIR/synthesis`` (or the user cache), a path uses
            that directory, ``False`` disables caching. The key is the model's weight digest
            plus ``n``, ``seed`` and every option.
        device: torch device (default CUDA when present).
        progress: show a progress bar.
        size: the image side the model takes (its checkpoint's ``input_size``); the images are
            ``size x size``, the optimised grid stays ``config.resolution``.

    Raises:
        ConfigError: bad ``n``, ``size`` or options; a NaN loss. ModelFileError: the model does
            not take 3 x size x size images or has fewer than two outputs.
    """
    cfg = config or SynthesisConfig()
    if not isinstance(cfg, SynthesisConfig):
        raise ConfigError(f"config must be a SynthesisConfig, got {type(cfg).__name__}")
    n = check_n(n)
    check_int("size", size, low=MIN_SIZE, high=MAX_SIZE)
    digest = weights_digest(model.state_dict())
    path = None
    if cache is not False:
        key = cache_key(weights_sha256=digest, config=cfg.to_dict(), n=n, seed=int(seed), size=size)
        path = cache_path(key, None if cache is True else Path(cache))
        hit = read_cached(path)
        if hit is not None:
            return hit
    was_training = model.training
    try:
        images, labels, stats, k = invert(
            model,
            n=n,
            config=cfg,
            seed=int(seed),
            device=default_device(str(device) if device else None),
            progress=progress,
            size=size,
        )
    finally:
        model.train(was_training)
    result = SynthesisResult(
        images=images,
        labels=labels.to(torch.int64).cpu(),
        num_classes=k,
        config=cfg,
        seed=int(seed),
        weights_sha256=digest,
        stats=stats,
    )
    if path is not None:
        write_cached(path, result)
    return result
