"""Embedding into a model from outside the zoo: cost, self-check and time vs the model's training.

A torchvision ``resnet18`` (``mapguard train --arch torchvision:resnet18 --size S``, 10 epochs,
lr 0.05, batch 64: what a new user does) is trained on the ``photos/photo`` ImageFolder of
:func:`mapguard.data.make_folder_benchmark` (10 classes, ``--per-class`` crops of each photograph,
80/20 split), then a watermark is embedded with each recipe, **paired**: the same model, data,
hold-out split, verification images and secrets (``secret_rng`` seeded with ``--secrets-seed``;
tests and benchmarks only, never production).

* *before*: the fixed recipe (``EmbedConfig(adapt="off")``: the zoo's 64,000-image budget,
  learning rate, weight granularity, no stopping rule);
* *after*: the default recipe, adapted to the model before the secrets are drawn
  (``mapguard.watermark._adapt.adapt_recipe``; embed-config.json records what was decided).

Printed per side and recipe: the training time, the embed wall time (the whole walk: mask,
evaluation, files, export, self-check) and their ratio, clean accuracy before -> after and the
cost in points, the self-check's p-value, its floor, the weakest / median secret effect, the
committed level (p <= alpha and the median effect >= the committed floor), the readiness, and
the images the mask learner saw. Target (issue 14): cost <= 1 point, committed level reached,
embed wall time <= training time.

Usage::

    python -m benchmarks.embed_real                    # 32 and 64 px, both recipes
    python -m benchmarks.embed_real --sizes 32 --recipes after -o mask.lr=0.03 --tag lr03
    python -m benchmarks.embed_real --sizes 64,224 --device cuda --amp   # when a GPU is lent
    PYTHONPATH=tests/models python -m benchmarks.embed_real --sizes 64 \
        --arch module:mapguard_test_factories:tiny_vit     # the tests' small ViT (runs its code)

Runs are cached as JSON under ``$MAPGUARD_CACHE_DIR`` (or the user cache folder)
``/bench-embed-real/``, keyed by side, recipe and tag; ``--rerun`` ignores the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks._options import add_overrides
from mapguard.data import make_folder_benchmark
from mapguard.training import train_source
from mapguard.watermark import EmbedConfig, embed
from mapguard.watermark._embed import readiness

ARCH = "torchvision:resnet18"
RECIPES = ("before", "after")


def _root() -> Path:
    root = os.environ.get("MAPGUARD_CACHE_DIR") or platformdirs.user_cache_dir("mapguard")
    return Path(root) / "bench-embed-real"


def _short(arch: str) -> str:
    """The file-name form of an architecture spec (``torchvision:resnet18`` -> ``resnet18``)."""
    return arch.rsplit(":", 1)[-1]


def _data(per_class: int) -> Path:
    """The photo ImageFolder (64 px; a 32-px model reads it resized), written once."""
    out = _root() / f"data64-{per_class}"
    if not out.exists():
        make_folder_benchmark(out, size=64, per_class=per_class, seed=0)
    return out / "photos" / "photo"


def _trained(side: int, data: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The user's model at ``side`` px and its training summary (trained once, cached)."""
    ckpt = _root() / f"{_short(args.arch)}-{side}px-{args.per_class}{_on(args)}.pt"
    summary_file = ckpt.with_suffix(".json")
    if ckpt.exists() and summary_file.exists():
        return ckpt, json.loads(summary_file.read_text())
    c0 = time.process_time()
    summary = train_source(str(data), arch=args.arch, out=ckpt, size=side, epochs=args.train_epochs,
                           force=True, progress=False, device=args.device)  # fmt: skip
    summary["cpu_s"] = time.process_time() - c0
    summary_file.write_text(json.dumps(summary, indent=1, default=str))
    return ckpt, summary


def _on(args: argparse.Namespace) -> str:
    """The cache names' device part: empty on the CPU (the names of earlier runs)."""
    dev = args.device or "cpu"
    return ("" if dev == "cpu" else f"-{dev.replace(':', '')}") + ("-amp" if args.amp else "")


def recipe(name: str, overrides: dict[str, Any]) -> EmbedConfig:
    """The embedding recipe ``name`` (``before`` / ``after``), then ``overrides`` (``-o``)."""
    cfg = EmbedConfig(adapt="off") if name == "before" else EmbedConfig()
    return cfg.with_options(overrides) if overrides else cfg


def _embed(side: int, name: str, ckpt: Path, data: Path, args: argparse.Namespace) -> dict:
    tag = f"-{args.tag}" if args.tag else ""
    arch = "" if args.arch == ARCH else f"{_short(args.arch)}-"
    cache = _root() / (
        f"run-{arch}{side}px-{args.per_class}-{name}{tag}-s{args.secrets_seed}{_on(args)}.json"
    )
    if cache.exists() and not args.rerun:
        return json.loads(cache.read_text())
    cfg = recipe(name, args.override)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))  # a throwaway, fixed owner key
    out = _root() / f"wm-{arch}{side}px-{name}{tag}{_on(args)}"
    t0, c0 = time.perf_counter(), time.process_time()
    res = embed(ckpt, str(data), key, cfg, out=out, force=True, progress=False, allow_code=True,
                secret_rng=np.random.default_rng(args.secrets_seed), device=args.device,
                amp=args.amp)  # fmt: skip
    row = res.to_dict() | {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                           "recipe": name, "tag": args.tag}  # fmt: skip
    row["config"] = json.loads((out / "embed-config.json").read_text())
    row["learning"] = json.loads((out / "metrics.json").read_text()).get("learning")
    cache.write_text(json.dumps(row, indent=1, default=str))
    return row


def _row(side: int, train: dict, run: dict) -> str:
    sc = run["self_check"]
    stats = sorted(sc["secret_statistics"])
    median = float(np.median(stats))
    floor = run["config"]["effect_floor"]
    level = sc["evidenced"]
    learning = run.get("learning") or {}
    epochs = learning.get("epochs", run["config"]["mask"]["epochs"])
    return (f"| {side} | {_name(run)} | {train['seconds']:.0f} | {run['wall_s']:.0f} | "
            f"{_cpu(run)} | "
            f"{run['wall_s'] / train['seconds']:.1f}x | {100 * run['clean_accuracy_before']:.1f} "
            f"-> {100 * run['clean_accuracy_after']:.1f} | {100 * run['accuracy_drop']:.1f} | "
            f"{sc['pvalue']:.2g} (floor {sc['pvalue_floor']:.1g}) | {stats[0]:.2f} / "
            f"{median:.2f} (>= {floor:g}) | {'yes' if level else 'no'} | "
            f"{_verdict(run)} | {epochs} of "
            f"{run['config']['mask']['epochs']} | {learning.get('images', 0):,} |")  # fmt: skip


def _name(run: dict) -> str:
    """The recipe, and the variant's tag if any (``after (tb25)``)."""
    return run["recipe"] + (f" ({run['tag']})" if run.get("tag") else "")


def _cpu(run: dict) -> str:
    """The embedding's process CPU seconds (load-independent on one thread; not recorded by
    runs made before it was)."""
    return f"{run['cpu_s']:.0f}" if "cpu_s" in run else "-"


def _verdict(run: dict) -> str:
    """The run's readiness, as the current rule (``readiness``) judges its figures; ``*``: the
    run itself said otherwise (an earlier rule)."""
    cfg = EmbedConfig.from_dict(run["config"])
    now = not readiness(cfg, run, run["self_check"], attempt=1)
    word = "ready" if now else "NOT READY"
    return word + ("*" if now != run["ready"] else "")


def _rehearsals(side: int, run: dict) -> list[str]:
    """The stopping rule's rehearsals of one run (none without the rule)."""
    rows, name = [], _name(run)
    for r in (run.get("learning") or {}).get("rehearsals") or []:
        p = f"{r['pvalue']:.2g}" if "pvalue" in r else "(pre-check failed)"
        rows.append(f"| {side} | {name} | {r['epoch']} | {r['train_images']:,} | "
                    f"{100 * r['cost']:.1f} | {min(r['effects']):.2f} / "
                    f"{float(np.median(r['effects'])):.2f} | {p} | "
                    f"{'yes' if r['met'] else 'no'} |")  # fmt: skip
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64", help="model sides, comma-separated")
    p.add_argument("--arch", default=ARCH, help="the user's architecture (module: specs run)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="before,after")
    p.add_argument("--per-class", type=int, default=100, help="photo crops per class")
    p.add_argument("--train-epochs", type=int, default=10, help="the user's training epochs")
    p.add_argument("--secrets-seed", type=int, default=0, help="seed of the paired secrets")
    p.add_argument("--tag", default="", help="names a variant run (with -o)")
    p.add_argument("--rerun", action="store_true", help="ignore cached runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", help="torch device of training and embedding (default: cpu)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    add_overrides(p, ["-o", "--override"], "recipe option (EmbedConfig field or mask.FIELD)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    _root().mkdir(parents=True, exist_ok=True)
    os.environ["MAPGUARD_DATA_DIR"] = str(_root() / "attempts")  # the throwaway key's log
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    if not names or any(n not in RECIPES for n in names):
        raise SystemExit(f"embed_real: --recipes takes {', '.join(RECIPES)}; got {args.recipes!r}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"# {args.arch} trained by `mapguard train` on photos/photo ({args.per_class} per "
          "class), "
          f"{args.threads} torch thread(s), {os.cpu_count()} CPUs, device {args.device or 'cpu'}"
          f"{' (bf16 autocast)' if args.amp else ''}, torch {torch.__version__}, "
          f"Python {platform.python_version()}; secrets seed {args.secrets_seed}\n")  # fmt: skip
    print(
        "| side | recipe | train s | embed s | embed CPU s | embed/train | clean acc. % | "
        "cost pts | self-check p | weakest / median effect | committed level | verdict | "
        "mask epochs | images seen |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    data = _data(args.per_class)
    trail = []
    for side in sizes:
        ckpt, train = _trained(side, data, args)
        for name in names:
            run = _embed(side, name, ckpt, data, args)
            print(_row(side, train, run), flush=True)
            trail += _rehearsals(side, run)
    if trail:
        print(
            "\n## The stopping rule's rehearsals (tuning images: held out, outside the "
            "verification set)\n"
        )
        print(
            "| side | recipe | epoch | training images seen | cost pts | weakest / median "
            "effect | rehearsal p | met |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(trail))


if __name__ == "__main__":
    main()
