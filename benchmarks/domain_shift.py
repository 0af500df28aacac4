"""Domain-shift benchmark: train the default model on each built-in domain, test on all five.

Prints the 5x5 train->test accuracy matrix (markdown) with training times; pairs whose off-diagonal
accuracy is near chance are *uninformative* for protection (nothing to take away).

    python -m benchmarks.domain_shift [--epochs 10] [--arch vgg_small] [--out runs/domain_shift]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mapguard.checkpoint import load_checkpoint
from mapguard.data import list_domains, load_data
from mapguard.training import accuracy, train_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--arch", default="vgg_small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/domain_shift")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domains = list_domains()
    tests = {d: load_data(f"builtin:{d}", split="test", progress=False) for d in domains}
    matrix: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for src in domains:
        ckpt = out / f"{args.arch}-{src}-e{args.epochs}-s{args.seed}.pt"
        t0 = time.perf_counter()
        if not ckpt.exists():
            train_source(
                f"builtin:{src}",
                arch=args.arch,
                out=ckpt,
                epochs=args.epochs,
                seed=args.seed,
                progress=False,
            )
        seconds[src] = time.perf_counter() - t0
        model, _ = load_checkpoint(ckpt)
        matrix[src] = {d: accuracy(model, tests[d]) for d in domains}
        print(f"trained on {src}: {seconds[src]:.0f} s", flush=True)
    print(
        f"\nmachine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, cuda={torch.cuda.is_available()}; "
        f"arch {args.arch}, {args.epochs} epochs, seed {args.seed}\n"
    )
    print("| train \\ test | " + " | ".join(domains) + " | train time (s) | time / mnist |")
    print("|---" * (len(domains) + 3) + "|")
    for src in domains:
        cells = [
            f"**{matrix[src][d]:.1%}**" if d == src else f"{matrix[src][d]:.1%}" for d in domains
        ]
        ratio = seconds[src] / seconds["mnist"] if seconds.get("mnist") else float("nan")
        print(f"| {src} | " + " | ".join(cells) + f" | {seconds[src]:.0f} | {ratio:.2f} |")
    (out / "matrix.json").write_text(json.dumps({"matrix": matrix, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
