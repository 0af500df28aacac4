"""Framing an innocent model, and the arbiter's forgery audit (docs/METHOD.md, "The forgery audit").

A claimant who sees an innocent model writes the whole commitment: the verification images, the
secrets and the floor. This benchmark plays that claimant on innocent MNIST models: for a target
class ``c`` it keeps the 64 natural test images (right clean, not of class ``c``) that random
``c``-target keys of the default family push into ``c`` most often (60 probe keys over 600
images), then the best 8 of ``--draws`` random keys (about a tenth of them target ``c``) scored
on those images, and verifies them with the default committed analysis (k = 8, M = 7, n = 64,
pooled rank sum, alpha 1e-3, median floor 0.3). Each evidenced forgery is then audited with the
largest of ``--audit`` keys once (the smaller budgets are its prefixes), and so is every
evidenced copy of the real watermarks named with ``--real``.

    python -m benchmarks.forgery_audit --models M.pt,... [--classes 4,8,9,2] [--draws 2000]
        [--audit 1000,4000] [--real WM_DIR[:ATTACKED_DIR],...] [--copies ftal-10%,...]

Prints one line per (model, class) and per real copy: p, the median ``g``, and per audit budget
(forgeable, the best 8 audit keys' median, audit keys reaching the secrets' median, max).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch

from mapguard.checkpoint import load_checkpoint
from mapguard.data import load_data
from mapguard.watermark import EmbedConfig
from verification.backends import ModuleBackend
from verification.forgery import forgery_audit
from verification.triggers import get_trigger_family, random_secret
from verification.verify import VerifyConfig, WatermarkSpec, verify
from verification.watermark_file import read_watermark, watermark_spec


def _audits(model, spec, result, budgets) -> str:  # noqa: ANN001
    """Both audits (all keys, keys of the secrets' classes) at the largest budget, read at every
    budget by prefix: paired, same model, images and seed."""
    return " || ".join(
        ("classes " if match else "all ") + _audit(model, spec, result, budgets, match)
        for match in (False, True)
    )


def _audit(model, spec, result, budgets, match: bool) -> str:  # noqa: ANN001
    audit = forgery_audit(ModuleBackend(model), spec, result, n_keys=max(budgets),
                          match_classes=match)  # fmt: skip
    cells = []
    for n in budgets:
        g = audit.key_stats[:n]
        value = float(np.median(np.sort(g)[::-1][: len(spec.secrets)]))
        reach = int((g >= audit.secrets_value).sum())
        flag = "FORGEABLE" if value >= audit.secrets_value else "passes"
        draws = f"~{audit.keys_needed * n / reach:,.0f} draws" if reach else f"> {n:,} draws"
        cells.append(f"N={n}: {flag} (best-k median {value:.3f}, {reach} reach, {draws}, "
                     f"max {g.max():.3f})")  # fmt: skip
    return "; ".join(cells)


@torch.no_grad()
def _pred(model, x):  # noqa: ANN001, ANN202
    return torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])


def forge(model, c: int, draws: int, rng, test, cfg: EmbedConfig):  # noqa: ANN001, ANN201
    """The claimant's images and secrets for target class ``c``; the spec and its result."""
    family, params = get_trigger_family(cfg.family), cfg.family_params(10)
    x_all, y_all = test.floats(), test.labels

    def keys(count: int) -> list:
        out = []
        while len(out) < count:
            s = random_secret(rng)
            t = family.derive(s, params=params)
            if t.details["target"] == c:
                out.append((s, t))
        return out

    p0 = _pred(model, x_all)
    ok = torch.nonzero((p0 == y_all) & (y_all != c)).flatten()
    pool = ok[torch.from_numpy(rng.permutation(len(ok))[:600])]
    hits = torch.zeros(len(pool))
    for _, t in keys(60):
        hits += (_pred(model, t.apply(x_all[pool])) == c).float()
    chosen = pool[torch.argsort(hits, descending=True)[: cfg.n_verification]]
    xv = x_all[chosen]
    cands = keys(max(cfg.n_secrets, draws // 10))  # the c-target share of ``draws`` keys
    g = np.array([float((_pred(model, t.apply(xv)) == c).float().mean()) for _, t in cands])
    secrets = tuple(cands[i][0] for i in np.argsort(-g)[: cfg.n_secrets])
    spec = WatermarkSpec(family=cfg.family, family_params=params, secrets=secrets,
                         images=test.images[chosen].numpy(), labels=y_all[chosen].numpy(),
                         num_classes=10)  # fmt: skip
    vc = VerifyConfig.from_analysis(cfg.analysis(), null_seed=random_secret(rng).hex(),
                                    gives_probabilities=False)  # fmt: skip
    return spec, verify(ModuleBackend(model), spec, vc)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="innocent model checkpoints, comma-separated")
    ap.add_argument("--classes", default="4,8,9,2", help="target classes the claimant tries")
    ap.add_argument("--draws", type=int, default=2000, help="random keys the claimant draws")
    ap.add_argument("--audit", default="1000,4000", help="audit budgets (keys), comma-separated")
    ap.add_argument("--real", default="", help="WM_DIR[:ATTACKED_DIR],...: real watermarks")
    ap.add_argument(
        "--copies", default="", help="only these attacked copies (names without -s0.pt)"
    )
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    budgets = sorted(int(b) for b in args.audit.split(","))
    cfg = EmbedConfig()
    test = load_data("builtin:mnist", split="test", progress=False)
    for path in filter(None, args.models.split(",")):
        model = load_checkpoint(path)[0].eval()
        for c in map(int, args.classes.split(",")):
            spec, res = forge(model, c, args.draws, rng, test, cfg)
            head = (f"forged {Path(path).name} c={c}: p {res.pvalue:.1e}, median g "
                    f"{np.median(res.secret_stats):.3f}")  # fmt: skip
            tail = _audits(model, spec, res, budgets) if res.evidenced else "not evidenced"
            print(f"{head} -> {tail}", flush=True)
    for item in filter(None, args.real.split(",")):
        wm_dir, _, attacked = item.partition(":")
        wm = read_watermark(Path(wm_dir) / "owner.wm")
        spec = watermark_spec(wm)
        copies = [str(Path(wm_dir) / "protected.pt")]
        copies += sorted(glob.glob(f"{attacked}/*-s0.pt")) if attacked else []
        if args.copies:
            keep = {f"{c}-s0.pt" for c in args.copies.split(",")} | {"protected.pt"}
            copies = [c for c in copies if Path(c).name in keep]
        for path in copies:
            model = load_checkpoint(path)[0].eval()
            vc = VerifyConfig.from_analysis(wm.analysis, null_seed=random_secret(rng).hex(),
                                            gives_probabilities=False)  # fmt: skip
            res = verify(ModuleBackend(model), spec, vc)
            head = (f"real {Path(wm_dir).name} {Path(path).name}: p {res.pvalue:.1e}, median g "
                    f"{np.median(res.secret_stats):.3f}")  # fmt: skip
            tail = _audits(model, spec, res, budgets) if res.evidenced else "not evidenced"
            print(f"{head} -> {tail}", flush=True)


if __name__ == "__main__":
    main()
