"""Does a thief who trains a new model inherit the keyed cosine tilt? (issue 15)

    python -m benchmarks.inherited_channel --quick --draws 2

For each secret draw: teach the source model the draw's tilt (``mapguard.watermark._tilt``),
attack it the ways that remove the trigger watermark (distillation and extraction on the owner's
data, on MNIST-M, with 1,000 labelled queries, into another architecture; FTAL at lr 0.05,
RTAL), and rank the secret's labels-only and probability statistics among ``--nulls`` null keys
(exact rank test). Null models — independent models, students of an independent teacher, and the
owner's *pre-embedding* model attacked the same ways — must not be evidenced. The forgery margin
is the best z among the null keys on each null model: what a key chosen after seeing that model
would score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._adaptive_channel import ADAPTIVE, adaptive_copy
from benchmarks.robustness.cache import log, train_cached
from benchmarks.robustness.plan import Independent
from mapguard.attacks import AttackConfig, attack
from mapguard.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from mapguard.data import load_data
from mapguard.training import predict_logits
from mapguard.watermark import (
    TiltRecipe,
    boundary_images,
    embed_tilt,
    torch_preference,
    torch_tilt,
)
from verification.tilt import (
    CosineTiltFamily,
    PairPreferenceFamily,
    PreferenceReference,
    TiltQueries,
    TiltReference,
    channel_statistics,
    lowfreq_features,
)
from verification.triggers import null_secrets, random_secret

ALPHA = 1e-3
#: (row name, attack kind, transfer domain, options)
ATTACKS = (
    ("distill", "distill", "mnist", {}),
    ("distill-arch (vgg_small)", "distill-arch", "mnist", {"arch": "vgg_small", "epochs": 5}),
    ("extract", "extract", "mnist", {}),
    ("distill-on-mnistm", "distill", "mnistm", {}),
    ("extract-on-mnistm", "extract", "mnistm", {}),
    ("extract-1k-labels", "extract", "mnist", {"n_images": 1000}),
    ("ftal-10% lr 0.05", "ftal", "mnist", {"fraction": 0.1, "lr": 0.05}),
    ("rtal-10%", "rtal", "mnist", {"fraction": 0.1}),
)
DERIVED = ("distill", "extract", "distill-on-mnistm", "ftal-10% lr 0.05")


def _cached_attack(path: Path, victim, meta, kind, data, opts, seed: int):  # noqa: ANN001
    if path.exists():
        return load_checkpoint(path)[0].eval()
    model, info = attack(victim, kind, data=data, config=AttackConfig(**opts), seed=seed, meta=meta)
    save_checkpoint(model, ModelMeta(arch=info.arch), path, force=True)
    return model.eval()


def _answers(model, boundary: torch.Tensor) -> dict:  # noqa: ANN001
    with torch.no_grad():
        lp = F.log_softmax(predict_logits(model, boundary), 1)
    return {"logprobs": lp.double().numpy(), "labels": lp.argmax(1).numpy()}


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:  # noqa: ANN001
    with torch.no_grad():
        return float((predict_logits(model, x).argmax(1) == y).float().mean())


def _test(g: np.ndarray) -> tuple[float, float, float]:
    """(p, z of the secret, max z among the nulls) for statistics ``[1 + M]`` (secret first)."""
    nulls = g[1:]
    p = (1 + int((nulls >= g[0]).sum())) / (len(nulls) + 1)
    mu, sd = nulls.mean(), nulls.std()
    return p, float((g[0] - mu) / sd), float((nulls.max() - mu) / sd)


class _Ideal(torch.nn.Module):
    """The original's logits plus exactly ``eps`` times the key's shift (no learning)."""

    def __init__(self, original: torch.nn.Module, shift: torch.nn.Module, eps: float) -> None:
        super().__init__()
        self.original, self.shift, self.eps = original, shift, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.original(x) + self.eps * self.shift(x)


def _attacks(args: argparse.Namespace) -> tuple:
    if args.screen:
        return ()
    if args.attacks is None:
        return ATTACKS
    wanted = set(args.attacks.split(","))
    if unknown := wanted - {row.split()[0] for row, *_ in ATTACKS}:
        raise SystemExit(f"unknown attacks: {', '.join(sorted(unknown))}")
    return tuple(a for a in ATTACKS if a[0].split()[0] in wanted)


def _forgery(family, queries: TiltQueries, null_answers: dict, k: int) -> None:  # noqa: ANN001
    """What a key chosen after seeing an innocent model reaches: ``k`` keys' z on each null
    model (standardised by the keys' own mean and sd), the best one, and the pooled tail next
    to the normal's (the statistic is a sum over thousands of images: if its tail is normal,
    a search over ``2**b`` keys reaches ``z = norm.isf(2**-b)``)."""
    from scipy.stats import norm

    keys = null_secrets(hashlib.sha256(b"bench-tilt-forgery").digest(), k)
    stats = channel_statistics(family, keys, queries, null_answers)
    pooled: dict[str, list[np.ndarray]] = {"labels": [], "probs": []}
    print(f"\nforgery: {k} keys on each of {len(stats)} null models (z of each key)")
    print("| null model | best z labels | best z probs |")
    print("|---|---|---|")
    for name, sc in stats.items():
        z = {m: (g - g.mean()) / g.std() for m, g in sc.items()}
        for m in pooled:
            pooled[m].append(z[m])
        print(f"| {name} | {z['labels'].max():.2f} | {z['probs'].max():.2f} |")
    for m, parts in pooled.items():
        z = np.concatenate(parts)
        tail = ", ".join(
            f"P(z>{t}) {np.mean(z > t):.1e} (normal {norm.sf(t):.1e})" for t in (3, 4, 4.5)
        )
        print(f"pooled {m} over {len(z)} keys: {tail}")
    print(
        "normal extrapolation of the best of 2^b keys: "
        + ", ".join(f"b={b}: z {norm.isf(2.0**-b):.1f}" for b in (20, 30, 40, 50, 60))
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="vgg_tiny on 1,200 digits")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--nulls", type=int, default=9999)
    ap.add_argument("--boundary", type=int, default=4000)
    ap.add_argument("--natural", type=int, default=500)
    ap.add_argument("--omega", default=None, help="MIN,MAX: the family's frequency range")
    ap.add_argument("--whiten", action="store_true", help="project standardised features")
    ap.add_argument("--family", choices=("cosine", "preference"), default="cosine")
    ap.add_argument("--regions", type=int, default=4, help="pair_preference: R")
    ap.add_argument("--sharpness", type=float, default=3.0, help="pair_preference: slope")
    ap.add_argument("--boundary-train", type=int, default=0, help="TiltRecipe.boundary")
    ap.add_argument("--pair-weight", type=float, default=0.0, help="TiltRecipe.pair_weight")
    ap.add_argument(
        "--screen", action="store_true", help="the watermarked model and null models only"
    )
    ap.add_argument("--attacks", default=None, help="comma-separated rows of ATTACKS to run")
    ap.add_argument(
        "--adaptive",
        action="store_true",
        help="add the adaptive thieves (smoothing, mixup fine-tuning) and their null copies",
    )
    ap.add_argument(
        "--ideal",
        action="store_true",
        help="the marked model is the ideal teacher: the original's logits + exactly eps * shift",
    )
    ap.add_argument(
        "--forgery-keys",
        type=int,
        default=0,
        help="also rank K fresh keys on every null model: the best z a key search reaches",
    )
    ap.add_argument("--run-dir", type=Path, default=Path.home() / ".cache/mapguard/bench-tilt")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    arch, n_train, epochs = ("vgg_tiny", 1200, 8) if args.quick else ("vgg_small", 4000, 8)
    omega = [float(w) for w in args.omega.split(",")] if args.omega else []
    if args.family == "cosine":
        family = CosineTiltFamily(
            num_classes=10, whiten=args.whiten, **dict(zip(("omega_min", "omega_max"), omega))
        )
        tag = f"{arch}-eps{args.eps}-e{args.epochs}-w{family.omega_min}-{family.omega_max}"
        tag += "-whiten" if args.whiten else ""
    else:
        family = PairPreferenceFamily(
            num_classes=10, regions=args.regions, sharpness=args.sharpness
        )
        tag = f"{arch}-pref-r{args.regions}-s{args.sharpness}-eps{args.eps}-e{args.epochs}"
    tag += f"-b{args.boundary_train}-pw{args.pair_weight}" if args.boundary_train else ""
    tag += "-ideal" if args.ideal else ""
    run = args.run_dir / tag
    run.mkdir(parents=True, exist_ok=True)
    src = Independent("source", "builtin:mnist", arch, n_train, epochs, 0)
    original, meta = load_checkpoint(train_cached(args.run_dir / f"source-{arch}.pt", src))
    original.eval()
    data = {
        d: load_data(f"builtin:{d}", split="train", progress=False) for d in ("mnist", "mnistm")
    }
    test = load_data("builtin:mnist", split="test", progress=False)
    x_test, y_test = test.floats(), test.labels
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(2024))
    nat_idx, pool_idx = order[: args.natural], order[args.natural :]
    natural = x_test[nat_idx]
    bset = boundary_images(original, x_test[pool_idx], y_test[pool_idx], args.boundary, seed=1)
    boundary = torch.tensor(bset.images, dtype=torch.float32) / 255
    feats_n = lowfreq_features(natural.numpy(), grid=family.grid, order=family.order)
    queries = TiltQueries((natural * 255).round().to(torch.uint8).numpy(), bset.images, bset.pairs)
    recipe = TiltRecipe(
        eps=args.eps, epochs=args.epochs, boundary=args.boundary_train, pair_weight=args.pair_weight
    )

    null_models = {"original (pre-embedding)": original}
    for s in range(4):
        ind = Independent(f"mnist-s{s}", "builtin:mnist", arch, n_train, epochs, 10 + s)
        null_models[f"independent {ind.name}"] = load_checkpoint(
            train_cached(args.run_dir / f"indep-{arch}-{s}.pt", ind)
        )[0].eval()
    teacher = null_models["independent mnist-s0"]
    for row, kind, dom, opts in ATTACKS:
        if row in ("distill", "extract"):
            null_models[f"{row} of independent teacher"] = _cached_attack(
                run.parent / f"null-{arch}-{row}-of-indep.pt",
                teacher,
                meta,
                kind,
                data[dom],
                opts,
                0,
            )
        if row in DERIVED:
            null_models[f"{row} of original"] = _cached_attack(
                run.parent / f"null-{arch}-{row}-of-original.pt",
                original,
                meta,
                kind,
                data[dom],
                opts,
                0,
            )
    train_x, train_y = data["mnist"].floats(), data["mnist"].labels
    for row, kind, opts in ADAPTIVE if args.adaptive else ():
        null_models[f"{row} of original"] = adaptive_copy(
            original, kind, opts, train_x, train_y, seed=0, arch=arch
        )
    null_answers = {n: _answers(m, boundary) for n, m in null_models.items()}
    null_acc = {n: _accuracy(m, x_test, y_test) for n, m in null_models.items()}

    rows: dict[str, list] = {}
    for draw in range(args.draws):
        secret = random_secret(np.random.default_rng(1000 + draw))
        if args.family == "cosine":
            key = family.derive(secret, natural=feats_n)
            ref = TiltReference.from_features(key, feats_n)
            tilt = torch_tilt(family, key, ref, side=x_test.shape[-1])
        else:
            key = family.derive(secret)
            ref = PreferenceReference.from_features(key, feats_n)
            tilt = torch_preference(family, key, ref, x_test.shape[-1], original)
        t0 = time.perf_counter()
        wm_path = run / f"wm-{draw}.pt"
        if args.ideal:
            wm = _Ideal(original, tilt, args.eps).eval()
        elif wm_path.exists():
            wm = load_checkpoint(wm_path)[0].eval()
        else:
            train = data["mnist"]
            wm = embed_tilt(original, train.floats(), tilt, recipe, seed=draw, labels=train.labels)
            save_checkpoint(wm, ModelMeta(arch=arch), wm_path, force=True)
        log(f"draw {draw}: embedded in {time.perf_counter() - t0:.0f} s")
        models = {"watermarked (tilt)": wm}
        for row, kind, dom, opts in _attacks(args):
            models[row] = _cached_attack(
                run / f"{row.split()[0]}-{draw}.pt", wm, meta, kind, data[dom], opts, draw
            )
        for row, kind, opts in ADAPTIVE if args.adaptive else ():
            models[row] = adaptive_copy(wm, kind, opts, train_x, train_y, seed=draw, arch=arch)
        answers = {n: _answers(m, boundary) for n, m in models.items()}
        secrets = [
            secret,
            *null_secrets(hashlib.sha256(b"bench-tilt" + secret).digest(), args.nulls),
        ]
        scores = channel_statistics(family, secrets, queries, {**answers, **null_answers})
        for name, sc in scores.items():
            acc = _accuracy(models[name], x_test, y_test) if name in models else null_acc[name]
            lab, prb = _test(sc["labels"]), _test(sc["probs"])
            rows.setdefault(name, []).append({"acc": acc, "labels": lab, "probs": prb})
        log(f"draw {draw} done at {time.perf_counter() - t_start:.0f} s")
    _print(rows, set(null_models), args, time.perf_counter() - t_start)
    if args.forgery_keys:
        _forgery(family, queries, null_answers, args.forgery_keys)
    if rows:  # a subset of the thieves never overwrites the full run's figures
        subset = "screen" if args.screen else args.attacks and args.attacks.replace(",", "+")
        subset = f"{subset}-adaptive" if args.adaptive and subset else subset
        name = f"results-{subset}.json" if subset else "results.json"
        (run / name).write_text(json.dumps(rows, indent=1))


def _print(rows: dict, nulls: set, args, seconds: float) -> None:  # noqa: ANN001
    print(
        f"\nkeyed cosine tilt: eps {args.eps}, {args.draws} draws, M = {args.nulls} null keys, "
        f"{args.boundary} boundary + {args.natural} natural queries, alpha {ALPHA}; {seconds:.0f} s"
    )
    print(
        "| model | null? | clean acc % | labels p (max) | labels z (min) | probs p (max) | "
        "probs z (min) | evidenced labels / probs | best null-key z (labels / probs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        acc = np.mean([r["acc"] for r in rs]) * 100
        ev_l = sum(r["labels"][0] <= ALPHA for r in rs)
        ev_p = sum(r["probs"][0] <= ALPHA for r in rs)
        print(
            f"| {name} | {'null' if name in nulls else ''} | {acc:.1f} | "
            f"{max(r['labels'][0] for r in rs):.1e} | {min(r['labels'][1] for r in rs):.1f} | "
            f"{max(r['probs'][0] for r in rs):.1e} | {min(r['probs'][1] for r in rs):.1f} | "
            f"{ev_l}/{len(rs)} · {ev_p}/{len(rs)} | "
            f"{max(r['labels'][2] for r in rs):.1f} / {max(r['probs'][2] for r in rs):.1f} |"
        )


if __name__ == "__main__":
    main()
