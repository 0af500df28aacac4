"""What the robustness benchmark writes: the tables of docs/ROBUSTNESS.md, the ROC-style plot,
the results JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.robustness.cache import log
from benchmarks.robustness.plan import ALPHA, KEEP_POINTS
from protocols.fileio import atomic_write_text

__all__ = ["acc_cell", "markdown", "render", "roc_plot"]


def roc_plot(
    attacks: list[dict[str, Any]], transforms: list[dict[str, Any]],
    independent: list[dict[str, Any]], path: Path,
) -> None:  # fmt: skip
    """TPR vs FPR as alpha sweeps the attainable p-values; both query modes; < 200 KB PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = attacks[0]["clean_accuracy"]
    keeping = [r for r in attacks[1:] if r["clean_accuracy"] >= base - KEEP_POINTS]
    positives = {"all attacked + transformed": attacks[1:] + transforms,
                 "accuracy-keeping attacks": keeping}  # fmt: skip
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.3), dpi=100)
    alphas = np.logspace(-7, 0, 200)
    for (name, pos), color in zip(positives.items(), ("C0", "C2"), strict=True):
        for mode, style in (("labels", "-"), ("probs", "--")):
            tpr = [np.mean([r[mode]["pvalue"] <= a for r in pos]) for a in alphas]
            fpr = [np.mean([r[mode]["pvalue"] <= a for r in independent]) for a in alphas]
            ax1.step(fpr, tpr, style, color=color, where="post")
            ax2.semilogx(alphas, tpr, style, color=color, label=f"TPR, {name} ({mode})")
    for mode, style in (("labels", "-"), ("probs", "--")):
        fpr = [np.mean([r[mode]["pvalue"] <= a for r in independent]) for a in alphas]
        ax2.semilogx(alphas, fpr, style, color="C3", label=f"FPR, independent models ({mode})")
    ax2.semilogx(alphas, alphas, ":", color="grey", label="FPR = alpha")
    ax2.axvline(ALPHA, color="k", lw=0.8)
    ax1.set(xlabel="false positive rate (independent models)", ylabel="true positive rate",
            xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="ROC as alpha varies")  # fmt: skip
    ax2.set(xlabel="alpha (vertical line: 1e-3)", ylabel="rate", ylim=(-0.02, 1.02),
            title="rates vs alpha")  # fmt: skip
    fig.legend(*ax2.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def acc_cell(entry: Mapping[str, Any]) -> str:
    if entry["ci"] is None:
        return _pct(entry["mean"])
    return f"{_pct(entry['mean'])} ± {100 * (entry['ci'][1] - entry['mean']):.1f}"


def _p(x: float) -> str:
    return f"{x:.1e}" if x < 0.01 else f"{x:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/ROBUSTNESS.md."""
    lines = ["| attack | seeds | clean acc % | triggered acc % | p labels (max) | p probs (max) "
             "| evidenced labels / probs |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in results["per_attack"] + results["per_transform"]:
        lines.append(
            f"| {e['label']} | {e['seeds']} | {acc_cell(e['clean_accuracy'])} | "
            f"{acc_cell(e['triggered_accuracy'])} | {_p(e['labels']['pvalue_max'])} | "
            f"{_p(e['probs']['pvalue_max'])} | {e['labels']['evidenced']}/{e['seeds']} · "
            f"{e['probs']['evidenced']}/{e['seeds']} |"
        )
    lines += ["", "| independent model | clean acc % (MNIST) | p labels | p probs |",
              "|---|---|---|---|"]  # fmt: skip
    for r in results["independent"]:
        lines.append(f"| {r['label']} | {_pct(r['clean_accuracy'])} | {_p(r['labels']['pvalue'])}"
                     f" | {_p(r['probs']['pvalue'])} |")  # fmt: skip
    s = results["summary"]
    lines += [
        "",
        "| mode | detection, all attacks | detection, accuracy-keeping | transforms | "
        "false positives α=1e-3 | α=1e-2 | α=0.05 |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("labels", "probs"):
        d = s[mode]
        fp = d["false_positives"]
        cells = [d["detection_all_attacks"], d["detection_accuracy_keeping"],
                 d["detection_transforms"], fp["0.001"], fp["0.01"], fp["0.05"]]  # fmt: skip
        lines.append(f"| {mode} (p alone) | " + " | ".join(
            f"{c['k']}/{c['n']} ({_pct(c['ci95'][0])}–{_pct(c['ci95'][1])}%)" for c in cells
        ) + " |")  # fmt: skip
        if "verdict_all_attacks" in d:  # results written before the verdict rows existed lack it
            cells = [d["verdict_all_attacks"], d["verdict_accuracy_keeping"],
                     d["verdict_transforms"], d["verdict_false_positives"]]  # fmt: skip
            lines.append(f"| {mode} (committed verdict: p and effect floor) | " + " | ".join(
                f"{c['k']}/{c['n']} ({_pct(c['ci95'][0])}–{_pct(c['ci95'][1])}%)" for c in cells
            ) + " | | |")  # fmt: skip
        for rule in ("min", "median"):
            r = d.get(f"rule_{rule}")
            if r is None:
                continue
            cells = [r["all_attacks"], r["accuracy_keeping"], r["transforms"],
                     r["false_positives"]]  # fmt: skip
            lines.append(f"| {mode} (floor on the {rule} of the secrets' g) | " + " | ".join(
                f"{c['k']}/{c['n']} ({_pct(c['ci95'][0])}–{_pct(c['ci95'][1])}%)" for c in cells
            ) + " | | |")  # fmt: skip
        for name in sorted(k[5:] for k in d if k.startswith("test_")):
            r = d[f"test_{name}"]
            cells = [r["all_attacks"], r["accuracy_keeping"], r["transforms"],
                     r["false_positives"]]  # fmt: skip
            lines.append(f"| {mode} (verdict by the {name} test, paired) | " + " | ".join(
                f"{c['k']}/{c['n']} ({_pct(c['ci95'][0])}–{_pct(c['ci95'][1])}%)" for c in cells
            ) + " | | |")  # fmt: skip
    if "authorization" in results:
        from benchmarks.authorization_attacks import table

        lines += ["", *table(results["per_auth"])]
    return "\n".join(lines) + "\n"


def render(results: dict[str, Any], args: argparse.Namespace, run: Path | None) -> dict[str, Any]:
    """Write the plot, the markdown tables and (after a run) the results JSON."""
    here = run or Path(args.from_results).parent
    roc_plot(results["attacks"], results["transforms"], results["independent"],
             Path(args.plot or here / "roc.png"))  # fmt: skip
    table = markdown(results)
    atomic_write_text(Path(args.md or here / "robustness.md"), table, force=True)
    if run is not None:
        doc = json.dumps(results, indent=2, default=str) + "\n"
        atomic_write_text(Path(args.out or run / "results.json"), doc, force=True)
    print(table)
    log(f"done in {results['seconds']:.0f} s")
    return results
