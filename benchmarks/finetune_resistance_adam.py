"""Side check of the fine-tuning-resistance benchmark: an Adam thief (not one of NTLBench's SGD
thieves) against the models a quick run has cached.

For every model label given (the cached protected models of ``--run-dir``, plus ``scratch``), the
thief holds ``N`` labelled MNIST-M images (same draws, validation split and step budget as
:mod:`benchmarks.finetune_resistance`), fine-tunes every parameter in train mode with Adam
(weight decay 5e-4, one-cycle) at each learning rate of ``--lrs`` and keeps what its validation
split prefers. Prints target accuracy (%, mean over the seeds) by N and strategy.

    python -m benchmarks.finetune_resistance_adam --models map,map-nft,nft-weights
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks import finetune_resistance as fr
from benchmarks.finetune_resistance_curves import Thief
from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, list[float]]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", default="runs/finetune-resistance-quick")
    ap.add_argument("--models", default="map,map-nft,nft-weights", help="cached variant labels")
    ap.add_argument("--lrs", default="0.0001,0.0003,0.001")
    ap.add_argument("--ns", default="10,50,100")
    ap.add_argument("--strategies", default="direct-all,initFC-all")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    budget = fr.QUICK
    lrs = tuple(float(v) for v in args.lrs.split(","))
    thief = Thief(lrs=lrs, max_steps=budget.thief.max_steps, optimizer="adam")
    ns = [int(n) for n in args.ns.split(",")]
    train = load_data("builtin:mnistm", split="train", progress=False)
    test = load_data("builtin:mnistm", split="test", progress=False)
    test_xy = (test.floats(), test.labels)
    folder = Path(args.run_dir) / "models" / "mnist-mnistm"
    models = {m: load_checkpoint(folder / f"{m}.pt")[0] for m in args.models.split(",")}
    models["scratch"] = fr._scratch(budget.arch)
    out: dict[str, dict[str, list[float]]] = {}
    for label, model in models.items():
        strategies = ["direct-all"] if label == "scratch" else args.strategies.split(",")
        for strategy in strategies:
            accs = []
            for n in ns:
                per_seed = []
                for seed in budget.seeds:
                    net = model(seed) if label == "scratch" else model
                    b = fr.Budget(**{**budget.__dict__, "thief": thief})
                    per_seed.append(fr._point(net, strategy, train, n, test_xy, seed, b)["test"])
                accs.append(statistics.fmean(per_seed))
            out.setdefault(label, {})[strategy] = accs
            curve = " / ".join(f"{100 * a:.0f}" for a in accs)
            print(f"{label} {strategy} (Adam) N = {args.ns}: {curve}", flush=True)
    return out


if __name__ == "__main__":
    main()
