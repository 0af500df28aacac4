"""The watermark's learning curve under target-domain fine-tuning (issue 18, item 3): does a thief
who fine-tunes the watermarked model on ``N`` labelled target images remove the ownership
evidence, and how many images does it take?

Each watermark (default: the false-positive benchmark's cached default-recipe embeddings of
``vgg_small`` MNIST sources 1..W, under the user cache dir; embedded with the recipe of the day
when missing) is attacked with ``target-ft`` (every layer fine-tuned on ``N`` class-balanced
labelled MNIST-M training images, the attack's 20 epochs, one-cycle SGD) for every ``N`` and
learning rate, and each copy is verified as ``mapguard verify`` does it
(:func:`mapguard.watermark.verify_suspect`: the committed analysis, labels mode, null keys
seeded by the commitment digest and a public claim nonce). ``N = 0`` is the watermarked model as
stolen. Per ``N`` the table shows the attacker's best learning rate (the highest MNIST-M test
accuracy: an upper bound on what a thief picking on its own images gets) and, beside it, the
highest p-value any learning rate reached (the most watermark-removing one). ``--adabn`` adds,
per ``N``, the model with only its BatchNorm statistics re-estimated on the same ``N`` images
(no labels, no weight change): how much of the removal the statistics alone explain; and, as
a control, the same re-estimation on ``N`` source images.

    python -m benchmarks.watermark_target_ft [--watermarks W] [--wm-dir DIR ...] [--adabn]
        [--ns 0,10,50,100,500] [--lrs 0.003,0.01,0.05] [--seeds 0] [--epochs 20] [--run-dir DIR]
        [--paired KEY=VALUE ... --secret-seeds 0,1 --embed-run-dir DIR]

``--paired`` compares recipes on the same source and secrets: the robustness benchmark's
``--quick`` source model (``vgg_tiny``, 1,200 MNIST digits; ``--paired-full``: its full
``vgg_small``), embedded with its budget once with the default recipe (plus ``--paired-base``)
and once with the ``EmbedConfig`` options given on top, for every secret seed
(``benchmarks.robustness.cache.watermark``: seeded secrets, the same for both recipes; cached in
``--embed-run-dir``, so ``python -m benchmarks.robustness --quick --run-dir DIR --secret-seed S
--embed-option ...`` reuses the embeddings); every copy is then attacked with the same seeds and
the table is printed per recipe.

Attacked copies and their verification rows are cached in the run directory (default: the user
cache dir's ``bench-watermark-target-ft``), keyed by the watermarked model's digest.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._options import add_overrides
from benchmarks.robustness.cache import attacked_cached, log
from benchmarks.robustness.plan import AttackRun
from mapguard.checkpoint import file_sha256, load_checkpoint
from mapguard.data import load_data
from mapguard.training import accuracy
from protocols.fileio import atomic_write_text

__all__ = [
    "ATTACKS",
    "CLAIM_NONCE",
    "adabn",
    "best_rows",
    "curve_rows",
    "default_watermarks",
    "embed_lines",
    "main",
    "paired_watermarks",
    "summary_lines",
    "table_lines",
]

#: The benchmark plays the arbiter: one public claim nonce for every suspect.
CLAIM_NONCE = "mapguard watermark target-ft benchmark"
SOURCE, TARGET = "builtin:mnist", "builtin:mnistm"


def default_watermarks(w: int) -> list[Path]:
    """The false-positive benchmark's embeddings of sources ``1..w`` (newest cached one of each;
    embedded with today's default recipe where none is cached)."""
    from benchmarks import false_positives as fp

    run, found = fp.CACHE / "bench-false-positives", []
    for m in fp.sources(w):
        cached = sorted((run / "wm").glob(f"{m.name}-*/owner.wm"), key=lambda p: p.stat().st_mtime)
        if cached:
            found.append(cached[-1].parent)
            continue
        found.append(
            fp.watermark(run, fp.model_path(run, fp.CACHE / "bench-forgery", m), m.name, {})
        )
    return found


def _verify_row(
    model: Path | torch.nn.Module, wm_dir: Path, tests: Mapping[str, Any]
) -> dict[str, Any]:
    from mapguard.watermark import verify_suspect

    res = verify_suspect(model, wm_dir / "owner.wm", claim_nonce=CLAIM_NONCE).result
    net = model if isinstance(model, torch.nn.Module) else load_checkpoint(model)[0]
    stats = sorted(res.secret_stats)
    return {
        "pvalue": res.pvalue, "evidenced": res.evidenced, "alpha": res.alpha,
        "effect": res.effect.estimate, "weakest": stats[0], "median": statistics.median(stats),
        "effect_floor": res.config.effect_floor, "floor_statistic": res.config.floor_statistic,
        "source": accuracy(net, tests["source"]), "target": accuracy(net, tests["target"]),
    }  # fmt: skip


def adabn(victim: Path, images: torch.Tensor) -> torch.nn.Module:
    """The watermarked model with its BatchNorm statistics re-estimated on ``images`` (unlabelled
    target images, one pass, cumulative average; AdaBN, Li et al., 2016); no weight changes."""
    from mapguard.attacks._adabn import reestimate_batch_norm

    net = load_checkpoint(victim)[0]
    reestimate_batch_norm(net, images)  # the library's ``adabn`` attack, on these images
    return net


#: Row order of the attacks in the tables.
ATTACKS = ("none", "target-ft", "adabn", "adabn-source")


def curve_rows(
    run: Path, wm_dir: Path, *, ns: Sequence[int], lrs: Sequence[float], seeds: Sequence[int],
    epochs: int = 20, tests: Mapping[str, Any] | None = None, target: str = TARGET,
    with_adabn: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One verified row per (N, lr, seed) of ``target-ft`` on ``wm_dir/protected.pt`` (``N = 0``:
    the watermarked model itself, once; ``with_adabn``: also per (N, seed) the :func:`adabn`
    copy on the same ``N`` images, labels unused, and as a control on ``N`` source images);
    copies and rows cached under ``run``."""
    victim = wm_dir / "protected.pt"
    tests = tests or {k: load_data(d, split="test", progress=False)
                      for k, d in (("source", SOURCE), ("target", target))}  # fmt: skip
    folder = run / "rows" / file_sha256(victim)[:12]
    data: dict[str, Any] = {}
    plan = [("none", 0, None, 0)] if 0 in ns else []
    plan += [("target-ft", n, lr, s) for n in ns if n > 0 for lr in lrs for s in seeds]
    plan += [(k, n, None, s) for k in ATTACKS[2:] for n in ns if n > 0 and with_adabn
             for s in seeds]  # fmt: skip
    rows = []
    for kind, n, lr, seed in plan:
        label = f"target-ft-{n}-lr{lr:g}-e{epochs}" if kind == "target-ft" else f"{kind}-{n}"
        label = "none" if kind == "none" else label
        path = folder / f"{label}-s{seed}.json"
        if not path.exists():
            model: Path | torch.nn.Module = victim
            if kind == "target-ft":
                ar = AttackRun(label, "target-ft", {"n_images": n, "epochs": epochs, "lr": lr},
                               data=target)  # fmt: skip
                model, _ = attacked_cached(run, victim, ar, seed, data, "target-ft")
            elif kind != "none":  # adabn on target-ft's draw, or (control) on source images
                domain = target if kind == "adabn" else SOURCE
                if domain not in data:
                    data[domain] = load_data(domain, split="train", progress=False)
                model = adabn(victim, data[domain].take(n, seed=seed).floats())
            row = {"watermark": wm_dir.name, "n": n, "lr": lr, "seed": seed,
                   **_verify_row(model, wm_dir, tests)}  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(row) + "\n", force=True)
        rows.append({"attack": kind, **json.loads(path.read_text())})
    return rows


def best_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (watermark, attack, N, seed): the row of the learning rate with the highest target
    accuracy, plus ``max_pvalue`` / ``any_unevidenced`` over every learning rate of that point."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        key = (r["watermark"], ATTACKS.index(r["attack"]), r["n"], r["seed"])
        groups.setdefault(key, []).append(r)
    out = []
    for key in sorted(groups):
        group = groups[key]
        best = max(group, key=lambda r: r["target"])
        out.append({**best, "max_pvalue": max(r["pvalue"] for r in group),
                    "any_unevidenced": any(not r["evidenced"] for r in group)})  # fmt: skip
    return out


def table_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown table (docs/ROBUSTNESS.md): one line per watermark, attack, N and seed."""
    lines = [
        "| watermark | attack | N | seed | best lr | source % | target % | p (committed, labels) | "
        "evidenced | effect | weakest g | median g | max p over lrs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in best_rows(rows):
        lr = "–" if r["lr"] is None else f"{r['lr']:g}"
        lines.append(
            f"| {r['watermark'][:18]} | {r['attack']} | {r['n']} | {r['seed']} | {lr} | "
            f"{100 * r['source']:.1f} | {100 * r['target']:.1f} | {r['pvalue']:.2g} | "
            f"{'yes' if r['evidenced'] else 'NO'} | "
            f"{r['effect']:.2f} | {r['weakest']:.2f} | {r['median']:.2f} | {r['max_pvalue']:.2g} |"
        )
    return lines


def summary_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One markdown line per (attack, N) over every watermark and seed (best learning rate):
    p-value range, committed verdicts, verdicts had the floor applied to the median secret (the
    analysis-version-3 default), mean effect and accuracies."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in best_rows(rows):
        groups.setdefault((ATTACKS.index(r["attack"]), r["n"]), []).append(r)
    lines = [
        "| attack | N | copies | p (min – max) | evidenced (committed) | evidenced (median floor) "
        "| effect (mean) | source % | target % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (a, n), group in sorted(groups.items()):
        ps = [r["pvalue"] for r in group]
        median_ok = sum(r["pvalue"] <= r["alpha"] and r["median"] >= r["effect_floor"]
                        for r in group)  # fmt: skip
        mean = {k: statistics.fmean(r[k] for r in group) for k in ("effect", "source", "target")}
        lines.append(
            f"| {ATTACKS[a]} | {n} | {len(group)} | {min(ps):.2g} – {max(ps):.2g} | "
            f"{sum(r['evidenced'] for r in group)} / {len(group)} | {median_ok} / {len(group)} | "
            f"{mean['effect']:.2f} | {100 * mean['source']:.1f} | {100 * mean['target']:.1f} |"
        )
    return lines


def _numbers(text: str, kind: type) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if any(v < 0 for v in values) or (kind is float and any(v <= 0 for v in values)):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def paired_watermarks(
    run: Path, options: Mapping[str, Any], secret_seeds: Sequence[int], *,
    base: Mapping[str, Any] | None = None, full: bool = False,
) -> list[tuple[str, Path]]:  # fmt: skip
    """``(recipe, folder)`` of one source embedded with the default recipe (plus ``base``) and
    with ``options`` on top, per secret seed (paired: same source, owner key and secrets). The
    source is the robustness benchmark's ``--quick`` one, or with ``full`` its full-budget
    ``vgg_small`` (``run/source.pt``: trained there unless a copy is put in its place)."""
    from benchmarks.robustness.cache import source_model, watermark
    from benchmarks.robustness.plan import FULL, QUICK

    budget = FULL if full else QUICK
    run.mkdir(parents=True, exist_ok=True)
    source = source_model(run, budget)
    label = ",".join(f"{k}={v}" for k, v in options.items())
    recipes = (("default", dict(base or {})), (label, {**(base or {}), **options}))
    return [(name, watermark(run, source, budget, opts, seed))
            for seed in secret_seeds for name, opts in recipes]  # fmt: skip


def embed_lines(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    """One markdown line per embedding: cost, readiness, self-check p and median secret g."""
    lines = ["| recipe | watermark | clean % before → after | ready | self-check p | "
             "median g | seconds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, wm in pairs:
        m = json.loads((wm / "metrics.json").read_text())
        check, learning = m.get("self_check") or {}, m.get("learning") or {}
        stats = check.get("secret_statistics") or [float("nan")]
        lines.append(
            f"| {name} | {wm.name} | {100 * m['clean_accuracy_before']:.1f} → "
            f"{100 * m['clean_accuracy_after']:.1f} | {m['ready']} | "
            f"{check.get('pvalue', float('nan')):.2g} | {statistics.median(stats):.2f} | "
            f"{learning.get('seconds', float('nan')):.0f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--watermarks", type=int, default=2, help="cached watermarks to use (2)")
    ap.add_argument("--wm-dir", type=Path, action="append", help="an embed output folder instead")
    ap.add_argument("--ns", type=lambda t: _numbers(t, int), default=(0, 10, 50, 100, 500))
    ap.add_argument("--lrs", type=lambda t: _numbers(t, float), default=(0.003, 0.01, 0.05))
    ap.add_argument("--seeds", type=lambda t: _numbers(t, int), default=(0,))
    ap.add_argument("--epochs", type=int, default=20, help="target-ft epochs (20)")
    ap.add_argument("--run-dir", type=Path, help="cache (default: user cache dir)")
    ap.add_argument("--adabn", action="store_true", help="also AdaBN on the same N images")
    add_overrides(ap, "--paired", "EmbedConfig option, compared with the default (quick source)")
    add_overrides(ap, "--paired-base", "EmbedConfig option of both paired recipes")
    ap.add_argument("--paired-full", action="store_true", help="pair on the full vgg_small")
    ap.add_argument("--secret-seeds", type=lambda t: _numbers(t, int), default=(0, 1))
    ap.add_argument("--embed-run-dir", type=Path, default=Path("runs/watermark-target-ft-paired"))
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.watermarks < 1:
        ap.error("--epochs and --watermarks must be at least 1")
    for d in args.wm_dir or ():
        if not (d / "owner.wm").is_file() or not (d / "protected.pt").is_file():
            ap.error(f"--wm-dir {d}: no owner.wm and protected.pt there")
    from benchmarks.false_positives import CACHE

    run = args.run_dir or CACHE / "bench-watermark-target-ft"
    torch.set_num_threads(1)
    if args.paired:
        pairs = paired_watermarks(args.embed_run_dir, args.paired, args.secret_seeds,
                                  base=args.paired_base, full=args.paired_full)  # fmt: skip
    else:
        pairs = [("", wm) for wm in args.wm_dir or default_watermarks(args.watermarks)]
    rows = []
    for name, wm in pairs:
        rows += [{"recipe": name, **r} for r in curve_rows(
            run, wm, ns=args.ns, lrs=args.lrs, seeds=args.seeds, epochs=args.epochs,
            with_adabn=args.adabn)]  # fmt: skip
        log(f"{wm.name}: curve done")
    atomic_write_text(run / "results.json", json.dumps(rows, indent=1) + "\n", force=True)
    print("\n".join(table_lines(rows)))
    for name in dict.fromkeys(n for n, _ in pairs):
        print(f"\n{name or 'summary'}:\n" + "\n".join(
            summary_lines([r for r in rows if r["recipe"] == name])))  # fmt: skip
    if args.paired:
        print("\n" + "\n".join(embed_lines(pairs)))
    return rows


if __name__ == "__main__":
    main()
