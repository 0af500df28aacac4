"""Authorization under attack: does a MAP-protected model stay useless on the target domain
when a thief fine-tunes, prunes, quantises or re-grows it? (Part of the robustness benchmark.)

A model trained on MNIST is protected with MAP (target MNIST-M), attacked with the removal and
adaptation attacks of :mod:`mapguard.attacks`, and every copy's source and target accuracy is
reported; the unprotected model fine-tuned on 100 target images is the reference for what the
protection is worth. Models are cached in the robustness run directory.

    python -m benchmarks.authorization_attacks [--quick] [--run-dir DIR]
        [--protect-option KEY=VALUE ...]

``python -m benchmarks.robustness`` runs it too (unless ``--skip-auth``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._options import add_overrides
from benchmarks.robustness.cache import attacked_cached, source_model
from benchmarks.robustness.plan import FULL, QUICK, SOURCE, TARGET, AttackRun
from benchmarks.robustness.report import acc_cell
from benchmarks.robustness.stats import by_label, mean_ci
from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data
from mapguard.training import accuracy

__all__ = ["AUTH_FULL", "AUTH_QUICK", "AuthBudget", "authorization_rows", "group", "table"]


@dataclasses.dataclass(frozen=True)
class AuthBudget:
    """The attacks on the protected model and the MAP options it is protected with."""

    attacks: tuple[AttackRun, ...]
    protect_options: Mapping[str, Any]


def _auth_plan(ft_epochs: int, seeds: tuple[int, ...]) -> tuple[AttackRun, ...]:
    ft = {"fraction": 0.1, "epochs": ft_epochs, "lr": 0.01}
    return (
        AttackRun("ftll-10%", "ftll", ft, seeds),
        AttackRun("ftal-10%", "ftal", ft, seeds),
        AttackRun("rtal-10%", "rtal", ft, seeds),
        AttackRun("prune-50%", "prune", {"amount": 0.5}),
        AttackRun("fine-prune", "fine-prune", {**ft, "amount": 0.5}, seeds),
        AttackRun("quantize-int8", "quantize", {}),
        AttackRun("regrow", "regrow", {**ft, "noise_scale": 0.1}, seeds),
        AttackRun("target-ft-50", "target-ft", {"n_images": 50, "epochs": 20}, seeds, TARGET),
        AttackRun("target-ft-100", "target-ft", {"n_images": 100, "epochs": 20}, seeds, TARGET),
    )


AUTH_QUICK = AuthBudget(
    attacks=_auth_plan(5, (0,)), protect_options={"epochs": 2, "max_steps_per_epoch": 30}
)
AUTH_FULL = AuthBudget(attacks=_auth_plan(10, (0, 1, 2)), protect_options={})


def authorization_rows(
    run: Path, source: Path, budget: AuthBudget, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Protect ``source`` (once per recipe), attack it, and measure every copy."""
    from mapguard.protect import protect

    options = {**budget.protect_options, **(extra or {})}
    tag = hashlib.sha256(json.dumps(extra or {}, sort_keys=True).encode()).hexdigest()[:8]
    folder = run / ("map" if not extra else f"map-{tag}")  # one folder per protect recipe
    out, metrics = folder / "protected.pt", folder / "metrics.json"
    if not out.exists():
        folder.mkdir(parents=True, exist_ok=True)
        protect(source, source=SOURCE, targets=[TARGET], method="map", out=out,
                metrics_out=metrics, options=options, force=True, progress=False)  # fmt: skip
    tests = {d: load_data(d, split="test", progress=False) for d in (SOURCE, TARGET)}
    data: dict[str, Any] = {}

    def row(label: str, kind: str, seed: int, path: Path) -> dict[str, Any]:
        model, _ = load_checkpoint(path)
        acc = {d: accuracy(model, t) for d, t in tests.items()}
        return {"label": label, "kind": kind, "seed": seed, "source_accuracy": acc[SOURCE],
                "target_accuracy": acc[TARGET]}  # fmt: skip

    rows = [row("unprotected original", "none", 0, source), row("MAP-protected", "none", 0, out)]
    for ar in budget.attacks:
        for seed in ar.seeds:
            path, _ = attacked_cached(run, out, ar, seed, data, "auth")
            rows.append(row(ar.label, ar.kind, seed, path))
    ref = AttackRun("target-ft-100", "target-ft", {"n_images": 100, "epochs": 20}, (0,), TARGET)
    path, _ = attacked_cached(run, source, ref, 0, data, "auth-unprotected")
    rows.append(row("unprotected + target-ft-100", "target-ft", 0, path))
    return {"rows": rows, "protect_options": options,
            "protect_metrics": json.loads(metrics.read_text())["metrics"]}  # fmt: skip


def group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per table row: mean and CI of the accuracies over the seeds."""
    return [{"label": k, "seeds": len(v),
             "source_accuracy": mean_ci([r["source_accuracy"] for r in v]),
             "target_accuracy": mean_ci([r["target_accuracy"] for r in v])}
            for k, v in by_label(rows).items()]  # fmt: skip


def table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown table of docs/ROBUSTNESS.md ("Authorization under attack"), as lines."""
    lines = ["| model | seeds | source acc % (MNIST) | target acc % (MNIST-M) |",
             "|---|---|---|---|"]  # fmt: skip
    for e in entries:
        lines.append(f"| {e['label']} | {e['seeds']} | {acc_cell(e['source_accuracy'])} | "
                     f"{acc_cell(e['target_accuracy'])} |")  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short attack budgets, one seed")
    ap.add_argument("--run-dir", help="cache of models (default runs/robustness[-quick])")
    add_overrides(ap, "--protect-option", "MAP option, e.g. weight_noise=0.1")
    args = ap.parse_args(argv)
    run = Path(args.run_dir or ("runs/robustness-quick" if args.quick else "runs/robustness"))
    run.mkdir(parents=True, exist_ok=True)
    source = source_model(run, QUICK if args.quick else FULL)
    result = authorization_rows(run, source, AUTH_QUICK if args.quick else AUTH_FULL,
                                args.protect_option)  # fmt: skip
    entries = group(result["rows"])
    print("\n".join(table(entries)))
    return entries


if __name__ == "__main__":
    main()
