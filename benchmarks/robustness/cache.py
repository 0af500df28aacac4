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
from protocols.fileio import atomic_write_text

__all__ = [
    "attacked_cached",
    "changed_options",
    "log",
    "source_model",
    "train_cached",
    "watermark",
    "watermark_folder",
]


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
    out = watermark_folder(run, cfg.to_dict(), base.to_dict(), secret_seed)
    if (out / "owner.wm").exists():
        return out
    # One owner key per watermark folder: each recipe is one owner's first embedding of this
    # model (attempt 1), as a user who embeds once gets it. Under one shared key every further
    # recipe would be a further attempt and carry that factor (session 16: attempt 6 by the
    # seventh recipe); a folder deleted and embedded again is still counted, as attempt 2.
    key = run / "owner-keys" / f"{out.name}.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        keys.generate_keypair(key.with_suffix(""))
    train = load_data(SOURCE, split="train", progress=False)
    if budget.n_embed is not None:
        train = train.take(budget.n_embed, seed=0)
    test = load_data(SOURCE, split="test", progress=False)
    t0 = time.perf_counter()
    rng = None if secret_seed is None else np.random.default_rng([0x5EC, secret_seed])
    embed(source, (train, test), keys.load_private_key(key), cfg, out=out,
          progress=False, secret_rng=rng)  # fmt: skip
    log(f"embedded watermark in {time.perf_counter() - t0:.0f} s")
    atomic_write_text(out / REQUESTED, json.dumps(cfg.to_dict(), sort_keys=True) + "\n")
    return out


#: The complete recipe a watermark folder was asked for (``embed-config.json`` holds the adapted
#: one), read to tell a changed library default from an unchanged recipe.
REQUESTED = "benchmark-config.json"


def changed_options(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``defaults`` (nested options compared one by
    one; an entry ``defaults`` lacks counts as changed)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = defaults.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            if sub := changed_options(value, default):
                out[key] = sub
        elif default is _MISSING or value != default:
            out[key] = value
    return out


_MISSING = object()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def watermark_folder(
    run: Path, config: Mapping[str, Any], defaults: Mapping[str, Any], secret_seed: int | None
) -> Path:
    """The folder of the watermark embedded with ``config`` (an ``EmbedConfig.to_dict()``;
    ``defaults``: the default config's) and ``secret_seed``.

    Keyed by the options that differ from the defaults only, so a new option at its default keeps
    every cached watermark, and any other value gets a folder of its own. A library default that
    changed under a cached folder (its recorded request differs from ``config`` on an option both
    have) gets a second folder keyed by the complete config. A folder named by the complete config
    (the rule before session 11: exactly this recipe) is moved, once, to the new name.
    """
    changed = changed_options(config, defaults)
    out = run / f"wm-{_digest({'config': changed, 'secret_seed': secret_seed})}"
    full = _digest({"config": dict(config), "secret_seed": secret_seed})
    legacy = run / f"wm-{full}"
    if not (out / "owner.wm").exists() and (legacy / "owner.wm").exists():
        legacy.rename(out)
        atomic_write_text(out / REQUESTED, json.dumps(dict(config), sort_keys=True) + "\n")
    if (out / REQUESTED).exists():
        recorded = json.loads((out / REQUESTED).read_text())
        if changed_options(_shared(recorded, config), _shared(config, recorded)):
            return run / f"{out.name}-{full}"
    return out


def _shared(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``a`` restricted to the options ``b`` has too (nested options likewise)."""
    return {k: _shared(v, b[k]) if isinstance(v, Mapping) and isinstance(b[k], Mapping) else v
            for k, v in a.items() if k in b}  # fmt: skip


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
