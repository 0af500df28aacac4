"""The Results section and the figures of a report."""

from __future__ import annotations

import math
from typing import Any

from mapguard.report._cells import Sources
from mapguard.report._figures import (
    AccuracyGroup,
    Figure,
    accuracy_figure,
    null_figure,
    null_summary_figure,
)
from mapguard.report._layout import CALIBRATION, RESULT
from mapguard.report._rows import Row, per_secret_cell, per_secret_ref, result_cell

__all__ = ["figures", "results"]


def _n_secrets(s: Sources) -> int:
    return len(s.get("result:test.per_secret", []))


def _channel_rows(s: Sources) -> list[Row]:
    """A version-4 analysis: the committed channel and the one Bonferroni verdict."""
    return [
        Row("Channel (keyed pair preferences): p-value (exact)",
            s.num("result:channel.pvalue", "pvalue")),
        Row("Channel: standardised statistic z (descriptive)", s.num("result:channel.z")),
        Row("Channel counted (time order established)", s.num("result:channel.admissible")),
        Row("Channel condition", s.num("result:channel.admissibility", "text")),
        Row("Verdict p-value: 2 x min(trigger, counted channel)",
            s.num("result:combined.pvalue", "pvalue")),
        Row("Verdict level (alpha; each channel at alpha / 2)",
            s.num("result:combined.alpha", "pvalue")),
    ]  # fmt: skip


def results(s: Sources) -> dict[str, Any]:
    """Per-secret table, combined test, effect size, accuracies, negative controls, notes."""
    notes_ref = s.first(*RESULT["notes"])
    return {
        "per_secret": [_secret_row(s, i) for i in range(_n_secrets(s))],
        "combined": [
            Row("Combined statistic", s.num("result:test.statistic")),
            Row("p-value (exact)", s.num("result:test.pvalue", "pvalue")),
            Row("Significance level (alpha)", s.num("result:test.alpha", "pvalue")),
            Row("Verdict", s.num("result:verdict", "text")),
            Row(
                "Supplementary parametric p-value (not used for the verdict)",
                result_cell(s, "parametric_pvalue", "pvalue"),
            ),
            *(_channel_rows(s) if s.has("result:combined") else []),
        ],
        "effect": [
            Row("Effect size (estimate)", s.num("result:effect.estimate")),
            Row("Confidence interval, lower bound", s.num("result:effect.ci_low")),
            Row("Confidence interval, upper bound", s.num("result:effect.ci_high")),
            Row("Confidence level", s.num("result:effect.confidence_level", "percent")),
            Row("Method", s.num("result:effect.method", "text")),
        ],
        "accuracy": _accuracy_rows(s),
        "controls": _control_rows(s),
        "notes": [s.num(f"{notes_ref}[{i}]", "text") for i in range(_len(s, notes_ref))],
    }


def _len(s: Sources, ref: str | None) -> int:
    value = s.get(ref, None) if ref else None
    return len(value) if isinstance(value, list) else 0


def _secret_row(s: Sources, i: int) -> dict[str, Any]:
    return {
        "index": i + 1,
        "statistic": per_secret_cell(s, i, "statistic"),
        "rank": per_secret_cell(s, i, "rank", "int"),
        "m": per_secret_cell(s, i, "null_keys", "int"),
        "pvalue": per_secret_cell(s, i, "pvalue", "pvalue"),
        "triggered": per_secret_cell(s, i, "triggered_accuracy", "percent"),
    }


def _accuracy_rows(s: Sources) -> list[Row]:
    rows = [Row("Suspect, clean images", result_cell(s, "clean_accuracy", "percent"))]
    rows += [
        Row(
            f"Suspect, secret trigger {i + 1}",
            per_secret_cell(s, i, "triggered_accuracy", "percent"),
        )
        for i in range(_n_secrets(s))
    ]
    rows.append(
        Row(
            "Suspect, random triggers (mean over the null keys)",
            result_cell(s, "null_triggered_accuracy", "percent"),
        )
    )
    for key, label in (
        ("original_clean", "Original model at embedding, clean images"),
        ("clean", "Protected model at embedding, clean images"),
        ("secret", "Protected model at embedding, secret trigger"),
        ("random", "Protected model at embedding, random triggers"),
    ):
        ref = s.first(*CALIBRATION[key])
        if ref is None:
            continue
        if isinstance(s.get(ref), list):
            rows += [
                Row(f"{label} {j + 1}", s.num(f"{ref}[{j}]", "percent"))
                for j in range(len(s.get(ref)))
            ]
        else:
            rows.append(Row(label, s.num(ref, "percent")))
    return rows


def _control_rows(s: Sources) -> list[Row]:
    rows = [
        Row(
            "Fake secrets (random keys each tested as if it were the secret)",
            result_cell(s, "controls_trials", "int"),
        )
    ]
    alphas = s.first(*RESULT["controls_alphas"])
    fractions = s.first(*RESULT["controls_fraction"])
    for i in range(min(_len(s, alphas), _len(s, fractions))):
        level = s.num(f"{alphas}[{i}]", "pvalue")
        rows.append(
            Row(f"Fraction of fake secrets with p <= {level.text}", s.num(f"{fractions}[{i}]"))
        )
    summary = s.first(*RESULT["null_summary"])
    if summary:
        rows += [Row(f"Null statistic g over random keys: {k}", c) for k, c in s.flatten(summary)]
    return rows


# ---- figures -------------------------------------------------------------------------------
def figures(s: Sources) -> list[Figure]:
    """The accuracy figure and the null-distribution figure (whatever the result records)."""
    out = []
    groups = _accuracy_groups(s)
    if groups:
        out.append(accuracy_figure(groups, caption=_ACCURACY_CAPTION))
    secret_stats = _floats(s, [per_secret_ref(s, i, "statistic") for i in range(_n_secrets(s))])
    label = str(s.get(s.first(*RESULT["statistic_definition"]) or "", "") or "statistic g")
    null = _null_values(s)
    summary_ref = s.first(*RESULT["null_summary"])
    if secret_stats and null:
        out.append(null_figure(null, secret_stats, statistic_label=label, caption=_NULL_CAPTION))
    elif secret_stats and summary_ref:
        out.append(
            null_summary_figure(
                s.get(summary_ref),
                secret_stats,
                statistic_label=label,
                caption=_NULL_SUMMARY_CAPTION,
            )
        )
    return out


_ACCURACY_CAPTION = (
    "Top-1 accuracy on the verification images: clean, with the owner's secret trigger (mean over "
    "the secrets), and with random triggers of the same family (the controls). A model derived "
    "from the protected one fails specifically on the secret trigger; an independent model "
    "treats it like any random trigger. The protected and original models' bars come from the "
    "calibration figures in the owner's watermark file (held-out images, at embedding time), "
    "when that file was given. Exact values: Results, Accuracies."
)
_NULL_CAPTION = (
    "Grey: the statistic g of the suspect under each random key of the trigger family (the null "
    "distribution: how a model that never saw the secret reacts to an arbitrary trigger). Red: "
    "the owner's secret trigger(s). Ownership is evidenced when the red lines lie beyond "
    "(almost) all of the grey mass for every secret."
)
_NULL_SUMMARY_CAPTION = (
    "The result file records a summary of the null distribution, not each random key's value: "
    "the grey bar spans the smallest to the largest statistic g over the random keys, the ticks "
    "mark their median and 99th percentile. Red: the owner's secret trigger(s)."
)


def _floats(s: Sources, refs: list[str | None]) -> list[float]:
    values = [s.get(r) if r else None for r in refs]
    if not values or any(not isinstance(v, int | float) for v in values):
        return []
    return [float(v) for v in values]


def _null_values(s: Sources) -> list[float]:
    """Every random key's statistic, if the result records them (all secrets pooled)."""
    ref = s.first(*RESULT["null_stats"])
    if ref is not None:
        rows = s.get(ref)
    else:
        refs = [per_secret_ref(s, i, "null_stats") for i in range(_n_secrets(s))]
        rows = [s.get(r) for r in refs] if refs and all(refs) else []
    flat: list[Any] = []
    for row in rows if isinstance(rows, list) else []:
        flat += row if isinstance(row, list) else [row]
    ok = bool(flat) and all(isinstance(v, int | float) and math.isfinite(v) for v in flat)
    return [float(v) for v in flat] if ok else []


def _opt(s: Sources, refs: tuple[str, ...]) -> float | None:
    """A proportion, or the mean of a list of them (for plotting only)."""
    ref = s.first(*refs)
    value = s.get(ref) if ref else None
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return float(sum(value) / len(value))
    return float(value) if isinstance(value, int | float) else None


def _accuracy_groups(s: Sources) -> list[AccuracyGroup]:
    triggered = _floats(
        s, [per_secret_ref(s, i, "triggered_accuracy") for i in range(_n_secrets(s))]
    )
    groups = [
        AccuracyGroup(
            label="suspect",
            clean=_opt(s, RESULT["clean_accuracy"]),
            secret=sum(triggered) / len(triggered) if triggered else None,
            random=_opt(s, RESULT["null_triggered_accuracy"]),
        ),
        AccuracyGroup(
            label="protected (at embedding)",
            clean=_opt(s, CALIBRATION["clean"]),
            secret=_opt(s, CALIBRATION["secret"]),
            random=_opt(s, CALIBRATION["random"]),
        ),
        AccuracyGroup(
            label="original (at embedding)",
            clean=_opt(s, CALIBRATION["original_clean"]),
            secret=_opt(s, CALIBRATION["original_secret"]),
            random=_opt(s, CALIBRATION["original_random"]),
        ),
    ]
    return [g for g in groups if any(v is not None for v in (g.clean, g.secret, g.random))]
