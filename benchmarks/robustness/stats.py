"""Statistics of the robustness benchmark: detection and false-positive rates with their
confidence intervals, per-attack summaries over seeds, warnings about the embedding."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats

from benchmarks.robustness.plan import ALPHA, KEEP_POINTS

__all__ = ["by_label", "embed_notes", "mean_ci", "per_attack", "rate", "summarise", "wilson"]


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of ``k`` successes in ``n`` trials (NaN for ``n = 0``)."""
    if n == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and a 95% t-interval (None with a single value)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        return {"mean": v[0], "ci": None, "n": len(v)}
    half = stats.t.ppf(0.975, len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))
    mean = statistics.fmean(v)
    return {"mean": mean, "ci": [mean - half, mean + half], "n": len(v)}


def floor_verdict(row: Mapping[str, Any], statistic: str) -> bool:
    """The verdict had the committed floor applied to ``statistic`` ("min" or "median") of the
    secrets' g: the same p-value, alpha and floor value, the other rule (paired comparison)."""
    g = row["secret_stats"]
    value = min(g) if statistic == "min" else statistics.median(g)
    return row["pvalue"] <= row["alpha"] and value >= row["effect_floor"]


def rate(
    rows: Sequence[Mapping[str, Any]], mode: str, alpha: float | None, *,
    floor_statistic: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """How many ``rows`` reject at ``alpha`` (p alone), or with ``alpha=None`` are "evidenced" by
    the committed verdict (p <= the committed alpha and the effect floor), or with
    ``floor_statistic`` by that floor rule instead of the committed one; with a Wilson CI."""
    if floor_statistic is not None:
        k = sum(floor_verdict(r[mode], floor_statistic) for r in rows)
    elif alpha is None:
        k = sum(bool(r[mode]["evidenced"]) for r in rows)
    else:
        k = sum(r[mode]["pvalue"] <= alpha for r in rows)
    return {"k": k, "n": len(rows), "rate": k / len(rows) if rows else math.nan,
            "ci95": list(wilson(k, len(rows)))}  # fmt: skip


def summarise(
    attacks: list[dict[str, Any]], transforms: list[dict[str, Any]],
    independent: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    base = attacks[0]["clean_accuracy"]
    attacked = attacks[1:]
    keeping = [r for r in attacked if r["clean_accuracy"] >= base - KEEP_POINTS]
    out: dict[str, Any] = {"watermarked_clean_accuracy": base}
    for mode in ("labels", "probs"):
        out[mode] = {
            "detection_all_attacks": rate(attacked, mode, ALPHA),
            "detection_accuracy_keeping": rate(keeping, mode, ALPHA),
            "detection_transforms": rate(transforms, mode, ALPHA),
            "false_positives": {str(a): rate(independent, mode, a) for a in (1e-3, 1e-2, 5e-2)},
            "verdict_all_attacks": rate(attacked, mode, None),
            "verdict_accuracy_keeping": rate(keeping, mode, None),
            "verdict_transforms": rate(transforms, mode, None),
            "verdict_false_positives": rate(independent, mode, None),
            **_rule_rates(attacked, keeping, transforms, independent, mode),
            **_test_rates(attacked, keeping, transforms, independent, mode),
            "independent_min_pvalue": min(r[mode]["pvalue"] for r in independent),
            "independent_median_pvalue": statistics.median(r[mode]["pvalue"] for r in independent),
            "missed_accuracy_keeping": sorted(
                {f"{r['label']} (seed {r['seed']})" for r in keeping if r[mode]["pvalue"] > ALPHA}
            ),  # fmt: skip
        }
    return out


def _rule_rates(
    attacked: list[dict[str, Any]], keeping: list[dict[str, Any]],
    transforms: list[dict[str, Any]], independent: list[dict[str, Any]], mode: str,
) -> dict[str, Any]:  # fmt: skip
    """The verdict rates under each floor rule, paired on the same rows (results written before
    the rows kept the secrets' statistics give none)."""
    if not all("secret_stats" in r[mode] for r in attacked + transforms + independent):
        return {}
    return {
        f"rule_{rule}": {
            name: rate(rows, mode, None, floor_statistic=rule)
            for name, rows in (
                ("all_attacks", attacked),
                ("accuracy_keeping", keeping),
                ("transforms", transforms),
                ("false_positives", independent),
            )
        }  # fmt: skip
        for rule in ("min", "median")
    }


def _test_rates(
    attacked: list[dict[str, Any]], keeping: list[dict[str, Any]],
    transforms: list[dict[str, Any]], independent: list[dict[str, Any]], mode: str,
) -> dict[str, Any]:  # fmt: skip
    """The verdict rates under each pooled test, paired on the same rows (``tests`` of a row;
    results written before rows carried it give none)."""
    rows_all = attacked + transforms + independent
    if not all("tests" in r[mode] for r in rows_all):
        return {}
    names = sorted(set.intersection(*(set(r[mode]["tests"]) for r in rows_all)))
    out = {}
    for name in names:
        out[f"test_{name}"] = {}
        for group, rows in (
            ("all_attacks", attacked),
            ("accuracy_keeping", keeping),
            ("transforms", transforms),
            ("false_positives", independent),
        ):
            k = sum(bool(r[mode]["tests"][name]["evidenced"]) for r in rows)
            out[f"test_{name}"][group] = {"k": k, "n": len(rows),
                                          "rate": k / len(rows) if rows else math.nan,
                                          "ci95": list(wilson(k, len(rows)))}  # fmt: skip
    return out


def by_label(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows grouped by their ``label`` (one group per table row; its members are the seeds)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    return groups


def per_attack(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by label over seeds: mean/CI of accuracies, p-value range, evidenced k/n."""
    out = []
    for label, rs in by_label(rows).items():
        entry = {"label": label, "kind": rs[0]["kind"], "seeds": len(rs)}
        for key in ("clean_accuracy", "triggered_accuracy"):
            entry[key] = mean_ci([r[key] for r in rs])
        for mode in ("labels", "probs"):
            ps = [r[mode]["pvalue"] for r in rs]
            entry[mode] = {"pvalue_max": max(ps), "pvalue_min": min(ps),
                           "evidenced": sum(r[mode]["evidenced"] for r in rs)}  # fmt: skip
        out.append(entry)
    return out


def embed_notes(metrics: Mapping[str, Any]) -> list[str]:
    """Warnings about the embedding itself (the attack figures mean little without a watermark)."""
    notes = []
    drop = metrics["clean_accuracy_before"] - metrics["clean_accuracy_after"]
    if drop > 0.01:
        notes.append(f"embedding cost {100 * drop:.1f} points of clean accuracy (target <= 1)")
    if not metrics["self_check"]["evidenced"]:
        notes.append(f"the watermarked model itself is not evidenced "
                     f"(p = {metrics['self_check']['pvalue']:.3g})")  # fmt: skip
    return notes
