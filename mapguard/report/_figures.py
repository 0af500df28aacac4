"""The report's figures: matplotlib (Agg) PNGs embedded as base64 ``data:`` URIs.

PNG metadata that would change from run to run (software version) is left out, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["AccuracyGroup", "Figure", "accuracy_figure", "null_figure", "null_summary_figure"]

_COLORS = {"clean": "#4c72b0", "secret": "#c44e52", "random": "#8c8c8c"}
_LABELS = {
    "clean": "clean images",
    "secret": "secret trigger",
    "random": "random triggers (controls)",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Figure:
    """An embedded figure: title, caption, alt text and the PNG as a data URI."""

    id: str
    title: str
    caption: str
    alt: str
    data_uri: str
    png_bytes: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccuracyGroup:
    """Accuracies (proportions in [0, 1], None if unknown) of one model."""

    label: str
    clean: float | None
    secret: float | None
    random: float | None


def _png(fig: plt.Figure) -> tuple[str, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), len(data)


def accuracy_figure(groups: Sequence[AccuracyGroup], *, caption: str) -> Figure:
    """Grouped bars: clean vs secret-trigger vs random-trigger accuracy per model."""
    kinds = ("clean", "secret", "random")
    fig, ax = plt.subplots(figsize=(6.4, 2.9))
    width = 0.26
    x = np.arange(len(groups))
    for j, kind in enumerate(kinds):
        values = [getattr(g, kind) for g in groups]
        xs = [x[i] + (j - 1) * width for i, v in enumerate(values) if v is not None]
        ys = [100 * v for v in values if v is not None]
        bars = ax.bar(xs, ys, width, color=_COLORS[kind], label=_LABELS[kind])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, [g.label for g in groups])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 112)
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    uri, size = _png(fig)
    alt = "; ".join(
        f"{g.label}: "
        + ", ".join(
            f"{_LABELS[k]} {100 * getattr(g, k):.1f}%" for k in kinds if getattr(g, k) is not None
        )
        for g in groups
    )
    return Figure(
        id="fig-accuracy",
        title="Accuracy on clean images, with the secret trigger, and with random triggers",
        caption=caption,
        alt=alt,
        data_uri=uri,
        png_bytes=size,
    )


def null_figure(
    null_stats: Sequence[float],
    secret_stats: Sequence[float],
    *,
    statistic_label: str,
    caption: str,
) -> Figure:
    """Histogram of the null statistics with each secret's observed statistic marked."""
    null = np.asarray(null_stats, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 2.9))
    ax.hist(
        null,
        bins=min(40, max(10, null.size // 5)),
        color=_COLORS["random"],
        alpha=0.85,
        label=f"random keys (null), n = {null.size}",
    )
    for i, s in enumerate(secret_stats):
        ax.axvline(
            s,
            color=_COLORS["secret"],
            linewidth=2,
            linestyle="-" if i == 0 else "--",
            label=f"secret {i + 1} (observed)",
        )
    ax.set_xlabel(statistic_label)
    ax.set_ylabel("number of random keys")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    uri, size = _png(fig)
    alt = (
        f"Histogram of {null.size} null statistics (min {null.min():.4g}, max {null.max():.4g}); "
        + ", ".join(f"secret {i + 1} observed at {s:.4g}" for i, s in enumerate(secret_stats))
    )
    return Figure(
        id="fig-null",
        title="Null distribution (random keys) and the observed statistic",
        caption=caption,
        alt=alt,
        data_uri=uri,
        png_bytes=size,
    )


def null_summary_figure(
    summary: dict[str, float],
    secret_stats: Sequence[float],
    *,
    statistic_label: str,
    caption: str,
) -> Figure:
    """Range bar (min to max) of the null statistics, median/q99 ticks, the secrets marked."""
    fig, ax = plt.subplots(figsize=(6.4, 1.9))
    lo, hi = float(summary["min"]), float(summary["max"])
    ax.barh(
        [0],
        [hi - lo],
        left=lo,
        height=0.35,
        color=_COLORS["random"],
        alpha=0.6,
        label=f"random keys (null): min to max, n = {summary.get('count', '?')}",
    )
    for key, style in (("median", "-"), ("q99", ":")):
        if key in summary:
            ax.vlines(
                float(summary[key]),
                -0.25,
                0.25,
                colors="#333333",
                linestyles=style,
                label=f"null {key}",
            )
    ax.scatter(
        list(secret_stats),
        [0] * len(secret_stats),
        color=_COLORS["secret"],
        zorder=3,
        s=40,
        label="secret trigger(s) (observed)",
    )
    ax.set_yticks([])
    ax.set_ylim(-0.6, 0.9)
    ax.set_xlabel(statistic_label)
    ax.legend(fontsize=7, frameon=False, loc="upper center", ncol=2)
    ax.spines[["top", "right", "left"]].set_visible(False)
    fig.tight_layout()
    uri, size = _png(fig)
    alt = f"Null statistics range from {lo:.4g} to {hi:.4g}; " + ", ".join(
        f"secret {i + 1} observed at {v:.4g}" for i, v in enumerate(secret_stats)
    )
    return Figure(
        id="fig-null",
        title="Null distribution (random keys, summary) and the observed statistic",
        caption=caption,
        alt=alt,
        data_uri=uri,
        png_bytes=size,
    )
