"""The clean-source attacks, the table and the figures of the fine-tuning-resistance benchmark.

Clean-source attacks (the thief has no target image, only 10% of the source training data):
FTAL and RTAL (:mod:`mapguard.attacks`) and ``shift-10%``, a TransNTL-like route (Hong et al.,
CVPR 2024, recover a non-transferable model with source data under domain shifts): every
parameter is fine-tuned on the source images, each batch put through random per-channel colour
gains and offsets, random inversion and Gaussian noise, so the model relearns its task on
shifted-looking inputs that resemble an unknown target more than the clean source does
(:func:`mapguard.methods.nft_weights.shift_batch`, which nft-weights' simulated ``shift`` thief
uses too).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from benchmarks.finetune_resistance_curves import STRATEGIES, Thief, finetune
from mapguard.attacks import AttackConfig, attack
from mapguard.data import ImageSet, load_data
from mapguard.methods.nft_weights import shift_batch
from mapguard.training import accuracy
from protocols.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["plot_curves", "source_route", "summary_lines"]

COLOURS = {"unprotected": "tab:blue", "map": "tab:orange", "map-nft": "tab:green",
           "scratch": "black"}  # fmt: skip
#: Colours of the other models, in the order they appear (a variant never shares one).
_SPARE = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def colours(models: Sequence[str]) -> dict[str, str]:
    """A distinct colour per model: :data:`COLOURS` for the named ones, spares for the rest."""
    others = [m for m in models if m not in COLOURS]
    return {m: COLOURS.get(m) or _SPARE[others.index(m) % len(_SPARE)] for m in models}


def source_route(
    run: Path, pair: tuple[str, str], models: Mapping[str, nn.Module], target_test: ImageSet,
    *, epochs: int,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Target accuracy of every model after each clean-source attack (seed 0; cached)."""
    folder = run / "source-route" / f"{pair[0]}-{pair[1]}"
    train = load_data(f"builtin:{pair[0]}", split="train", progress=False)
    out = {}
    for label, model in models.items():
        path = folder / f"{label}-e{epochs}.json"
        if not path.exists():
            row = {"before": accuracy(model, target_test)}
            for kind in ("ftal", "rtal"):
                cfg = AttackConfig(fraction=0.1, epochs=epochs, lr=0.01)
                attacked, _ = attack(model, kind, data=train, config=cfg, seed=0)
                row[f"{kind}-10%"] = accuracy(attacked, target_test)
            sub = train.take(round(0.1 * len(train)), seed=0)
            thief = Thief(lrs=(0.01,), batch_size=64, epochs=epochs, min_steps=1, max_steps=10**6)
            shifted = finetune(model, "direct-all", sub.floats(), sub.labels, lr=0.01, seed=0,
                               thief=thief, augment=shift_batch)  # fmt: skip
            row["shift-10%"] = accuracy(shifted, target_test)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(row) + "\n", force=True)
        out[label] = json.loads(path.read_text())
    return out


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The markdown table of one pair (docs/ROBUSTNESS.md)."""
    facts, slc, route = result["models"], result["slc_auc"], result["source_route"]
    base = facts["unprotected"]["method_seconds"]
    ns, best = result["ns"], {m: c["best"] for m, c in result["curves"].items()}
    shown = [i for i, n in enumerate(ns) if 0 < n <= 100]
    lines = ["| model | source acc % | target acc % | protect s | SLC-AUC N≤100 (best) | "
             "SLC-AUC all N (best) | worst strategy ≤100 | best thief N = "
             f"{' / '.join(str(ns[i]) for i in shown)} | FTAL-10% | RTAL-10% | shift-10% | "
             "ATEsc student target % (seed mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    escaped = result.get("distill_route", {})
    for label, f in facts.items():
        s = slc[label]
        worst = max(STRATEGIES, key=lambda k: s[k]["le100"])
        r = route.get(label, {})
        attacks = " | ".join(f"{100 * r[k]:.1f}" if k in r else "–"
                             for k in ("ftal-10%", "rtal-10%", "shift-10%"))  # fmt: skip
        esc = escaped.get(label)
        attacks += f" | {100 * esc['student_target']:.1f}" if esc else " | –"
        curve = " / ".join(f"{100 * best[label][i]:.0f}" for i in shown)
        lines.append(f"| {label} | {100 * f['source_accuracy']:.1f} | "
                     f"{100 * f['target_accuracy']:.1f} | {f['method_seconds'] or base:.0f} | "
                     f"{s['best']['le100']:+.2f} | {s['best']['all']:+.2f} | {worst} "
                     f"{s[worst]['le100']:+.2f} | "
                     f"{curve} | {attacks} |")  # fmt: skip
    scratch = " / ".join(f"{100 * best['scratch'][i]:.0f}" for i in shown)
    lines.append(f"| scratch | | | | 0 | 0 | | {scratch} | | | | |")
    return lines


def _png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue(), force=True)


def plot_curves(results: Sequence[Mapping[str, Any]], folder: Path, suffix: str) -> list[Path]:
    """``finetune_resistance{suffix}.png`` (target accuracy vs N, one row per pair, one panel per
    strategy and the best one) and ``finetune_resistance_source{suffix}.png`` (clean-source
    attacks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (*STRATEGIES, "best")
    size = (3.2 * len(panels), 2.9 * len(results))
    fig, axes = plt.subplots(len(results), len(panels), figsize=size, squeeze=False, sharey=True)
    for row, res in zip(axes, results):
        ns = res["ns"]
        for ax, panel in zip(row, panels):
            palette = colours(list(res["curves"]))
            for model, per in res["curves"].items():
                curve = per["direct-all"] if model == "scratch" else per[panel]
                style = {"color": palette[model], "ls": "--" if model == "scratch" else "-"}
                ax.plot(range(len(ns)), [100 * a for a in curve], marker="o", ms=3, label=model,
                        **style)  # fmt: skip
            ax.set_xticks(range(len(ns)), [str(n) for n in ns])
            ax.set_title(f"{res['pair'][0]}→{res['pair'][1]}: {panel}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("target accuracy %")
    for ax in axes[-1]:
        ax.set_xlabel("labelled target images N")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths = [
        folder / f"finetune_resistance{suffix}.png",
        folder / f"finetune_resistance_source{suffix}.png",
    ]
    _png(fig, paths[0])
    plt.close(fig)
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.2), squeeze=False)
    attacks = ("before", "ftal-10%", "rtal-10%", "shift-10%")
    for ax, res in zip(axes[0], results):
        labels = list(res["source_route"])
        for j, kind in enumerate(attacks):
            heights = [100 * res["source_route"][m][kind] for m in labels]
            ax.bar([i + 0.2 * j for i in range(len(labels))], heights, width=0.2, label=kind)
        ax.set_xticks([i + 0.3 for i in range(len(labels))], labels, fontsize=8)
        ax.set_title(f"{res['pair'][0]}→{res['pair'][1]}: clean-source attacks", fontsize=9)
        ax.set_ylabel("target accuracy %")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    _png(fig, paths[1])
    plt.close(fig)
    return paths
