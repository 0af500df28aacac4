"""Authorization benchmark: MAP vs the NTL baseline on ordered (source, target) domain pairs.

For each pair both methods start from the same source model (trained once per domain and cached)
and get the same epoch budget. Reported per pair and method: source accuracy before/after, target
accuracy before/after, accuracy on the three other domains, ST-D, pruned fraction and wall time;
plus the mask learner's throughput relative to plain fine-tuning of the same model (images/s).
A pair is *informative* when the unprotected target accuracy is >= 25% (chance is 10%).

    python -m benchmarks.authorization [--quick] [--methods map,ntl] [--out results.json]
        [--run-dir runs/authorization] [--models-dir DIR] [--pairs mnist:mnistm,...]

Each finished (pair, method) row is kept under ``RUN_DIR/pairs`` and reused when the benchmark is
run again (``--fresh`` redoes them), so an interrupted run resumes where it stopped.
``--quick`` trains two source models briefly and runs 4 informative pairs with a reduced budget
(a few minutes on 2 cores); the default runs all 20 pairs with the methods' default budgets.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mapguard.checkpoint import load_checkpoint
from mapguard.data import list_domains, load_data
from mapguard.masking import MaskConfig, TensorSource, learn_mask
from mapguard.protect import protect
from mapguard.training import accuracy, batches, train_source
from protocols.fileio import atomic_write_text

INFORMATIVE = 0.25
QUICK_PAIRS = ("mnist:mnistm", "mnist:optdigits", "syn:svhnlike", "syn:mnistm", "syn:optdigits")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Source-model training epochs and the protection options given to every method."""

    source_epochs: int
    options: dict[str, Any]
    throughput_steps: int


FULL = Budget(source_epochs=8, options={}, throughput_steps=40)
QUICK = Budget(
    source_epochs=4, options={"epochs": 2, "max_steps_per_epoch": 30}, throughput_steps=20
)


def source_model(domain: str, args: argparse.Namespace, budget: Budget) -> Path:
    """Train (once) and cache the source model of ``domain``."""
    models = Path(args.models_dir or Path(args.run_dir) / "models")
    models.mkdir(parents=True, exist_ok=True)
    path = models / f"{args.arch}-{domain}-e{budget.source_epochs}-s{args.seed}.pt"
    if not path.exists():
        t0 = time.perf_counter()
        train_source(f"builtin:{domain}", arch=args.arch, out=path, epochs=budget.source_epochs,
                     seed=args.seed, progress=False)  # fmt: skip
        print(f"trained {domain} source model in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def baseline_accuracies(path: Path, tests: dict[str, Any]) -> dict[str, float]:
    model, _ = load_checkpoint(path)
    return {d: accuracy(model, t) for d, t in tests.items()}


def choose_pairs(
    args: argparse.Namespace, budget: Budget, tests: dict[str, Any]
) -> list[tuple[str, str]]:
    if args.pairs:
        return [tuple(p.split(":")) for p in args.pairs.split(",")]  # type: ignore[misc]
    if not args.quick:
        return list(itertools.permutations(list_domains(), 2))
    chosen = []
    for pair in QUICK_PAIRS:
        s, t = pair.split(":")
        if baseline_accuracies(source_model(s, args, budget), {t: tests[t]})[t] >= INFORMATIVE:
            chosen.append((s, t))
        if len(chosen) == 4:
            break
    return chosen


def run_pair(
    src: str, tgt: str, method: str, args: argparse.Namespace, budget: Budget
) -> dict[str, Any]:
    out = Path(args.run_dir) / "pairs" / f"{src}-{tgt}"
    out.mkdir(parents=True, exist_ok=True)
    done = out / f"{method}-{'quick' if args.quick else 'full'}-s{args.seed}.row.json"
    if done.exists() and not args.fresh:
        return json.loads(done.read_text())  # finished by an earlier, interrupted invocation
    t0 = time.perf_counter()
    report = protect(
        source_model(src, args, budget), source=f"builtin:{src}", targets=[f"builtin:{tgt}"],
        method=method, out=out / f"{method}.pt", metrics_out=out / f"{method}.json",
        options=budget.options, seed=args.seed, force=True, progress=False,
    )  # fmt: skip
    m = report.metrics
    tb, ta = m.targets[f"builtin:{tgt}"]
    row = {
        "source": src, "target": tgt, "method": method,
        "source_before": m.source_before, "source_after": m.source_after,
        "target_before": tb, "target_after": ta, "informative": tb >= INFORMATIVE,
        "others": {
            k.removeprefix("builtin:"): {"before": b, "after": a} for k, (b, a) in m.others.items()
        },
        "st_d": m.st_d, "pruned_fraction": m.pruned_fraction,
        "method_seconds": report.method_seconds, "wall_seconds": time.perf_counter() - t0,
    }  # fmt: skip
    atomic_write_text(done, json.dumps(row, indent=2) + "\n", force=True)
    return row


def _finetune_images_per_second(model, x, y, *, steps: int, batch_size: int) -> float:  # noqa: ANN001
    """Plain fine-tuning (Adam on all weights, cross-entropy, train mode) of a copy of ``model``."""
    import copy

    net = copy.deepcopy(model).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def endless():  # noqa: ANN202 - as many passes over the data as the steps need
        while True:
            yield from batches(x, y, batch_size=batch_size, generator=gen, drop_last=True)

    it = endless()
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        xb, yb = next(it)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += xb.shape[0]
    return n / (time.perf_counter() - t0)


def throughput(
    src: str, tgt: str, args: argparse.Namespace, budget: Budget, repeats: int = 3
) -> dict[str, Any]:
    """Images/s of mask learning vs plain fine-tuning, same model and batch, interleaved runs.

    Mask learning pushes ``B`` keep + ``B`` degrade images per step through the masked model;
    fine-tuning pushes ``2B`` images per step. The mask run makes 2 epochs over a keep set of
    ``steps / 2`` batches, so its time includes caching the teacher's logits once per 2 epochs
    (the default budget is 4 epochs: this is conservative).
    """
    model, _ = load_checkpoint(source_model(src, args, budget))
    steps, b = budget.throughput_steps, 64
    train_s = load_data(f"builtin:{src}", split="train", progress=False)
    train_t = load_data(f"builtin:{tgt}", split="train", progress=False)
    keep = TensorSource(train_s.floats()[: steps // 2 * b], seed=0)
    degrade = TensorSource(train_t.floats(), train_t.labels, seed=1)
    cfg = MaskConfig(epochs=2, batch_size=b)
    mask_ips, ft_ips = [], []
    for _ in range(repeats):
        res = learn_mask(model, keep=keep, degrade=degrade, config=cfg, progress=False)
        mask_ips.append(res.images_per_second)
        ft_ips.append(
            _finetune_images_per_second(
                model, train_s.floats(), train_s.labels, steps=steps, batch_size=2 * b
            )
        )
    ratios = [m / f for m, f in zip(mask_ips, ft_ips)]
    return {
        "pair": f"{src}->{tgt}", "steps": steps, "batch_per_domain": b,
        "mask_images_per_second": statistics.median(mask_ips),
        "finetune_images_per_second": statistics.median(ft_ips),
        "ratio": statistics.median(ratios), "ratios": ratios,
    }  # fmt: skip


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def render(rows: list[dict[str, Any]], tp: dict[str, Any] | None) -> str:
    lines = [
        "| source → target | method | source before → after | target before → after | "
        "other domains after (before) | ST-D | pruned | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        others = ", ".join(
            f"{k} {_pct(v['after'])} ({_pct(v['before'])})" for k, v in r["others"].items()
        )
        st = "n/a" if r["st_d"] is None else f"{r['st_d']:.3f}"
        flag = "" if r["informative"] else " (uninformative)"
        lines.append(
            f"| {r['source']} → {r['target']}{flag} | {r['method']} | "
            f"{_pct(r['source_before'])} → {_pct(r['source_after'])} | "
            f"{_pct(r['target_before'])} → {_pct(r['target_after'])} | {others} | {st} | "
            f"{100 * r['pruned_fraction']:.2f}% | {r['method_seconds']:.0f} |"
        )
    lines += ["", *summary_lines(rows)]
    if tp:
        lines.append(
            f"- mask-learning throughput {tp['mask_images_per_second']:.0f} img/s vs plain "
            f"fine-tuning {tp['finetune_images_per_second']:.0f} img/s ({tp['pair']}): "
            f"ratio **{tp['ratio']:.2f}x** (target >= 0.75x; runs: "
            f"{', '.join(f'{r:.2f}' for r in tp['ratios'])})"
        )
    return "\n".join(lines)


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """How the rows fare against the issue's targets (informative pairs only)."""
    by = {(r["source"], r["target"], r["method"]): r for r in rows}
    pairs = sorted({(r["source"], r["target"]) for r in rows if r["informative"]})
    maps = [by[p + ("map",)] for p in pairs if p + ("map",) in by]
    out = [f"- informative pairs: {len(pairs)}"]
    if maps:
        ok = [
            r
            for r in maps
            if r["source_before"] - r["source_after"] <= 0.01 and r["target_after"] <= 0.15
        ]
        out.append(f"- MAP source drop <= 1.0 pt and target <= 15%: {len(ok)}/{len(maps)}")
        miss = [r for r in maps if r not in ok]
        for r in miss:
            out.append(
                f"  - miss {r['source']} → {r['target']}: source drop "
                f"{100 * (r['source_before'] - r['source_after']):.1f} pt, "
                f"target {_pct(r['target_after'])}%"
            )
    both = [p for p in pairs if p + ("map",) in by and p + ("ntl",) in by]
    if both:
        wins = [
            p for p in both if (by[p + ("map",)]["st_d"] or 0) >= (by[p + ("ntl",)]["st_d"] or 0)
        ]
        out.append(f"- MAP ST-D >= NTL ST-D: {len(wins)}/{len(both)} (target: all but at most two)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 informative pairs, reduced budget.")
    ap.add_argument("--methods", default="map,ntl")
    ap.add_argument("--pairs", help="Comma-separated SOURCE:TARGET pairs (default: all or quick).")
    ap.add_argument("--out", help="Results JSON.")
    ap.add_argument("--run-dir", default="runs/authorization")
    ap.add_argument("--models-dir", help="Where source models are cached (default RUN_DIR/models).")
    ap.add_argument("--arch", default="vgg_small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="Redo pairs finished by an earlier run.")
    args = ap.parse_args()
    budget = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    tests = {d: load_data(f"builtin:{d}", split="test", progress=False) for d in list_domains()}
    pairs = choose_pairs(args, budget, tests)
    rows = []
    for (src, tgt), method in itertools.product(pairs, args.methods.split(",")):
        rows.append(run_pair(src, tgt, method, args, budget))
        r = rows[-1]
        print(f"{src} -> {tgt} {method}: source {_pct(r['source_after'])}, target "
              f"{_pct(r['target_before'])} -> {_pct(r['target_after'])}, "
              f"{r['method_seconds']:.0f} s", flush=True)  # fmt: skip
    tp = None if args.no_throughput or not pairs else throughput(*pairs[0], args, budget)
    header = (
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, cuda={torch.cuda.is_available()}; arch {args.arch}, "
        f"source epochs {budget.source_epochs}, options {json.dumps(budget.options)}, "
        f"seed {args.seed}; total {time.perf_counter() - t0:.0f} s"
    )
    print("\n" + header + "\n\n" + render(rows, tp))
    if args.out:
        doc = {"header": header, "quick": args.quick, "rows": rows, "throughput": tp}
        atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n", force=True)


if __name__ == "__main__":
    main()
