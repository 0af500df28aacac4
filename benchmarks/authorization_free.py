"""Authorization benchmark without source data (SF-MAP) and without any data (DF-MAP).

* SF-MAP: all 20 ordered (source, target) pairs of the five built-in domains; the source data are
  never used (a pseudo-source is synthesised from the model), the target's train split is.
* DF-MAP: one run per source domain and seed, evaluated on the four other domains (none seen).
* Synthesis: time and count per source model, and fidelity = accuracy of an *independently
  trained* model (another architecture, another seed) on the pseudo-source.

Source models are ``{arch}-{domain}-e{epochs}-s0.pt`` in ``--models-dir`` (shared with
:mod:`benchmarks.authorization`; trained here when missing). Every finished run is stored in
``--out/runs.jsonl`` and skipped when the benchmark is restarted. With ``--map-results`` (the
JSON :mod:`benchmarks.authorization` writes with ``--out``) the SF-MAP table also shows MAP and
NTL *given the real source data* on the same pairs, and counts the pairs where SF-MAP's ST-D is
at least NTL's.

    python -m benchmarks.authorization_free [--quick] [--seeds 0 1 2] [--map-results FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._free_estimates import print_estimates, scatter
from benchmarks._free_tables import (
    FLOOR,
    SIGNALS,
    calibrate,
    load_map,
    print_df,
    print_df_issue,
    print_paired,
    print_sf,
    print_synthesis,
)
from benchmarks._free_variants import VARIANTS
from benchmarks._options import add_overrides
from mapguard.checkpoint import load_checkpoint
from mapguard.data import list_domains, load_data
from mapguard.masking import MaskConfig, apply_mask
from mapguard.methods.free import (
    DF_DEFAULTS,
    SF_DEFAULTS,
    FreeConfig,
    data_free_mask,
    source_free_mask,
)
from mapguard.synthesis import bn_loss, synthesize
from mapguard.training import accuracy, train_source

_MASK_KEYS = {f.name for f in dataclasses.fields(MaskConfig)}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mnist source only, one seed")
    ap.add_argument("--sources", nargs="+", help="source domains to run (default: all)")
    ap.add_argument(
        "--pairs", nargs="+", help="SF-MAP pairs to run, as SOURCE:TARGET (default all)"
    )
    ap.add_argument(
        "--test-images", type=int, help="measure on this many test images per domain (default all)"
    )
    ap.add_argument("--arch", default="vgg_small")
    ap.add_argument("--epochs", type=int, default=8, help="source-model training epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="DF-MAP seeds")
    ap.add_argument("--sf-seeds", type=int, nargs="+", default=[0], help="SF-MAP seeds")
    ap.add_argument("--methods", nargs="+", default=["sf-map", "df-map"])
    ap.add_argument("--models-dir", default="runs/authorization/models")
    ap.add_argument("--map-results", help="results JSON of benchmarks.authorization")
    ap.add_argument("--out", default="runs/authorization_free")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--plot", help="write the predicted-vs-measured drop scatter plot (PNG)")
    add_overrides(ap, "--mask-option", "MaskConfig default of both methods, e.g. init_score=2")
    ap.add_argument(
        "--report-only", action="store_true", help="print the tables of the runs done so far"
    )
    return ap.parse_args()


class Bench:
    """Source models, test sets and the results file of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        from_pairs = list(dict.fromkeys(p.split(":")[0] for p in args.pairs or ()))
        self.domains = ["mnist"] if args.quick else (args.sources or from_pairs or list_domains())
        self.all_domains = list_domains()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tests = {
            d: load_data(f"builtin:{d}", split="test", progress=False) for d in self.all_domains
        }
        if args.test_images:  # a fixed random subset per domain, the same for every run
            self.tests = {d: t.take(args.test_images, seed=0) for d, t in self.tests.items()}
        self._before: dict[str, dict[str, float]] = {}
        self.done = self._load_done()

    def wanted(self, src: str, tgt: str) -> bool:
        """Whether ``--pairs`` (when given) asks for the SF-MAP pair ``src -> tgt``."""
        return not self.args.pairs or f"{src}:{tgt}" in self.args.pairs

    def _load_done(self) -> dict[str, dict[str, Any]]:
        path = self.out / "runs.jsonl"
        if not path.exists():
            return {}
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {r["key"]: r for r in rows}

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        self.done[row["key"]] = row
        with open(self.out / "runs.jsonl", "a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
        return row

    def model(self, domain: str, *, arch: str | None = None, seed: int = 0) -> torch.nn.Module:
        arch = arch or self.args.arch
        path = Path(self.args.models_dir) / f"{arch}-{domain}-e{self.args.epochs}-s{seed}.pt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            train_source(
                f"builtin:{domain}",
                arch=arch,
                out=path,
                epochs=self.args.epochs,
                seed=seed,
                progress=False,
            )
        return load_checkpoint(path)[0]

    def accuracies(self, model: torch.nn.Module) -> dict[str, float]:
        return {d: accuracy(model, t) for d, t in self.tests.items()}

    def before(self, src: str) -> dict[str, float]:
        """Accuracies of the unprotected source model (computed once per source)."""
        if src not in self._before:
            self._before[src] = self.accuracies(self.model(src))
        return self._before[src]


def _synthesis_row(bench: Bench, src: str, cfg: FreeConfig) -> dict[str, Any]:
    key = f"synthesis:{src}:{cfg.n_pseudo}:{cfg.synthesis_seed}"
    if key in bench.done:
        return bench.done[key]
    model = bench.model(src)
    result = synthesize(
        model, n=cfg.n_pseudo, config=cfg.synthesis, seed=cfg.synthesis_seed, progress=False
    )
    seconds = result.stats.seconds  # the optimisation's own time, also when read from the cache
    judge = bench.model(src, arch="vgg_tiny", seed=1)  # independent: other architecture and seed
    with torch.no_grad():
        fidelity = float((judge(result.floats()).argmax(1) == result.labels).float().mean())
    real = load_data(f"builtin:{src}", split="train", progress=False).take(1000, seed=0)
    return bench.record(
        {
            "key": key,
            "kind": "synthesis",
            "source": src,
            "n": len(result),
            "seconds": seconds,
            "agreement": result.stats.agreement,
            "bn_loss": result.stats.bn_loss,
            "fidelity": fidelity,
            "real_bn_loss": bn_loss(model, real.floats(), batch_size=cfg.synthesis.batch_size),
        }
    )


def _row(
    kind: str,
    key: str,
    src: str,
    before: dict,
    after: dict,
    out,
    targets: list[str],
    seconds: float,
) -> dict:
    return {
        "key": key,
        "kind": kind,
        "source": src,
        "targets": targets,
        "before": before,
        "after": after,
        "pruned": out.pruned_fraction,
        "seconds": seconds,
        "chosen_epoch": out.chosen_epoch,
        "epochs_run": len(out.held_out_kl),
        "within_threshold": out.within_threshold,
        "held_out_kl": list(out.held_out_kl),
        "degrade_accuracy": list(out.degrade_accuracy),
        "reached_goal": out.reached_goal,
        "disagreement": list(out.disagreement),
        "estimated_source_drop": out.estimated_source_drop,
        "restyled_drop": getattr(out, "restyled_drop", None),
        "variant": key.split(":")[1],
    }


def run_sf(bench: Bench, src: str, tgt: str, seed: int, variant: str) -> dict[str, Any]:
    key = f"sf-map:{variant}:{src}:{tgt}:{seed}"
    if key in bench.done:
        return bench.done[key]
    target = load_data(f"builtin:{tgt}", split="train", progress=False)

    def learn(model: torch.nn.Module, mcfg: MaskConfig, cfg: FreeConfig) -> Any:
        return source_free_mask(model, target=target, mask_config=mcfg, config=cfg, progress=False)

    return _run_free(bench, key, "sf-map", src, [tgt], seed, SF_DEFAULTS, learn)


def run_df(bench: Bench, src: str, seed: int, variant: str) -> dict[str, Any]:
    def learn(model: torch.nn.Module, mcfg: MaskConfig, cfg: FreeConfig) -> Any:
        return data_free_mask(model, mask_config=mcfg, config=cfg, progress=False)

    others = [d for d in bench.all_domains if d != src]
    key = f"df-map:{variant}:{src}:{seed}"
    return _run_free(bench, key, "df-map", src, others, seed, DF_DEFAULTS, learn)


def _run_free(
    bench: Bench, key: str, kind: str, src: str, targets: list[str], seed: int,
    defaults: dict[str, Any], learn: Callable[[torch.nn.Module, MaskConfig, FreeConfig], Any],
) -> dict[str, Any]:  # fmt: skip
    """One SF-/DF-MAP run (read back when ``key`` is done): accuracies on every domain before,
    the timed ``learn(model, mask_config, config)``, accuracies after."""
    if key in bench.done:
        return bench.done[key]
    model = bench.model(src)
    before = bench.before(src)
    variant = VARIANTS[key.split(":")[1]]  # FreeConfig options, and MaskConfig ones if any
    cfg = FreeConfig(synthesis_seed=0, **{k: v for k, v in variant.items() if k not in _MASK_KEYS})
    masked = {k: v for k, v in variant.items() if k in _MASK_KEYS}
    mcfg = MaskConfig.from_dict({**defaults, **bench.args.mask_option, **masked, "seed": seed})
    t0 = time.perf_counter()
    out = learn(model, mcfg, cfg)
    seconds = time.perf_counter() - t0
    after = bench.accuracies(apply_mask(model, out.mask))
    return bench.record(_row(kind, key, src, before, after, out, targets, seconds))


def report(bench: Bench, args: argparse.Namespace) -> None:
    """Tables from the finished runs of ``--variants`` only (nothing is trained or learned):
    per variant, then paired, then the leave-one-pair-out calibration of the drop estimate (and
    its plot)."""
    rows = [r for r in bench.done.values()
            if r["kind"] == "synthesis" or r["variant"] in args.variants]  # fmt: skip
    order = {d: i for i, d in enumerate(bench.all_domains)}

    def key(r: dict[str, Any]) -> tuple:
        return (order[r["source"]], [order.get(t, 9) for t in r.get("targets", [])], r["key"])

    synth = sorted((r for r in rows if r["kind"] == "synthesis"), key=key)
    free = sorted((r for r in rows if r["kind"] != "synthesis"), key=key)
    print(f"(finished runs in {bench.out / 'runs.jsonl'}: {len(synth)} syntheses, "
          f"{len(free)} SF-/DF-MAP)")  # fmt: skip
    cals = [calibrate(free, signal) for signal in SIGNALS]  # the last (collateral) sets the LOO
    print_synthesis(synth)
    baselines = load_map(args.map_results)
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in free)]
    for v in variants:
        sf = [r for r in free if r["kind"] == "sf-map" and r["variant"] == v]
        df = [r for r in free if r["kind"] == "df-map" and r["variant"] == v]
        if sf:
            print_sf(sf, baselines, title=f", variant {v}")
        if df:
            print_df(df, baselines, title=f", variant {v}")
    df_variants = [v for v in variants if any(r["variant"] == v and r["kind"] == "df-map"
                                               for r in free)]  # fmt: skip
    if df_variants:
        print_df_issue(rows, df_variants)
    for kind in ("sf-map", "df-map"):
        print_paired(free, kind, variants)
        for v in variants:  # each newer variant against the SF-MAP default of session 6
            if v not in ("base", "boundary") and "boundary" in variants:
                print_paired(free, kind, ["boundary", v])
    for cal in cals:
        if cal:
            print(f"\nDrop estimate from the {cal['signal']} signal, fitted on {cal['n']} SF-MAP "
                  f"runs ({cal['pairs']} pairs): coefficients {[round(c, 4) for c in cal['coef']]} "
                  f"(last: offset); leave-one-pair-out estimate within 2 pts of the measured drop "
                  f"on {cal['within_2pts']} of {cal['n']} runs; absolute margin "
                  f"{cal['margin']:.4f}; relative margin {cal['relative_margin']:.3f} (interval "
                  f"p -/+ {cal['relative_margin']:.2f} (p + {FLOOR}) covers the drop on "
                  f"{cal['coverage']} of {cal['n']}).")  # fmt: skip
    print_estimates(free, variants)
    if args.plot and cals[-1]:
        scatter(free, Path(args.plot))
        print(f"scatter plot: {args.plot}")


def main() -> None:
    args = _args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bench = Bench(args)
    if args.report_only:
        report(bench, args)
        return
    seeds = args.seeds[:1] if args.quick else args.seeds
    for src in bench.domains:  # first seed of everything first: early results, then more seeds
        _synthesis_row(bench, src, FreeConfig(synthesis_seed=0))
        if "sf-map" in args.methods:
            for tgt in [d for d in bench.all_domains if d != src and bench.wanted(src, d)]:
                for seed in args.sf_seeds:
                    for v in args.variants:  # paired: both variants before the next pair
                        run_sf(bench, src, tgt, seed, v)
                print(f"sf-map {src}->{tgt} done", flush=True)
        if "df-map" in args.methods:
            for v in args.variants:
                run_df(bench, src, seeds[0], v)
            print(f"df-map {src} seed {seeds[0]} done", flush=True)
    if "df-map" in args.methods:
        for seed in seeds[1:]:
            for src in bench.domains:
                for v in args.variants:
                    run_df(bench, src, seed, v)
                print(f"df-map {src} seed {seed} done", flush=True)
    print(
        f"\nmachine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, "
        f"cuda={torch.cuda.is_available()}; arch {args.arch}, source models {args.epochs} epochs"
    )
    report(bench, args)


if __name__ == "__main__":
    main()
