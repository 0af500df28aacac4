"""Tables of :mod:`benchmarks.authorization_free`: synthesis, SF-MAP and DF-MAP rows, the paired
comparison of two variants, and the calibration of the estimated source drop (leave one
(source, target) pair out; its scatter plot: :mod:`benchmarks._free_estimates`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from mapguard.metrics import st_d

INFORMATIVE = 0.25  # a pair is informative when the unprotected target accuracy is >= 25%


def _est(r: dict[str, Any]) -> str:
    """The run's estimated drop (the LOO calibration's when present), in points."""
    e = r.get("loo_estimate") or r.get("estimated_source_drop")
    if not e:
        return "n/a"
    return f"{100 * e['estimate']:.1f} [{100 * e['low']:.1f}, {100 * e['high']:.1f}]"


def _std(r: dict[str, Any], targets: list[str]) -> float | None:
    return st_d(
        source_before=r["before"][r["source"]],
        source_after=r["after"][r["source"]],
        target_before=[r["before"][t] for t in targets],
        target_after=[r["after"][t] for t in targets],
    )


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def load_map(path: str | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows of ``benchmarks.authorization --out`` keyed by (source, target, method)."""
    if not path:
        return {}
    rows = json.loads(Path(path).read_text())["rows"]
    return {(r["source"], r["target"], r["method"]): r for r in rows}


SF_HEADER = (
    "| source | target | src before | src after | drop (pts) | est. drop [90%] | tgt before "
    "| tgt after "
    "| other domains after | ST-D | MAP ST-D | NTL ST-D | pruned | epoch | time (s) | target met |"
)


def _table(title: str, header: str) -> None:
    """Print a markdown table's title, header and separator row."""
    print(f"\n### {title}\n")
    print(header)
    print("|---" * header.count(" | ") + "|---|")


def source_drop(r: dict[str, Any]) -> float:
    """Source accuracy lost by the run ``r``, in points."""
    return 100 * (r["before"][r["source"]] - r["after"][r["source"]])


def print_sf(
    rows: list[dict[str, Any]], baselines: dict[tuple[str, str, str], dict], title: str = ""
) -> None:
    _table(f"SF-MAP (no source data; pseudo-source + real target){title}", SF_HEADER)
    hits = informative = beats = compared = 0
    sides: dict[str, int] = {}
    for r in rows:
        s, t, drop = r["source"], r["targets"][0], source_drop(r)
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
        verdict = ("yes" if ok else f"no ({_miss(r)})") if info else "(uninformative)"
        sides[_miss(r)] = sides.get(_miss(r), 0) + (info and not ok)
        print(
            f"| {s} | {t} | {r['before'][s]:.1%} | {r['after'][s]:.1%} | {drop:.1f} "
            f"| {_est(r)} | {r['before'][t]:.1%} | {r['after'][t]:.1%} | {others} | {_fmt(std)} "
            f"| {_fmt(mp.get('st_d'))} | {_fmt(ntl.get('st_d'))} | {r['pruned']:.2%} "
            f"| {r['chosen_epoch']}/{r['epochs_run']} | {r['seconds']:.0f} | {verdict} |"
        )
    print(f"\nSF-MAP target (drop <= 2 pts, target <= 20%) met on {hits} of {informative} "
          "informative pairs; missed on the drop side only on "
          f"{sides.get('drop', 0)}, the target side only on {sides.get('target', 0)}, both on "
          f"{sides.get('both', 0)}.")  # fmt: skip
    if compared:
        print(f"SF-MAP ST-D >= NTL's (NTL given the real source data) on {beats} of {compared} "
              "informative pairs.")  # fmt: skip


DF_HEADER = (
    "| source | seed | src before | src after | drop (pts) | est. drop [90%] "
    "| unseen domains before -> after "
    "| max unseen after | ST-D (informative unseen) | pruned | epoch | time (s) | target met |"
)


def print_df(
    rows: list[dict[str, Any]], mapped: dict[tuple[str, str, str], Any], title: str = ""
) -> None:
    _table(f"DF-MAP (no data at all), one row per source and seed{title}", DF_HEADER)
    for r in rows:
        s, drop = r["source"], source_drop(r)
        unseen = ", ".join(f"{d} {r['before'][d]:.0%}->{r['after'][d]:.0%}" for d in r["targets"])
        worst = max(r["after"][d] for d in r["targets"])
        informative = [d for d in r["targets"] if r["before"][d] >= INFORMATIVE]
        std = _std(r, informative) if informative else None
        ok = drop <= 3.0 and worst <= 0.25
        print(
            f"| {s} | {r['key'].rsplit(':', 1)[1]} | {r['before'][s]:.1%} | {r['after'][s]:.1%} "
            f"| {drop:.1f} | {_est(r)} | {unseen} | {worst:.1%} | {_fmt(std)} | {r['pruned']:.2%} "
            f"| {r['chosen_epoch']}/{r['epochs_run']} | {r['seconds']:.0f} "
            f"| {'yes' if ok else 'no'} |"
        )
    by_src: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_src.setdefault(r["source"], []).append(r)
    print("\nper source, mean over seeds: source drop (pts) / max unseen accuracy")
    for s, rs in by_src.items():
        drops = [source_drop(r) for r in rs]
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


def _pair(r: dict[str, Any]) -> tuple[str, ...]:
    """The run's (source, target...) and seed, without its variant."""
    return (r["source"], *r["targets"], r["key"].rsplit(":", 1)[1])


def print_paired(rows: list[dict[str, Any]], kind: str, variants: list[str]) -> None:
    """Per pair/run present in every variant: mean drop, target/unseen accuracy, ST-D, time."""
    by = {(v, _pair(r)): r for r in rows for v in [r["variant"]] if r["kind"] == kind}
    common = [p for p in {p for _, p in by} if all((v, p) in by for v in variants)]
    if not common:
        return
    print(f"\n{kind}, paired over {len(common)} runs present in every variant:\n")
    print("| variant | mean drop (pts) | median drop | max drop | mean target/unseen after "
          "| target met | missed: drop / target / both | mean time (s) |")  # fmt: skip
    print("|---" * 8 + "|")
    for v in variants:
        rs = [by[(v, p)] for p in common]
        drops = [source_drop(r) for r in rs]
        tgt = [statistics.mean(r["after"][t] for t in r["targets"]) for r in rs]
        met = sum(_met(r) for r in rs)
        miss = [_miss(r) for r in rs if kind == "sf-map" and r["before"][r["targets"][0]]
                >= INFORMATIVE]  # fmt: skip
        sides = " / ".join(str(miss.count(m)) for m in ("drop", "target", "both"))
        print(f"| {v} | {statistics.mean(drops):.2f} | {statistics.median(drops):.2f} "
              f"| {max(drops):.1f} | {statistics.mean(tgt):.1%} | {met} of {len(rs)} "
              f"| {sides if kind == 'sf-map' else 'n/a'} "
              f"| {statistics.mean(r['seconds'] for r in rs):.0f} |")  # fmt: skip


def print_df_issue(rows: list[dict[str, Any]], variants: list[str]) -> None:
    """DF-MAP against the issue's targets, per variant over the runs present in every variant:
    runs with a drop <= 3 pts (target: >= 8 of 10), the mean accuracy on the informative unseen
    domains after vs before (target: at most half) and the wall time of synthesis + protection
    relative to the first variant's, run by run (target: <= 2x)."""
    synth = {r["source"]: r["seconds"] for r in rows if r["kind"] == "synthesis"}
    by = {(r["variant"], _pair(r)): r for r in rows if r["kind"] == "df-map"}
    common = sorted(p for p in {p for _, p in by} if all((v, p) in by for v in variants))
    if not common:
        return
    print(f"\ndf-map against the issue's targets, paired over {len(common)} runs:\n")
    print("| variant | drop <= 3 pts | mean drop | median drop | max drop | informative unseen "
          "before -> after (ratio) | runs with ratio <= 0.5 | synthesis + protection vs "
          f"{variants[0]} (mean / max) |")  # fmt: skip
    print("|---" * 8 + "|")
    for v in variants:
        rs = [by[(v, p)] for p in common]
        drops = [source_drop(r) for r in rs]
        pairs = [(r["before"][d], r["after"][d]) for r in rs for d in _informative(r)]
        before, after = (statistics.mean(x) for x in zip(*pairs, strict=True))
        ratios = [statistics.mean(r["after"][d] for d in _informative(r))
                  / statistics.mean(r["before"][d] for d in _informative(r))
                  for r in rs]  # fmt: skip
        cost = [(synth.get(r["source"], 0.0) + r["seconds"])
                / (synth.get(r["source"], 0.0) + by[(variants[0], p)]["seconds"])
                for r, p in zip(rs, common, strict=True)]  # fmt: skip
        print(f"| {v} | {sum(d <= 3.0 for d in drops)} of {len(rs)} | {statistics.mean(drops):.2f} "
              f"| {statistics.median(drops):.2f} | {max(drops):.1f} | {before:.1%} -> {after:.1%} "
              f"({after / before:.2f}) | {sum(q <= 0.5 for q in ratios)} of {len(rs)} "
              f"| {statistics.mean(cost):.2f} / {max(cost):.2f} |")  # fmt: skip


def _informative(r: dict[str, Any]) -> list[str]:
    return [d for d in r["targets"] if r["before"][d] >= INFORMATIVE]


def _miss(r: dict[str, Any]) -> str:
    """Which side of SF-MAP's target a run missed: ``drop`` (> 2 pts), ``target`` (> 20%),
    ``both``, or ``""``."""
    drop, target = source_drop(r) > 2.0, r["after"][r["targets"][0]] > 0.20
    return "both" if drop and target else "drop" if drop else "target" if target else ""


def _met(r: dict[str, Any]) -> bool:
    """The issue's target: SF-MAP drop <= 2 pts and target <= 20% (informative pairs only);
    DF-MAP drop <= 3 pts."""
    if r["kind"] == "sf-map":
        t = r["targets"][0]
        return r["before"][t] >= INFORMATIVE and source_drop(r) <= 2.0 and r["after"][t] <= 0.20
    return source_drop(r) <= 3.0


KNOT = 0.8  # target transfer above which breaking the target costs the source (old "transfer")
FLOOR = 0.02  # the relative margin is taken of (prediction + FLOOR): errors grow with the drop
#: The estimate's signals, as the calibration's feature columns (the offset is added).
SIGNALS = ("disagreement", "transfer", "collateral")


def _transfer(r: dict[str, Any]) -> float:
    """The original's accuracy on the held-out target probe (rows of runs before it was
    recorded: the test accuracy)."""
    t = r["estimated_source_drop"].get("target_transfer")
    return r["before"][r["targets"][0]] if t is None else t


def _features(r: dict[str, Any], signal: str) -> list[float]:
    """The run's signal(s) at its chosen epoch: the disagreement ``d``; ``[d, max(0, t -
    KNOT)]`` (the session-6 calibration, kept for comparison); or the collateral ``t * max(0,
    t - a)``, ``a`` = the masked model's held-out target accuracy."""
    d = r["estimated_source_drop"]["disagreement"]
    if signal == "disagreement":
        return [d]
    t = _transfer(r)
    if signal == "transfer":
        return [d, max(0.0, t - KNOT)]
    return [t * max(0.0, t - r["degrade_accuracy"][r["chosen_epoch"] - 1])]


def calibrate(rows: list[dict[str, Any]], signal: str = "collateral") -> dict[str, Any]:
    """Fit ``drop = coef . features + offset`` (fractions; :func:`_features`) on the SF-MAP
    rows by least squares with non-negative signal coefficients, leaving each (source, target)
    pair out in turn to predict its rows. ``margin`` = the 90% quantile of the absolute
    leave-one-pair-out residuals; ``relative_margin`` = that of ``|residual| / (prediction +
    FLOOR)`` (the interval ``p -/+ relative_margin * (p + FLOOR)``). Sets ``r["loo_estimate"]``
    (with the relative interval) on every SF-MAP row."""
    import numpy as np

    sf = [r for r in rows if r["kind"] == "sf-map" and r.get("estimated_source_drop")]
    if len(sf) < 4:
        return {}
    x = np.array([[*_features(r, signal), 1.0] for r in sf])
    y = np.array([source_drop(r) / 100 for r in sf])
    preds = []
    for i, r in enumerate(sf):
        keep = np.array([_pair(q)[:2] != _pair(r)[:2] for q in sf])
        preds.append(max(0.0, float(x[i] @ _nonneg_fit(x[keep], y[keep]))))
    p = np.array(preds)
    resid = np.abs(y - p)
    margin = float(np.quantile(resid, 0.9))
    rel = float(np.quantile(resid / (p + FLOOR), 0.9))
    for r, q in zip(sf, preds):
        half = rel * (q + FLOOR)
        r["loo_estimate"] = {"estimate": q, "low": max(0.0, q - half), "high": q + half}
    coef = _nonneg_fit(x, y)
    return {"coef": [float(c) for c in coef], "margin": margin, "relative_margin": rel,
            "n": len(sf), "within_2pts": int((resid <= 0.02).sum()),
            "coverage": int((resid <= rel * (p + FLOOR)).sum()), "signal": signal,
            "pairs": len({_pair(r)[:2] for r in sf})}  # fmt: skip


def _nonneg_fit(x, y):  # noqa: ANN001, ANN202 - numpy arrays
    """Least squares with every signal's coefficient >= 0 (a signal whose fitted coefficient
    is negative is dropped and the rest refitted; the last column, the offset, is free)."""
    import numpy as np

    cols = list(range(x.shape[1]))
    while True:
        coef = np.zeros(x.shape[1])
        coef[cols] = np.linalg.lstsq(x[:, cols], y, rcond=None)[0]
        bad = [c for c in cols[:-1] if coef[c] < 0]
        if not bad:
            return coef
        cols.remove(min(bad, key=lambda c: coef[c]))
