"""How well SF-MAP's drop estimates tracked the measured source drop, per variant
(:mod:`benchmarks.authorization_free`, issue 17): the restyled probe's paired estimate
(``restyled_drop``: the chosen mask's accuracy loss on held-out target images restyled towards
the source, with Newcombe's paired interval), the calibrated collateral estimate the run
reported (``estimated_source_drop``), and the larger of the two. Printed per pair, then counted:
within 2 pts of the measured drop, and interval coverage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._free_tables import source_drop

__all__ = ["estimate_rows", "print_estimates", "scatter"]

WITHIN = 2.0  # points: the "estimate within 2 pts of the measured drop"


def estimate_rows(rows: list[dict[str, Any]], variant: str) -> list[dict[str, float]]:
    """One dict per SF-MAP run of ``variant`` that recorded a restyled estimate: ``measured``,
    ``restyled``, ``low``, ``high`` (its interval), ``collateral`` (the reported estimate) and
    ``larger`` (the larger of the two point estimates), all in points."""
    out = []
    for r in rows:
        rd = r.get("restyled_drop")
        if r["kind"] != "sf-map" or r["variant"] != variant or not rd:
            continue
        coll = 100 * (r.get("estimated_source_drop") or {}).get("estimate", float("nan"))
        est = 100 * rd["estimate"]
        out.append({
            "source": r["source"], "target": r["targets"][0], "measured": source_drop(r),
            "restyled": est, "low": 100 * rd["low"], "high": 100 * rd["high"],
            "collateral": coll, "larger": max(est, coll),
        })  # fmt: skip
    return out


def print_estimates(rows: list[dict[str, Any]], variants: list[str]) -> None:
    """Per variant: the per-pair table, then how often each estimate came within ``WITHIN``
    points and how often the restyled interval contained the measured drop."""
    for v in variants:
        es = estimate_rows(rows, v)
        if not es:
            continue
        print(f"\n### SF-MAP drop estimates against the measured drop, variant {v}\n")
        print("| source | target | measured (pts) | restyled [90%] | collateral | larger |")
        print("|---|---|---|---|---|---|")
        for e in es:
            print(f"| {e['source']} | {e['target']} | {e['measured']:.1f} | {e['restyled']:.1f} "
                  f"[{e['low']:.1f}, {e['high']:.1f}] | {e['collateral']:.1f} "
                  f"| {e['larger']:.1f} |")  # fmt: skip
        n = len(es)
        near = {k: sum(abs(e[k] - e["measured"]) <= WITHIN for e in es)
                for k in ("restyled", "collateral", "larger")}  # fmt: skip
        cover = sum(e["low"] <= e["measured"] <= e["high"] for e in es)
        under = sum(e["restyled"] < e["measured"] - WITHIN for e in es)
        print(f"\n{v}: within {WITHIN:g} pts of the measured drop — restyled {near['restyled']} "
              f"of {n}, collateral {near['collateral']} of {n}, the larger of the two "
              f"{near['larger']} of {n}; the restyled interval contains the measured drop on "
              f"{cover} of {n}; restyled under-estimates by more than {WITHIN:g} pts on "
              f"{under} of {n}.")  # fmt: skip


def scatter(rows: list[dict[str, Any]], path: Path) -> None:
    """Estimated vs measured SF-MAP source drop, one point per run and variant: left the
    calibrated collateral estimate (leave-one-pair-out, its relative interval), right the
    restyled probe's estimate (its paired interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sf = [r for r in rows if r["kind"] == "sf-map" and r.get("loo_estimate")]
    variants = sorted({r["variant"] for r in sf})
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    top = 5.0
    for v, marker in zip(variants, "os^Dv<>"):
        rs = [r for r in sf if r["variant"] == v]
        y = [100 * r["loo_estimate"]["estimate"] for r in rs]
        lo = [yy - 100 * r["loo_estimate"]["low"] for yy, r in zip(y, rs)]
        hi = [100 * r["loo_estimate"]["high"] - yy for yy, r in zip(y, rs)]
        axes[0].errorbar([source_drop(r) for r in rs], y, yerr=[lo, hi], fmt=marker, capsize=2,
                         alpha=0.8, label=v)  # fmt: skip
        es = estimate_rows(rows, v)
        if es:
            y2 = [e["restyled"] for e in es]
            err = [[e["restyled"] - e["low"] for e in es], [e["high"] - e["restyled"] for e in es]]
            axes[1].errorbar([e["measured"] for e in es], y2, yerr=err, fmt=marker, capsize=2,
                             alpha=0.8, label=v)  # fmt: skip
            top = max([top] + [e["high"] for e in es])
        top = max([top] + [source_drop(r) for r in rs] + [h + yy for h, yy in zip(hi, y)])
    titles = ("collateral estimate, leave-one-pair-out", "restyled probe estimate, paired 90%")
    for ax, title in zip(axes, titles):
        ax.plot([0, top], [0, top], "k-", lw=0.8)
        ax.fill_between([0, top], [-2, top - 2], [2, top + 2], color="grey", alpha=0.15, lw=0)
        ax.set(xlabel="measured source drop (pts)", ylabel="estimated drop (pts)", title=title)
        ax.legend(title="variant")
    fig.suptitle("SF-MAP: estimated vs measured source drop")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
