"""The robustness benchmark's models, each made once and kept in the run directory.

A rerun finds the source model, the watermark, every attacked copy and every independent model
where it left them, and only verifies again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.robustness.plan import SOURCE, AttackRun, Budget, Independent
from mapguard.attacks import AttackConfig, attack_file
from mapguard.checkpoint import ModelMeta, file_sha256, save_checkpoint
from mapguard.data import load_data
from mapguard.models import create_model
from mapguard.training import train_model
from protocols import keys

__all__ = ["attacked_cached", "log", "source_model", "train_cached", "watermark"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_cached(path: Path, ind: Independent) -> Path:
    """Train (once) ``ind`` and save it to ``path``."""
    if path.exists():
        return path
    t0 = time.perf_counter()
    data = load_data(ind.domain, split="train", progress=False)
    if ind.n_train < len(data):
        data = data.take(ind.n_train, seed=ind.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ind.seed)
        model = create_model(ind.arch, num_classes=10)
    train_model(model, data, epochs=ind.epochs, lr=0.05, seed=ind.seed, progress=False)
    meta = ModelMeta(arch=ind.arch, extra={"trained_on": ind.domain, "benchmark": ind.name})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, meta, path, force=True)
    log(f"trained {ind.name} in {time.perf_counter() - t0:.0f} s")
    return path


def source_model(run: Path, budget: Budget) -> Path:
    """The source model of ``budget``: trained once, then read from ``run/source.pt``."""
    spec = Independent("source", SOURCE, budget.arch, budget.source_n_train,
                       budget.source_epochs, 0)  # fmt: skip
    return train_cached(run / "source.pt", spec)


def watermark(
    run: Path,
    source: Path,
    budget: Budget,
    overrides: Mapping[str, Any],
    secret_seed: int | None = None,
) -> Path:
    """Embed (once) a watermark into ``source``; returns the output folder.

    ``secret_seed`` (benchmark only, for paired comparisons of recipes): draw the secrets from a
    seeded generator instead of the OS CSPRNG. A real watermark never does this.
    """
    from mapguard.watermark import EmbedConfig, embed

    base = EmbedConfig()
    cfg = base.replace(**budget.embed, mask=base.mask.replace(**budget.embed_mask))
    cfg = cfg.with_options(overrides)  # "mask.KEY" sets one mask option
    # one folder per complete recipe (so a changed library default never reuses a stale cache)
    keyed = {"config": cfg.to_dict(), "secret_seed": secret_seed}
    tag = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]
    out = run / f"wm-{tag}"
    if (out / "owner.wm").exists():
        return out
    if not (run / "owner.key").exists():
        keys.generate_keypair(run / "owner")
    train = load_data(SOURCE, split="train", progress=False)
    if budget.n_embed is not None:
        train = train.take(budget.n_embed, seed=0)
    test = load_data(SOURCE, split="test", progress=False)
    t0 = time.perf_counter()
    rng = None if secret_seed is None else np.random.default_rng([0x5EC, secret_seed])
    embed(source, (train, test), keys.load_private_key(run / "owner.key"), cfg, out=out,
          progress=False, secret_rng=rng)  # fmt: skip
    log(f"embedded watermark in {time.perf_counter() - t0:.0f} s")
    return out


def attacked_cached(
    run: Path, victim: Path, ar: AttackRun, seed: int, data: dict[str, Any], tag: str
) -> tuple[Path, dict[str, Any]]:
    """Attack (once) ``victim`` with ``ar`` and ``seed``; returns the file and the attack info."""
    out = run / tag / file_sha256(victim)[:12] / f"{ar.label}-s{seed}.pt"  # keyed by victim
    info_path = out.with_suffix(".json")
    if not (out.exists() and info_path.exists()):
        out.parent.mkdir(parents=True, exist_ok=True)
        if ar.data not in data:
            data[ar.data] = load_data(ar.data, split="train", progress=False)
        info, _ = attack_file(victim, ar.kind, out=out, data=data[ar.data],
                              config=AttackConfig.from_dict(ar.options), seed=seed, force=True,
                              progress=False)  # fmt: skip
        info_path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        log(f"{tag}: {ar.label} seed {seed} in {info.seconds:.0f} s")
    return out, json.loads(info_path.read_text())
