"""Verification benchmark: the protected model and >= 20 independent models (labels and
probabilities), their p-values, the false positives and the calibration of the test.

Trains (once, cached in ``--run-dir``) a ``vgg_small`` source model on ``builtin:mnist``, embeds
the watermark with the default recipe, trains independent models (other seeds, other
architectures, other domains), and verifies every model in labels-only and probability mode.
Prints a markdown table: p-values, false positives at alpha, queries, time per verification; plus
the distribution of the independent models' p-values and the fake-secret calibration pooled
over them.

Usage::

    python -m benchmarks.false_positives            # full: 20+ independent models
    python -m benchmarks.false_positives --quick    # 5 independent models, fewer epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapguard.checkpoint import load_checkpoint
from mapguard.training import train_source
from verification.backends import ModuleBackend, QueryBackend
from verification.stats import combined_rank_test, fake_secret_calibration
from verification.triggers import get_trigger_family, random_secret
from verification.verify import VerifyConfig, query_triggers, verify
from verification.watermark_file import read_watermark, watermark_spec

SOURCE = ("vgg_small", "builtin:mnist", 0)
INDEPENDENT_FULL = (
    [("vgg_small", "builtin:mnist", s) for s in range(1, 7)]
    + [("vgg_tiny", "builtin:mnist", s) for s in range(0, 6)]
    + [
        (a, d, 0)
        for d in ("builtin:mnistm", "builtin:optdigits", "builtin:svhnlike", "builtin:syn")
        for a in ("vgg_small", "vgg_tiny")
    ]
)
INDEPENDENT_QUICK = [
    ("vgg_small", "builtin:mnist", 1),
    ("vgg_tiny", "builtin:mnist", 0),
    ("vgg_tiny", "builtin:mnist", 1),
    ("vgg_tiny", "builtin:optdigits", 0),
    ("vgg_tiny", "builtin:mnistm", 0),
]


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    kind: str
    mode: str
    pvalue: float
    ranks: tuple[int, ...]
    evidenced: bool
    queries: int
    seconds: float
    clean_accuracy: float
    secret_stats: tuple[float, ...]
    null_max: float


def _model(run: Path, arch: str, data: str, seed: int, epochs: int) -> Path:
    name = f"{arch}-{data.split(':')[-1]}-s{seed}-e{epochs}.pt"
    path = run / "models" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        s = train_source(data, arch=arch, out=path, epochs=epochs, seed=seed, progress=False)
        print(f"  trained {name}: {s['test_accuracy']:.2%} in {time.perf_counter() - t0:.0f} s")
    return path


def _embed(run: Path, source: Path) -> Path:
    from mapguard.watermark import embed
    from protocols import keys

    out = run / "wm"
    if (out / "owner.wm").exists():
        return out
    info = keys.generate_keypair(run / "owner", force=True)
    res = embed(
        source,
        "builtin:mnist",
        keys.load_private_key(info.private_path),
        out=out,
        force=True,
        progress=False,
    )
    (run / "embed-result.json").write_text(json.dumps(res.to_dict(), indent=2, default=str))
    return out


class _Memo(QueryBackend):
    """Answers each distinct image once: the labels-only run reuses the probability run's
    answers (a local model gives both from one forward pass), so a suspect costs one
    verification's compute; the reported time is that of the probability-mode run."""

    def __init__(self, inner: QueryBackend) -> None:
        super().__init__(input_shape=inner.input_shape, digest=inner.digest)
        self.inner, self.memo = inner, {}

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        keys = [hash(row.numpy().tobytes()) for row in batch]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            for i, out in zip(todo, self.inner.query(batch[todo])):
                self.memo[keys[i]] = out
        return torch.stack([self.memo[k] for k in keys])


def _backend(path: Path) -> _Memo:
    from mapguard.checkpoint import file_sha256

    module, _ = load_checkpoint(path)
    return _Memo(ModuleBackend(module, digest="sha256:" + file_sha256(path)))


def _verify(
    backend: QueryBackend, spec: Any, m: int, labels_only: bool, name: str, kind: str
) -> tuple[Row, Any]:
    res = verify(backend, spec, VerifyConfig(null_keys_per_secret=m, labels_only=labels_only))
    return Row(
        name=name,
        kind=kind,
        mode=res.mode,
        pvalue=res.pvalue,
        ranks=res.ranks,
        evidenced=res.evidenced,
        queries=res.queries,
        seconds=res.wall_time_s,
        clean_accuracy=res.clean_accuracy,
        secret_stats=res.secret_stats,
        null_max=res.null_summary.max,
    ), res


def _fresh_secret_pvalues(
    backend: QueryBackend, spec: Any, res: Any, n_draws: int, seed: int
) -> np.ndarray:
    """H0 by construction, through the real code paths: p-values of fresh secrets.

    Draws ``n_draws`` sets of ``k`` secrets exactly as ``embed`` does (``random_secret``, 256
    bits), queries the suspect with their triggers on the same images and mode as ``res``, and
    ranks each set against the null keys of ``res``. The suspect never saw these secrets, so the
    fraction of p-values <= alpha estimates the test's false-positive rate *over the draw of the
    secret* for this model -- the probability the validity argument is about. (The p-values of the
    real secret across models share that one draw, so they are not independent of each other.)
    """
    family = get_trigger_family(spec.family)
    rng = np.random.default_rng(seed)
    k = len(spec.secrets)
    triggers = [
        family.derive(random_secret(rng), params=spec.family_params) for _ in range(n_draws * k)
    ]
    x = torch.from_numpy(spec.images[: res.n_images]).float().div(255.0)
    y = torch.from_numpy(spec.labels[: res.n_images])
    out = query_triggers(
        backend, x, y, triggers, batch_size=res.config.batch_size, labels_only=res.mode == "labels"
    )
    g = out.contributions.mean(axis=1).reshape(n_draws, k)
    nulls = [np.asarray(row) for row in res.null_stats]
    return np.array([combined_rank_test(row, nulls, ties=res.config.ties).pvalue for row in g])


def _table(rows: list[Row]) -> str:
    lines = [
        "| model | kind | mode | p-value | ranks | verdict | queries | time (s) | clean acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "evidenced" if r.evidenced else "not evidenced"
        lines.append(
            f"| {r.name} | {r.kind} | {r.mode} | {r.pvalue:.3g} | {list(r.ranks)} | {verdict} "
            f"| {r.queries} | {r.seconds:.1f} | {r.clean_accuracy:.1%} |"
        )
    return "\n".join(lines)


def _summary(rows: list[Row], alpha: float) -> str:
    out = []
    for mode in ("labels", "probabilities"):
        ind = [r for r in rows if r.kind == "independent" and r.mode == mode]
        pro = [r for r in rows if r.kind == "protected" and r.mode == mode]
        ps = np.array([r.pvalue for r in ind])
        fp = int(np.sum(ps <= alpha))
        q = np.quantile(ps, [0, 0.25, 0.5, 0.75, 1]) if ps.size else []
        out.append(
            f"- {mode}: protected p = {', '.join(f'{r.pvalue:.3g}' for r in pro)}; "
            f"independent: {fp}/{len(ind)} false positives at alpha {alpha:g}; p-value "
            f"quantiles (min, q1, median, q3, max) = {', '.join(f'{v:.3g}' for v in q)}; "
            f"mean time {np.mean([r.seconds for r in ind + pro]):.1f} s"
            + (" (answers reused from the probability run)" if mode == "labels" else "")
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 independent models, fewer epochs")
    ap.add_argument("--run-dir", default="runs/benchmark-verification", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument(
        "--fresh-secrets", type=int, default=100, help="fresh secret sets per independent model"
    )
    ap.add_argument("--plot", type=Path, help="write the p-value ECDF plot (PNG) here")
    ap.add_argument("--train-only", action="store_true", help="only train and cache the models")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    epochs = 3 if args.quick else 4  # independent models (the source model: 8)
    source = _model(run, *SOURCE, epochs=8)
    if args.train_only:
        for arch, data, seed in INDEPENDENT_QUICK if args.quick else INDEPENDENT_FULL:
            _model(run, arch, data, seed, epochs)
        return
    wm_dir = _embed(run, source)
    wm = read_watermark(wm_dir / "owner.wm")
    spec = watermark_spec(wm)
    m = wm.null_keys_per_secret
    suspects = [("protected", "protected", wm_dir / "protected.pt")]
    suspects.append(("source (before embedding)", "independent", source))
    for arch, data, seed in INDEPENDENT_QUICK if args.quick else INDEPENDENT_FULL:
        path = _model(run, arch, data, seed, epochs)
        suspects.append((f"{arch} {data.split(':')[-1]} seed {seed}", "independent", path))
    rows, nulls = [], {"labels": [], "probabilities": []}
    fresh: dict[str, list[np.ndarray]] = {"labels": [], "probabilities": []}
    for i, (name, kind, path) in enumerate(suspects):
        backend = _backend(path)
        for labels_only in (False, True):
            row, res = _verify(backend, spec, m, labels_only, name, kind)
            rows.append(row)
            if kind == "independent":
                nulls[row.mode].append(np.array(res.null_stats))
                if args.fresh_secrets:
                    fresh[row.mode].append(
                        _fresh_secret_pvalues(backend, spec, res, args.fresh_secrets, seed=i)
                    )
            print(
                f"  {name:<34} {row.mode:<13} p={row.pvalue:.3g} ranks={list(row.ranks)} "
                f"{row.seconds:.1f}s",
                flush=True,
            )
    print()
    print(_table(rows))
    print()
    print(_summary(rows, args.alpha))
    for mode, mats in nulls.items():
        # each model's null keys as fake secrets against that model's other null keys
        cals = [fake_secret_calibration(mat, (0.01, 1e-3), model=None) for mat in mats]
        n = sum(c.n_trials for c in cals)
        hits = [sum(c.exact_fraction[i] * c.n_trials for c in cals) for i in range(2)]
        print(
            f"- fake-secret calibration ({mode}, {n} fake secrets over {len(mats)} "
            f"independent models): fraction p <= 0.01: {hits[0] / n:.4f}, "
            f"p <= 0.001: {hits[1] / n:.4f}"
        )
    for mode, pv in fresh.items():
        if pv:
            allp = np.concatenate(pv)
            rates = [(a, int(np.sum(allp <= a))) for a in (0.05, 0.01, 1e-3)]
            print(
                f"- fresh secrets ({mode}; {allp.size} draws of {len(spec.secrets)} secrets, "
                f"{len(pv)} independent models): "
                + ", ".join(
                    f"p <= {a:g}: {h}/{allp.size} = {h / allp.size:.4f} "
                    f"(95% upper bound {_upper(h, allp.size):.4f})"
                    for a, h in rates
                )
            )
    report = {
        "rows": [dataclasses.asdict(r) for r in rows],
        "fresh_secret_pvalues": {k: [a.tolist() for a in v] for k, v in fresh.items()},
    }
    (run / "results.json").write_text(json.dumps(report, indent=2))
    if args.plot:
        fakes = {
            mode: np.concatenate(fresh[mode])
            if fresh[mode]
            else np.concatenate(
                [fake_secret_calibration(mat, (1e-3,), model=None).exact_pvalues for mat in mats]
            )
            for mode, mats in nulls.items()
        }
        _plot(rows, fakes, args.alpha, args.plot)
        print(f"- p-value plot: {args.plot}")


def _upper(hits: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound of a binomial proportion."""
    from scipy.stats import beta

    return 1.0 if hits >= n else float(beta.ppf(0.95, hits + 1, n - hits))


def _plot(rows: list[Row], fakes: dict[str, np.ndarray], alpha: float, out: Path) -> None:
    """ECDF of the independent models' p-values (real secret; fake secrets) against uniform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, mode in zip(axes, ("labels", "probabilities")):
        real = np.sort([r.pvalue for r in rows if r.kind == "independent" and r.mode == mode])
        for vals, label, style in (
            (np.sort(fakes[mode]), f"fresh secrets ({fakes[mode].size})", "-"),
            (real, f"real secret, independent models ({real.size})", "o"),
        ):
            ax.step(vals, np.arange(1, vals.size + 1) / vals.size, style, where="post",
                    label=label, ms=4)  # fmt: skip
        prot = [r.pvalue for r in rows if r.kind == "protected" and r.mode == mode]
        for v in prot:
            ax.axvline(max(v, 1e-7), color="crimson", ls=":", label="protected model")
        grid = np.logspace(-7, 0, 50)
        ax.plot(grid, grid, "k--", lw=0.8, label="valid p-value bound P(p <= t) = t")
        ax.axvline(alpha, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=(1e-7, 1.2), ylim=(1e-4, 1.1),
               title=f"{mode} mode", xlabel="t")  # fmt: skip
    axes[0].set_ylabel("fraction of p-values <= t")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
