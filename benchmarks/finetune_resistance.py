"""Fine-tuning resistance: how many labelled target images undo a protection?

For each (source, target) pair the source model is protected by every method variant (same seed,
same budget, one run), and each protected model, the unprotected model and a randomly
initialised model of the same architecture are fine-tuned on ``N`` labelled target images with
NTLBench's four strategies (:mod:`benchmarks.finetune_resistance_curves`); the thief picks the
learning rate on a validation split of its own ``N`` images. Reported: the target learning
curves (PNG), SLC-AUC relative to from-scratch (over ``N <= 100`` and over the whole grid, for
each strategy and for the best one per ``N``), source accuracy and protection time, and the
clean-source attacks (FTAL / RTAL on 10% of the source data, and a TransNTL-like fine-tuning on
10% of the source data under random domain shifts) and, with ``--distill``, the ATEsc-style
data-free escape (:mod:`benchmarks.finetune_resistance_distill`).

    python -m benchmarks.finetune_resistance [--quick] [--run-dir DIR] [--variants NAME,...]
        [--pairs mnist:mnistm,...] [--no-plot] [--timing] [--skip-source] [--distill]
        [--extra-thieves] [--thief-steps-scale S (default 5)] [--seeds K,...]

A variant ``NAME@sK`` is variant ``NAME`` protected with seed ``K`` (the spread over protection
seeds).

Every model and every curve point is cached under the run directory (a rerun resumes). The
quick run ends with one line per method, ``SLC-AUC <method> <value>`` (best strategy, N <= 100).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks import _thief_budget
from benchmarks import finetune_resistance_curves as fc
from benchmarks._finetune_variants import NFT_DEFAULTS, VARIANTS
from benchmarks.finetune_resistance_source import source_route, summary_lines
from benchmarks.robustness.cache import log, train_cached
from benchmarks.robustness.plan import Independent
from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data
from mapguard.models import create_model
from mapguard.training import accuracy
from protocols.fileio import atomic_write_text

__all__ = ["FULL", "QUICK", "VARIANTS", "Budget", "main"]


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Sizes of one run."""

    arch: str
    source_n_train: int
    source_epochs: int
    protect: Mapping[str, Any]
    ns: tuple[int, ...]
    seeds: tuple[int, ...]
    thief: fc.Thief
    variants: tuple[str, ...]
    source_epochs_attack: int
    pairs: tuple[str, ...] = ("mnist:mnistm",)
    extra: Mapping[str, Any] = field(default_factory=dict)
    thief_steps_scale: float = 1.0  # ``thief`` is already scaled; names the cache (_thief_budget)


QUICK = Budget(
    arch="vgg_tiny", source_n_train=1200, source_epochs=3,  # = the robustness quick source model
    protect={"epochs": 4, "max_steps_per_epoch": 30}, ns=(0, 10, 50, 100, 500), seeds=(0, 1),
    thief=fc.Thief(lrs=(0.01, 0.05), max_steps=120), variants=("map", "map-nft", NFT_DEFAULTS),
    source_epochs_attack=5,
)  # fmt: skip
FULL = Budget(
    arch="vgg_tiny", source_n_train=4000, source_epochs=6,
    protect={"epochs": 4, "max_steps_per_epoch": 60}, ns=(0, 10, 50, 100, 500), seeds=(0, 1, 2),
    thief=fc.Thief(lrs=(0.003, 0.01, 0.05)), variants=tuple(VARIANTS),
    source_epochs_attack=10, pairs=("mnist:mnistm", "syn:mnistm", "syn:svhnlike"),
)  # fmt: skip


def variant(label: str) -> tuple[str, dict[str, Any], int]:
    """``(method, options, protection seed)`` of a variant label; ``NAME@sK`` is variant ``NAME``
    protected with seed ``K`` (default 0), for a spread over protection seeds."""
    name, _, seed = label.partition("@s")
    method, options = VARIANTS[name]
    return method, options, int(seed or 0)


def source_model(run: Path, domain: str, budget: Budget) -> Path:
    """The source model of ``domain`` (trained once; the quick MNIST one is the robustness
    benchmark's, read from its cache when present)."""
    spec = Independent("source", f"builtin:{domain}", budget.arch, budget.source_n_train,
                       budget.source_epochs, 0)  # fmt: skip
    shared = Path("runs/robustness-quick/source.pt")
    quick = (budget.arch, budget.source_n_train, budget.source_epochs) == (
        QUICK.arch, QUICK.source_n_train, QUICK.source_epochs)  # fmt: skip
    if domain == "mnist" and quick:
        return train_cached(shared, spec)
    return train_cached(run / "models" / f"source-{domain}.pt", spec)


def protected_model(
    run: Path, src_path: Path, pair: tuple[str, str], label: str, budget: Budget
) -> tuple[Path, dict[str, Any]]:
    """Protect ``src_path`` with variant ``label`` (once); the model file and its metrics."""
    from mapguard.protect import protect

    method, options, seed = variant(label)
    folder = run / "models" / f"{pair[0]}-{pair[1]}"
    out, metrics = folder / f"{label}.pt", folder / f"{label}.json"
    if not metrics.exists():
        folder.mkdir(parents=True, exist_ok=True)
        report = protect(src_path, source=f"builtin:{pair[0]}", targets=[f"builtin:{pair[1]}"],
                         method=method, out=out, options={**budget.protect, **options}, seed=seed,
                         force=True, progress=False)  # fmt: skip
        info = {"method_seconds": report.method_seconds, "method": method, "options": options}
        atomic_write_text(metrics, json.dumps(info, indent=2) + "\n", force=True)
        log(f"{pair}: protected with {label} in {report.method_seconds:.0f} s")
    return out, json.loads(metrics.read_text())


def paired_timing(
    run: Path, pair: tuple[str, str], budget: Budget, reps: int = 2,
    labels: Sequence[str] = ("map", "map-nft"),
) -> dict:  # fmt: skip
    """Protection seconds of the variants ``labels`` (their options; seed 0), alternated ``reps``
    times in this process (same load for all; nothing cached): the time ratios to ``map`` the
    issue bounds by 5."""
    import tempfile

    from mapguard.protect import protect

    src_path = source_model(run, pair[0], budget)
    times: dict[str, list[float]] = {m: [] for m in ("map", *labels)}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(reps):
            for label in times:
                method, options, _ = variant(label)
                report = protect(src_path, source=f"builtin:{pair[0]}",
                                 targets=[f"builtin:{pair[1]}"], method=method,
                                 out=Path(tmp) / "model.pt",
                                 options={**budget.protect, **options}, seed=0, force=True,
                                 progress=False)  # fmt: skip
                times[label].append(report.method_seconds)
    ratios = {m: statistics.fmean(t) / statistics.fmean(times["map"]) for m, t in times.items()}
    return {"seconds": times, "ratio": ratios.get("map-nft"), "ratios": ratios}


def curve_rows(
    run: Path, pair: tuple[str, str], models: Mapping[str, Any], budget: Budget,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:  # fmt: skip
    """Every (model, strategy, N, seed) point, each cached as one JSON file (``extra``: thieves
    beyond NTLBench's four, e.g. ``frozenBN-all``, for every model but scratch)."""
    train = load_data(f"builtin:{pair[1]}", split="train", progress=False)
    test = load_data(f"builtin:{pair[1]}", split="test", progress=False)
    test_xy = (test.floats(), test.labels)
    rows = []
    for label, model in models.items():
        strategies = ("direct-all",) if label == "scratch" else (*fc.STRATEGIES, *extra)
        for strategy in strategies:
            for n in budget.ns:
                for seed in budget.seeds:
                    rows_dir = run / f"rows{_thief_budget.tag(budget.thief_steps_scale)}"
                    path = (
                        rows_dir / f"{pair[0]}-{pair[1]}" / f"{label}-{strategy}-n{n}-s{seed}.json"
                    )
                    if not path.exists():
                        net = model if isinstance(model, torch.nn.Module) else model(seed)
                        point = _point(net, strategy, train, n, test_xy, seed, budget)
                        row = {"model": label, "strategy": strategy, "n": n, "seed": seed, **point}
                        path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_text(path, json.dumps(row) + "\n", force=True)
                    rows.append(json.loads(path.read_text()))
        log(f"{pair}: curves of {label} done")
    return rows


def _point(net, strategy, train, n, test_xy, seed, budget) -> dict[str, float]:  # noqa: ANN001
    if n == 0:
        x, y = torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)
    else:
        sub = train.take(n, seed=seed)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        x, y = sub.floats()[order], sub.labels[order]
    return fc.attack_curve_point(net, strategy, x, y, test_xy, seed=seed, thief=budget.thief)


def _scratch(arch: str):  # noqa: ANN202
    def make(seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create_model(arch, num_classes=10)

    return make


def curves(rows: Sequence[Mapping[str, Any]], ns: Sequence[int]) -> dict[str, dict[str, list]]:
    """Mean test accuracy over seeds per model and strategy along ``ns``, plus ``best`` (the
    strongest of NTLBench's four strategies at each N) for every model."""
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        out.setdefault(r["model"], {}).setdefault(r["strategy"], [])
    for model, per in out.items():
        for strategy in per:
            per[strategy] = [statistics.fmean(r["test"] for r in rows if r["model"] == model and
                                              r["strategy"] == strategy and r["n"] == n)
                             for n in ns]  # fmt: skip
        four = [s for s in per if s not in fc.EXTRA_STRATEGIES]
        per["best"] = [max(per[s][i] for s in four) for i in range(len(ns))]
    return out


def slc_table(acc: Mapping[str, Mapping[str, list]], ns: Sequence[int]) -> dict[str, dict]:
    """SLC-AUC of every model and strategy vs scratch, over ``N <= 100`` and the whole grid."""
    cut = [i for i, n in enumerate(ns) if n <= 100]
    scratch = acc["scratch"]["direct-all"]
    table: dict[str, dict] = {}
    for model, per in acc.items():
        if model == "scratch":
            continue
        table[model] = {
            s: {"le100": fc.slc_auc([ns[i] for i in cut], [c[i] for i in cut],
                                 [scratch[i] for i in cut]),
                "all": fc.slc_auc(ns, c, scratch)}
            for s, c in per.items()
        }  # fmt: skip
    return table


def run_pair(
    run: Path,
    pair: tuple[str, str],
    budget: Budget,
    variants: Sequence[str],
    *,
    source: bool = True,
    distill: bool = False,
    extra: Sequence[str] = (),
) -> dict:
    """Models, curves, SLC-AUC, (``source``) the clean-source attacks and (``distill``) the
    ATEsc-style data-free escape of one pair."""
    src_path = source_model(run, pair[0], budget)
    tests = {d: load_data(f"builtin:{d}", split="test", progress=False) for d in pair}
    models: dict[str, Any] = {"unprotected": load_checkpoint(src_path)[0]}
    facts: dict[str, dict[str, Any]] = {"unprotected": {"method_seconds": 0.0}}
    for label in variants:
        path, facts[label] = protected_model(run, src_path, pair, label, budget)
        models[label] = load_checkpoint(path)[0]
    for label, model in models.items():
        facts[label] |= {f"{k}_accuracy": accuracy(model, tests[d])
                         for k, d in zip(("source", "target"), pair)}  # fmt: skip
    models["scratch"] = _scratch(budget.arch)
    rows = curve_rows(run, pair, models, budget, extra)
    acc = curves(rows, budget.ns)
    t0, route = time.perf_counter(), {}
    if source:
        route = source_route(run, pair, {k: v for k, v in models.items() if k != "scratch"},
                             tests[pair[1]], epochs=budget.source_epochs_attack)  # fmt: skip
        log(f"{pair}: source-data route in {time.perf_counter() - t0:.0f} s")
    escaped = {}
    if distill:
        from benchmarks.finetune_resistance_distill import distill_route

        stolen = {k: v for k, v in models.items() if k != "scratch"}
        per_seed = [distill_route(run, pair, stolen, tests, arch=budget.arch, seed=seed)
                    for seed in budget.seeds]  # fmt: skip
        escaped = {k: {m: statistics.fmean(r[k][m] for r in per_seed)
                       for m in ("student_source", "student_target")} for k in stolen}  # fmt: skip
        log(f"{pair}: data-free escape done")
    return {"pair": list(pair), "models": facts, "curves": acc, "ns": list(budget.ns),
            "slc_auc": slc_table(acc, budget.ns), "source_route": route, "distill_route": escaped,
            "rows": rows}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one pair, 2 learning rates, 2 seeds")
    ap.add_argument(
        "--run-dir", help="cache of models and points (default runs/finetune-resistance[-quick])"
    )
    ap.add_argument(
        "--variants", help=f"comma-separated protection variants ({', '.join(VARIANTS)})"
    )
    ap.add_argument("--pairs", help="comma-separated SOURCE:TARGET domain pairs")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG figures")
    ap.add_argument("--timing", action="store_true", help="also time map, map-nft, each variant")
    ap.add_argument(
        "--skip-source", action="store_true", help="skip the clean-source attacks (screening)"
    )
    ap.add_argument("--distill", action="store_true", help="also the ATEsc-style data-free escape")
    extra = ", ".join(fc.EXTRA_STRATEGIES)
    ap.add_argument("--extra-thieves", action="store_true", help=f"also {extra} (not in 'best')")
    _thief_budget.add_options(ap)
    args = ap.parse_args(argv)
    budget = _thief_budget.apply_options(ap, args, QUICK if args.quick else FULL)
    scale_tag = _thief_budget.tag(budget.thief_steps_scale)
    variants = tuple(args.variants.split(",")) if args.variants else budget.variants
    unknown = [v for v in variants if v.partition("@s")[0] not in VARIANTS
               or not (v.partition("@s")[2] or "0").isdigit()]  # fmt: skip
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    pairs = [tuple(p.split(":")) for p in (args.pairs.split(",") if args.pairs else budget.pairs)]
    run = Path(args.run_dir or ("runs/finetune-resistance" + ("-quick" if args.quick else "")))
    torch.set_num_threads(1)
    results = [run_pair(run, pair, budget, variants, source=not args.skip_source,
                        distill=args.distill,
                        extra=fc.EXTRA_STRATEGIES if args.extra_thieves else ())  # type: ignore[arg-type]
               for pair in pairs]  # fmt: skip
    if args.timing:
        labels = dict.fromkeys(["map-nft", *(v.partition("@s")[0] for v in variants)])
        timing = paired_timing(run, pairs[0], budget, labels=list(labels))  # type: ignore[arg-type]
        results[0]["timing"] = timing
        for method, ratio in timing["ratios"].items():
            print(f"protection time {method} / map: {ratio:.2f}x ({timing['seconds'][method]})")
    atomic_write_text(
        run / f"results{scale_tag}.json", json.dumps(results, indent=1) + "\n", force=True
    )
    if not args.no_plot:
        from benchmarks.finetune_resistance_source import plot_curves

        suffix = (
            ("-quick" if args.quick else "")
            + scale_tag
            + (f"-{len(pairs)}pairs" if len(pairs) > 1 else "")
        )
        plot_curves(results, Path("docs/images"), suffix)
    for res in results:
        print(f"\n{res['pair'][0]} -> {res['pair'][1]}\n" + "\n".join(summary_lines(res)))
        for label, per in res["slc_auc"].items():
            for s in (s for s in fc.EXTRA_STRATEGIES if s in per):
                print(
                    f"{label}: {s} SLC-AUC N≤100 {per[s]['le100']:+.2f}, all N {per[s]['all']:+.2f}"
                )
    for label in results[0]["slc_auc"]:  # mean over the pairs
        value = statistics.fmean(r["slc_auc"][label]["best"]["le100"] for r in results)
        print(f"SLC-AUC {label} {value:+.3f}")
    return {"results": results}


if __name__ == "__main__":
    main()
