"""Compare embedding recipes: side-by-side table of several ``benchmarks.robustness`` results.

    python -m benchmarks.robustness_compare NAME=results.json [NAME=results.json ...]

For every recipe: the embedding's cost (clean accuracy before -> after) and target rate; then, per
attack row, the attacked copies evidenced at alpha in label / probability mode (over all seeds
and, when a name is given several times, all secret draws), the mean accuracy on triggered
inputs and the mean gap to the null keys' triggered accuracy (larger = more watermark left).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def _load(specs: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=results.json, got '{spec}'")
        out[name].append(json.loads(Path(path).read_text()))
    return dict(out)


def _cell(rows: list[dict[str, Any]], alpha: float) -> str:
    n = len(rows)
    lab = sum(r["labels"]["pvalue"] <= alpha for r in rows)
    prb = sum(r["probs"]["pvalue"] <= alpha for r in rows)
    gap = statistics.mean(r["null_triggered_accuracy"] - r["triggered_accuracy"] for r in rows)
    clean = statistics.mean(r["clean_accuracy"] for r in rows)
    return f"{lab}/{n} · {prb}/{n} (gap {gap * 100:+.0f}, clean {clean * 100:.0f})"


def table(recipes: dict[str, list[dict[str, Any]]]) -> str:
    names = list(recipes)
    alpha = next(iter(recipes.values()))[0]["alpha"]
    lines = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    embed = []
    for name in names:
        runs = recipes[name]
        before = statistics.mean(r["embed"]["clean_accuracy_before"] for r in runs)
        after = statistics.mean(r["embed"]["clean_accuracy_after"] for r in runs)
        rate = statistics.mean(statistics.mean(r["embed"]["target_rate"] or [0]) for r in runs)
        embed.append(f"{before * 100:.1f} → {after * 100:.1f}, target rate {rate * 100:.0f}%")
    lines.append("| embedding: clean acc %, target rate | " + " | ".join(embed) + " |")
    labels: list[str] = []
    for runs in recipes.values():
        for r in runs:
            for row in r["attacks"] + r["transforms"]:
                if row["label"] not in labels:
                    labels.append(row["label"])
    totals = {name: {"attacks": [0, 0, 0], "transforms": [0, 0, 0]} for name in names}
    for label in labels:
        cells = []
        for name in names:
            rows = {
                part: [row for r in recipes[name] for row in r[part] if row["label"] == label]
                for part in ("attacks", "transforms")
            }
            both = rows["attacks"] + rows["transforms"]
            cells.append(_cell(both, alpha) if both else "—")
            if label == "none (watermarked)":
                continue
            for part, part_rows in rows.items():
                t = totals[name][part]
                t[0] += sum(row["labels"]["pvalue"] <= alpha for row in part_rows)
                t[1] += sum(row["probs"]["pvalue"] <= alpha for row in part_rows)
                t[2] += len(part_rows)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for part in ("attacks", "transforms"):
        counts = [totals[name][part] for name in names]
        lines.append(
            f"| **evidenced, {part} (labels · probs)** | "
            + " | ".join(f"**{t[0]}/{t[2]} · {t[1]}/{t[2]}**" for t in counts)
            + " |"
        )
    fps = []
    for name in names:
        ind = [row for r in recipes[name] for row in r["independent"]]
        lab = sum(row["labels"]["pvalue"] <= alpha for row in ind)
        prb = sum(row["probs"]["pvalue"] <= alpha for row in ind)
        fps.append(f"{lab}/{len(ind)} · {prb}/{len(ind)}")
    lines.append("| false positives (labels · probs) | " + " | ".join(fps) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", metavar="NAME=results.json")
    print(table(_load(ap.parse_args().results)))


if __name__ == "__main__":
    main()
