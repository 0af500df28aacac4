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
    python -m benchmarks.forgery --variant secrets=8,images=64,min_size=5,max_size=6 \
        --variant secrets=3,images=40        # several recipes, paired: same models, same images

A variant names the recipe a claimant would imitate: ``secrets`` (k, the claimant keeps the best
k), ``images`` (images per key) and any :class:`mapguard.watermark.EmbedConfig` field of the
family (``min_size``, ``max_size``, ``margin``, ``family``); the committed floor printed beside it
is that recipe's ``effect_floor``. Every variant scores its own fresh candidates on the same
models and the same first ``images`` test digits.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import time
from pathlib import Path

import numpy as np
import platformdirs
import torch

from benchmarks._options import key_value
from mapguard.checkpoint import load_checkpoint
from mapguard.data import ImageSet, load_data
from mapguard.training import train_source
from mapguard.watermark import EmbedConfig
from verification.backends import ModuleBackend
from verification.triggers import random_secret
from verification.verify import VerifyConfig, WatermarkSpec, verify

_RECIPE_KEYS = ("secrets", "images")  # the rest of a variant are EmbedConfig fields


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


def _variant(text: str) -> tuple[str, EmbedConfig]:
    """``secrets=8,images=64,min_size=5`` -> (the text, the EmbedConfig it names)."""
    changes: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, value = key_value(item)
        changes[{"secrets": "n_secrets", "images": "n_verification"}.get(key, key)] = value
    try:
        return text or "default", EmbedConfig().replace(**changes)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"forgery: bad --variant {text!r}: {exc}") from None


def _scores(model: torch.nn.Module, recipe: EmbedConfig, c: int, test: ImageSet) -> np.ndarray:
    """``g`` (labels) of ``c`` random candidate keys of ``recipe``'s family on ``model`` and the
    recipe's first ``n_verification`` test images: one public verify call with one key as
    "secret" and the other ``c - 1`` as its null keys."""
    part = test.subset(np.arange(recipe.n_verification))
    spec = WatermarkSpec(family=recipe.family, family_params=recipe.family_params(10),
                         secrets=(random_secret(),), images=part.images.numpy(),
                         labels=part.labels.numpy(), num_classes=10)  # fmt: skip
    config = VerifyConfig(null_keys_per_secret=c - 1, labels_only=True, parametric_model=None,
                          n_resamples=100, null_seed=random_secret().hex())  # fmt: skip
    res = verify(ModuleBackend(model.eval()), spec, config)
    return np.concatenate([res.secret_stats, res.null_stats[0]])


def _cached_scores(
    run: Path, model_name: str, variant: str, model: torch.nn.Module, recipe: EmbedConfig,
    c: int, test: ImageSet,
) -> np.ndarray:  # fmt: skip
    """:func:`_scores`, kept in ``run`` (the rules are recomputed from the same candidates).

    The candidates are iid keys of the family, so the first ``c`` of a cached larger draw are a
    draw of ``c``: a quick run reuses a full run's scores."""
    tag = hashlib.sha256(f"{model_name}|{variant}".encode()).hexdigest()[:16]
    cached = sorted(run.glob(f"scores-{model_name}-{tag}-*.npy"),
                    key=lambda p: int(p.stem.rsplit("-", 1)[1]))  # fmt: skip
    for path in cached:
        if int(path.stem.rsplit("-", 1)[1]) >= c:
            return np.load(path)[:c]
    g = _scores(model, recipe, c, test)
    np.save(run / f"scores-{model_name}-{tag}-{c}.npy", g)
    return g


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 models, C up to 2,000.")
    parser.add_argument("--run-dir", type=Path, default=None, help="Model cache folder.")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="K=V,...",
        help="a recipe to imitate (repeatable; default: the default recipe)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = os.environ.get("MAPGUARD_CACHE_DIR") or platformdirs.user_cache_dir("mapguard")
    run = args.run_dir or Path(root) / "bench-forgery"
    run.mkdir(parents=True, exist_ok=True)
    cs = [100, 1000, 2000] if args.quick else [100, 1000, 10000]
    variants = [_variant(v) for v in (args.variant or [""])]
    most = max(r.n_verification for _, r in variants)
    test = load_data("builtin:mnist", split="test", progress=False).take(most, seed=1)
    print("cells: min / median / mean of the best k of C candidate keys' labels g")
    head = "| model | seed | clean acc. | variant | k | " + " | ".join(f"C = {c:,}" for c in cs)
    print(head + " |")
    print("|---|---|---|---|---|" + "---|" * len(cs))
    rules = {"min": np.min, "median": np.median, "mean": np.mean}
    margins = {(name, c, r): [] for name, _ in variants for c in cs for r in rules}
    t0 = time.perf_counter()
    for arch, seed in _models(args.quick):
        model = _model(run, arch, seed, epochs=8)
        with torch.no_grad():
            acc = float((model(test.floats()).argmax(1) == test.labels).float().mean())
        for name, recipe in variants:
            g = _cached_scores(run, f"{arch}-s{seed}", name, model, recipe, max(cs), test)
            cells = []
            for c in cs:
                best = np.sort(g[:c])[::-1][: recipe.n_secrets]  # the claimant keeps the best k
                for rule, agg in rules.items():
                    margins[name, c, rule].append(float(agg(best)))
                cells.append(" / ".join(f"{agg(best):.3f}" for agg in rules.values()))
            print(f"| {arch} | {seed} | {acc:.2%} | {name} | {recipe.n_secrets} | "
                  + " | ".join(cells) + " |", flush=True)  # fmt: skip
    print()
    for (name, recipe), rule in itertools.product(variants, rules):
        worst = {c: max(margins[name, c, rule]) for c in cs}
        mark = " (the committed rule)" if rule == recipe.floor_statistic else ""
        print(f"{name}: forgery margin by the {rule} of the best k = {recipe.n_secrets} keys"
              f"{mark} (max over models, labels g): "
              + ", ".join(f"C = {c:,}: {m:.3f}" for c, m in worst.items())
              + f"; committed floor {recipe.effect_floor}; floor above every margin: "
              f"{all(m < recipe.effect_floor for m in worst.values())}")  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s, 1 torch thread)")


if __name__ == "__main__":
    main()
