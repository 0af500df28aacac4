"""Forgery margin: how strong can keys chosen *after* seeing an innocent model look?

A dishonest claimant trains nothing: they score C candidate keys of the default family on an
innocent model with the verifier's own statistic, keep the best k, and build a watermark around
them. This benchmark measures, for each independent model and each C, the weakest of the best k
keys' statistics ``g`` (labels mode, the committed default; the family and patch sizes of the
default embedding recipe) — the *forgery margin* — and compares
it with the committed effect floor and with the weakest secret of a real embedding. A floor above
the margin means no selection from C candidates reaches "evidenced", whatever its p-value.

Usage::

    python -m benchmarks.forgery --quick     # 2 vgg_tiny + 2 vgg_small models, C up to 2,000
    python -m benchmarks.forgery             # 10 models (vgg_tiny, vgg_small), C up to 10,000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import platformdirs
import torch

from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data
from mapguard.training import train_source
from mapguard.watermark import EmbedConfig
from verification.backends import ModuleBackend
from verification.triggers import random_secret
from verification.verify import VerifyConfig, WatermarkSpec, verify

K = 3  # secrets per watermark (the default recipe)
N_IMAGES = 40  # images per key (the default recipe)


def _models(quick: bool) -> list[tuple[str, int]]:
    if quick:
        return [("vgg_tiny", s) for s in range(2)] + [("vgg_small", s) for s in (1, 2)]
    return [("vgg_tiny", s) for s in range(6)] + [("vgg_small", s) for s in range(1, 5)]


def _model(run: Path, arch: str, seed: int, epochs: int) -> torch.nn.Module:
    path = run / f"{arch}-mnist-s{seed}-e{epochs}.pt"
    if not path.exists():
        train_source("builtin:mnist", arch=arch, out=path, epochs=epochs, seed=seed,
                     progress=False)  # fmt: skip
    return load_checkpoint(path)[0]


def _scores(model: torch.nn.Module, c: int, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``g`` (labels) of ``c`` random candidate keys on ``model``: one public verify call with
    one key as "secret" and the other ``c - 1`` as its null keys."""
    recipe = EmbedConfig()  # the family and patch sizes a default embedding commits
    spec = WatermarkSpec(family=recipe.family, family_params=recipe.family_params(10),
                         secrets=(random_secret(),), images=images, labels=labels,
                         num_classes=10)  # fmt: skip
    config = VerifyConfig(null_keys_per_secret=c - 1, labels_only=True, parametric_model=None,
                          n_resamples=100, null_seed=random_secret().hex())  # fmt: skip
    res = verify(ModuleBackend(model.eval()), spec, config)
    return np.concatenate([res.secret_stats, res.null_stats[0]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 models, C up to 2,000.")
    parser.add_argument("--run-dir", type=Path, default=None, help="Model cache folder.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = os.environ.get("MAPGUARD_CACHE_DIR") or platformdirs.user_cache_dir("mapguard")
    run = args.run_dir or Path(root) / "bench-forgery"
    run.mkdir(parents=True, exist_ok=True)
    cs = [100, 1000, 2000] if args.quick else [100, 1000, 10000]
    test = load_data("builtin:mnist", split="test", progress=False).take(N_IMAGES, seed=1)
    images, labels = test.images.numpy(), test.labels.numpy()
    floor = EmbedConfig().effect_floor
    print("| model | seed | clean acc. | " + " | ".join(f"C = {c:,}" for c in cs) + " |")
    print("|---|---|---|" + "---|" * len(cs))
    margins = {c: [] for c in cs}
    t0 = time.perf_counter()
    for arch, seed in _models(args.quick):
        model = _model(run, arch, seed, epochs=8)
        g = _scores(model, max(cs), images, labels)
        cells = []
        for c in cs:
            best = np.sort(g[:c])[::-1][:K]  # the claimant keeps the best k of C
            margins[c].append(best.min())
            cells.append(f"{best.min():.3f}")
        with torch.no_grad():
            acc = float((model(test.floats()).argmax(1) == test.labels).float().mean())
        print(f"| {arch} | {seed} | {acc:.2%} | " + " | ".join(cells) + " |")
    worst = {c: max(v) for c, v in margins.items()}
    print()
    print("forgery margin (max over models of the weakest of the best k = 3 keys, labels g): "
          + ", ".join(f"C = {c:,}: {m:.3f}" for c, m in worst.items()))  # fmt: skip
    print(f"committed effect floor of the default recipe: {floor}")
    print(f"floor above every margin: {all(m < floor for m in worst.values())}")
    print(f"({time.perf_counter() - t0:.0f} s, 1 torch thread)")


if __name__ == "__main__":
    main()
