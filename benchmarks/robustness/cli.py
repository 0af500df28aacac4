"""The robustness benchmark's command line and its walk: source model, watermark, attacks,
transforms, independent models, summary, authorization part, outputs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._options import add_overrides
from benchmarks.robustness.cache import log, source_model, watermark
from benchmarks.robustness.plan import ALPHA, FULL, QUICK, SOURCE, Budget
from benchmarks.robustness.report import render
from benchmarks.robustness.run import CHANNELS, attack_rows, independent_rows, transform_rows
from benchmarks.robustness.stats import embed_notes, per_attack, summarise
from mapguard.data import load_data
from verification.channel import channel_spec
from verification.watermark_file import read_watermark, watermark_spec

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.robustness",
        description="Robustness and false-positive benchmark.",
    )
    ap.add_argument("--quick", action="store_true", help="small budgets (a few minutes)")
    ap.add_argument("--run-dir", help="cache of models (default runs/robustness[-quick])")
    ap.add_argument("--out", help="results JSON (default RUN_DIR/results.json)")
    ap.add_argument("--md", help="markdown tables (default RUN_DIR/robustness.md)")
    ap.add_argument("--plot", help="ROC-style plot PNG (default RUN_DIR/roc.png)")
    add_overrides(ap, "--embed-option", "EmbedConfig field, e.g. mask.weight_noise=0.1")
    ap.add_argument(
        "--secret-seed",
        type=int,
        help="benchmark only: seeded secrets, so that two recipes can be compared on one draw",
    )
    ap.add_argument(
        "--attacks", nargs="+", metavar="LABEL", help="only these rows of the attack table"
    )
    add_overrides(ap, "--protect-option", "authorization part: MAP option, e.g. weight_noise=0.1")
    ap.add_argument("--skip-auth", action="store_true", help="skip the authorization part")
    ap.add_argument("--from-results", help="only re-render table and plot from a results JSON")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.from_results:
        return render(json.loads(Path(args.from_results).read_text()), args, None)
    torch.set_num_threads(1 if args.quick else min(4, torch.get_num_threads()))
    budget = _budget(args.quick, args.attacks)
    run = Path(args.run_dir or ("runs/robustness-quick" if args.quick else "runs/robustness"))
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    source = source_model(run, budget)
    results = _watermark_part(run, source, budget, args, t0)
    if not args.skip_auth:
        from benchmarks import authorization_attacks as auth

        plan = auth.AUTH_QUICK if args.quick else auth.AUTH_FULL
        results["authorization"] = auth.authorization_rows(run, source, plan, args.protect_option)
        results["per_auth"] = auth.group(results["authorization"]["rows"])
    results["seconds"] = time.perf_counter() - t0
    results["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor(),
    }
    return render(results, args, run)


def _budget(quick: bool, labels: Sequence[str] | None) -> Budget:
    """``QUICK`` or ``FULL``, keeping only the attack rows ``labels`` if given."""
    budget = QUICK if quick else FULL
    if not labels:
        return budget
    known = {a.label for a in budget.attacks}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise SystemExit(f"unknown attack label(s) {unknown}; known: {sorted(known)}")
    chosen = tuple(a for a in budget.attacks if a.label in labels)
    return dataclasses.replace(budget, attacks=chosen)


def _watermark_part(
    run: Path, source: Path, budget: Budget, args: argparse.Namespace, t0: float
) -> dict[str, Any]:
    """Embed (once), then verify the attacked copies, the transforms and the independent models."""
    wm_dir = watermark(run, source, budget, args.embed_option, args.secret_seed)
    wm = read_watermark(wm_dir / "owner.wm")
    spec, analysis, m = watermark_spec(wm), wm.analysis, wm.null_keys_per_secret
    chan = channel_spec(wm)
    if chan is not None:
        CHANNELS[spec.commitment_digest] = chan
    test = load_data(SOURCE, split="test", progress=False)
    results: dict[str, Any] = {"quick": args.quick, "alpha": ALPHA, "null_keys_per_secret": m,
                               "secret_seed": args.secret_seed, "watermark_dir": str(wm_dir),
                               "n_secrets": wm.n_secrets, "n_images": spec.n_images,
                               "embed": json.loads((wm_dir / "metrics.json").read_text()),
                               "embed_config": json.loads((wm_dir / "embed-config.json")
                                                          .read_text())}  # fmt: skip
    results["notes"] = embed_notes(results["embed"])
    for note in results["notes"]:
        log(f"WARNING: {note}")
    results["attacks"] = attack_rows(run, wm_dir, spec, analysis, test, budget)
    log(f"attacks verified ({time.perf_counter() - t0:.0f} s)")
    results["transforms"] = transform_rows(wm_dir, spec, analysis, test, budget)
    results["independent"] = independent_rows(run, source, spec, analysis, test, budget)
    log(f"transforms and independent models verified ({time.perf_counter() - t0:.0f} s)")
    results["per_attack"] = per_attack(results["attacks"])
    results["per_transform"] = per_attack(results["transforms"])
    results["summary"] = summarise(results["attacks"], results["transforms"],
                                   results["independent"])  # fmt: skip
    return results
