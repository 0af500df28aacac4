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
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

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
from mapguard.metrics import st_d
from mapguard.synthesis import bn_loss, synthesize
from mapguard.training import accuracy, train_source

INFORMATIVE = 0.25  # a pair is informative when the unprotected target accuracy is >= 25%


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mnist source only, one seed")
    ap.add_argument("--arch", default="vgg_small")
    ap.add_argument("--epochs", type=int, default=8, help="source-model training epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="DF-MAP seeds")
    ap.add_argument("--sf-seeds", type=int, nargs="+", default=[0], help="SF-MAP seeds")
    ap.add_argument("--methods", nargs="+", default=["sf-map", "df-map"])
    ap.add_argument("--models-dir", default="runs/authorization/models")
    ap.add_argument("--map-results", help="results JSON of benchmarks.authorization")
    ap.add_argument("--out", default="runs/authorization_free")
    add_overrides(ap, "--mask-option", "MaskConfig default of both methods, e.g. init_score=2")
    ap.add_argument(
        "--report-only", action="store_true", help="print the tables of the runs done so far"
    )
    return ap.parse_args()


class Bench:
    """Source models, test sets and the results file of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.domains = ["mnist"] if args.quick else list_domains()
        self.all_domains = list_domains()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tests = {
            d: load_data(f"builtin:{d}", split="test", progress=False) for d in self.all_domains
        }
        self.done = self._load_done()

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
    }


def run_sf(bench: Bench, src: str, tgt: str, seed: int) -> dict[str, Any]:
    key = f"sf-map:{src}:{tgt}:{seed}"
    if key in bench.done:
        return bench.done[key]
    target = load_data(f"builtin:{tgt}", split="train", progress=False)

    def learn(model: torch.nn.Module, mcfg: MaskConfig, cfg: FreeConfig) -> Any:
        return source_free_mask(model, target=target, mask_config=mcfg, config=cfg, progress=False)

    return _run_free(bench, key, "sf-map", src, [tgt], seed, SF_DEFAULTS, learn)


def run_df(bench: Bench, src: str, seed: int) -> dict[str, Any]:
    def learn(model: torch.nn.Module, mcfg: MaskConfig, cfg: FreeConfig) -> Any:
        return data_free_mask(model, mask_config=mcfg, config=cfg, progress=False)

    others = [d for d in bench.all_domains if d != src]
    return _run_free(bench, f"df-map:{src}:{seed}", "df-map", src, others, seed, DF_DEFAULTS, learn)


def _run_free(
    bench: Bench, key: str, kind: str, src: str, targets: list[str], seed: int,
    defaults: dict[str, Any], learn: Callable[[torch.nn.Module, MaskConfig, FreeConfig], Any],
) -> dict[str, Any]:  # fmt: skip
    """One SF-/DF-MAP run (read back when ``key`` is done): accuracies on every domain before,
    the timed ``learn(model, mask_config, config)``, accuracies after."""
    if key in bench.done:
        return bench.done[key]
    model = bench.model(src)
    before = bench.accuracies(model)
    cfg = FreeConfig(synthesis_seed=0)
    mcfg = MaskConfig.from_dict({**defaults, **bench.args.mask_option, "seed": seed})
    t0 = time.perf_counter()
    out = learn(model, mcfg, cfg)
    seconds = time.perf_counter() - t0
    after = bench.accuracies(apply_mask(model, out.mask))
    return bench.record(_row(kind, key, src, before, after, out, targets, seconds))


def _std(r: dict[str, Any], targets: list[str]) -> float | None:
    return st_d(
        source_before=r["before"][r["source"]],
        source_after=r["after"][r["source"]],
        target_before=[r["before"][t] for t in targets],
        target_after=[r["after"][t] for t in targets],
    )


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _load_map(path: str | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows of ``benchmarks.authorization --out`` keyed by (source, target, method)."""
    if not path:
        return {}
    rows = json.loads(Path(path).read_text())["rows"]
    return {(r["source"], r["target"], r["method"]): r for r in rows}


SF_HEADER = (
    "| source | target | src before | src after | drop (pts) | tgt before | tgt after "
    "| other domains after | ST-D | MAP ST-D | NTL ST-D | pruned | epoch | time (s) | target met |"
)


def _table(title: str, header: str) -> None:
    """Print a markdown table's title, header and separator row."""
    print(f"\n### {title}\n")
    print(header)
    print("|---" * header.count(" | ") + "|---|")


def _drop(r: dict[str, Any]) -> float:
    """Source accuracy lost by the run ``r``, in points."""
    return 100 * (r["before"][r["source"]] - r["after"][r["source"]])


def print_sf(rows: list[dict[str, Any]], baselines: dict[tuple[str, str, str], dict]) -> None:
    _table("SF-MAP (no source data; pseudo-source + real target)", SF_HEADER)
    hits = informative = beats = compared = 0
    for r in rows:
        s, t, drop = r["source"], r["targets"][0], _drop(r)
        info = r["before"][t] >= INFORMATIVE
        ok = drop <= 2.0 and r["after"][t] <= 0.20
        informative += info
        hits += info and ok
        std = _std(r, [t])
        mp, ntl = baselines.get((s, t, "map"), {}), baselines.get((s, t, "ntl"), {})
        if info and std is not None and ntl.get("st_d") is not None:
            compared += 1
            beats += std >= ntl["st_d"]
        others = ", ".join(f"{d} {r['after'][d]:.0%}" for d in r["after"] if d not in (s, t))
        verdict = ("yes" if ok else "no") if info else "(uninformative)"
        print(
            f"| {s} | {t} | {r['before'][s]:.1%} | {r['after'][s]:.1%} | {drop:.1f} "
            f"| {r['before'][t]:.1%} | {r['after'][t]:.1%} | {others} | {_fmt(std)} "
            f"| {_fmt(mp.get('st_d'))} | {_fmt(ntl.get('st_d'))} | {r['pruned']:.2%} "
            f"| {r['chosen_epoch']}/{r['epochs_run']} | {r['seconds']:.0f} | {verdict} |"
        )
    print(f"\nSF-MAP target (drop <= 2 pts, target <= 20%) met on {hits} of {informative} "
          "informative pairs.")  # fmt: skip
    if compared:
        print(f"SF-MAP ST-D >= NTL's (NTL given the real source data) on {beats} of {compared} "
              "informative pairs.")  # fmt: skip


DF_HEADER = (
    "| source | seed | src before | src after | drop (pts) | unseen domains before -> after "
    "| max unseen after | ST-D (informative unseen) | pruned | epoch | time (s) | target met |"
)


def print_df(rows: list[dict[str, Any]], mapped: dict[tuple[str, str, str], Any]) -> None:
    _table("DF-MAP (no data at all), one row per source and seed", DF_HEADER)
    for r in rows:
        s, drop = r["source"], _drop(r)
        unseen = ", ".join(f"{d} {r['before'][d]:.0%}->{r['after'][d]:.0%}" for d in r["targets"])
        worst = max(r["after"][d] for d in r["targets"])
        informative = [d for d in r["targets"] if r["before"][d] >= INFORMATIVE]
        std = _std(r, informative) if informative else None
        ok = drop <= 3.0 and worst <= 0.25
        print(
            f"| {s} | {r['key'].rsplit(':', 1)[1]} | {r['before'][s]:.1%} | {r['after'][s]:.1%} "
            f"| {drop:.1f} | {unseen} | {worst:.1%} | {_fmt(std)} | {r['pruned']:.2%} "
            f"| {r['chosen_epoch']}/{r['epochs_run']} | {r['seconds']:.0f} "
            f"| {'yes' if ok else 'no'} |"
        )
    by_src: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_src.setdefault(r["source"], []).append(r)
    print("\nper source, mean over seeds: source drop (pts) / max unseen accuracy")
    for s, rs in by_src.items():
        drops = [_drop(r) for r in rs]
        worst = [max(r["after"][d] for d in r["targets"]) for r in rs]
        d_txt = f"{statistics.mean(drops):.1f} (range {min(drops):.1f} to {max(drops):.1f})"
        w_txt = f"{statistics.mean(worst):.1%} (range {min(worst):.1%} to {max(worst):.1%})"
        print(f"- {s}: {d_txt} / {w_txt}")
    if mapped:  # per (run, informative unseen domain): DF-MAP's ST-D on that pair vs NTL's
        pairs = [
            (_std(r, [d]), mapped[(r["source"], d, "ntl")]["st_d"] or 0.0)
            for r in rows
            for d in r["targets"]
            if r["before"][d] >= INFORMATIVE and (r["source"], d, "ntl") in mapped
        ]
        beats = sum((df or 0.0) >= ntl for df, ntl in pairs)
        print(
            f"\nDF-MAP ST-D >= NTL's (NTL given the real source *and target* data) on {beats} "
            f"of {len(pairs)} (run, informative unseen domain) pairs."
        )


def print_synthesis(rows: list[dict[str, Any]]) -> None:
    print("\n### Pseudo-source synthesis\n")
    print("| source model | images | time (s) | source-model agreement | BN loss "
          "| real-data BN loss | fidelity (independent vgg_tiny) |")  # fmt: skip
    print("|---" * 7 + "|")
    for r in rows:
        print(
            f"| {r['source']} | {r['n']} | {r['seconds']:.0f} | {r['agreement']:.1%} "
            f"| {r['bn_loss']:.2f} | {r['real_bn_loss']:.2f} | {r['fidelity']:.1%} |"
        )


def report(bench: Bench, args: argparse.Namespace) -> None:
    """Tables from the finished runs only (nothing is trained or learned)."""
    rows = list(bench.done.values())
    order = {d: i for i, d in enumerate(bench.all_domains)}

    def key(r: dict[str, Any]) -> tuple:
        return (order[r["source"]], [order.get(t, 9) for t in r.get("targets", [])], r["key"])

    synth = sorted((r for r in rows if r["kind"] == "synthesis"), key=key)
    sf = sorted((r for r in rows if r["kind"] == "sf-map"), key=key)
    df = sorted((r for r in rows if r["kind"] == "df-map"), key=key)
    print(f"(finished runs in {bench.out / 'runs.jsonl'}: {len(synth)} syntheses, "
          f"{len(sf)} SF-MAP, {len(df)} DF-MAP)")  # fmt: skip
    print_synthesis(synth)
    if sf:
        print_sf(sf, _load_map(args.map_results))
    if df:
        print_df(df, _load_map(args.map_results))


def main() -> None:
    args = _args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bench = Bench(args)
    if args.report_only:
        report(bench, args)
        return
    seeds = args.seeds[:1] if args.quick else args.seeds
    synth, sf, df = [], [], []
    for src in bench.domains:  # first seed of everything first: early results, then more seeds
        synth.append(_synthesis_row(bench, src, FreeConfig(synthesis_seed=0)))
        if "sf-map" in args.methods:
            for tgt in [d for d in bench.all_domains if d != src]:
                sf += [run_sf(bench, src, tgt, seed) for seed in args.sf_seeds]
                print(f"sf-map {src}->{tgt} done", flush=True)
        if "df-map" in args.methods:
            df.append(run_df(bench, src, seeds[0]))
            print(f"df-map {src} seed {seeds[0]} done", flush=True)
    if "df-map" in args.methods:
        for seed in seeds[1:]:
            for src in bench.domains:
                df.append(run_df(bench, src, seed))
                print(f"df-map {src} seed {seed} done", flush=True)
    df.sort(key=lambda r: (bench.domains.index(r["source"]), r["key"]))
    print(
        f"\nmachine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, "
        f"cuda={torch.cuda.is_available()}; arch {args.arch}, source models {args.epochs} epochs"
    )
    print_synthesis(synth)
    if sf:
        print_sf(sf, _load_map(args.map_results))
    if df:
        print_df(df, _load_map(args.map_results))


if __name__ == "__main__":
    main()
