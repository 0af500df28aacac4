"""``mapguard demo``: the whole owner/arbiter walk on built-in data, in a few minutes on a laptop.

Steps (each prints what it is doing): build the offline domains, train (or reuse from the cache)
a source model on ``builtin:mnist``, print its cross-domain accuracy table, protect it against
``builtin:mnistm`` with MAP, then keygen → embed a watermark → verify the protected model and an
independently trained one → write the evidence report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from mapguard._progress import console

__all__ = ["DemoConfig", "run_demo"]

#: The demo plays the arbiter too, so it fixes the claim nonce itself (publicly, here).
DEMO_CLAIM_NONCE = "mapguard demo claim 1"


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """What the demo does; the defaults are a reduced budget that keeps it under 5 minutes on
    2 CPU cores (docs/BENCHMARKS.md, "Demo"); the benchmarks use the full defaults.

    Attributes:
        protect_options: ``protect`` options of the MAP step (the default MAP budget is 4 full
            epochs; the demo learns for ``epochs x max_steps_per_epoch`` steps).
        embed_epochs: Mask-learning epochs of the watermark embedding (None: the default
            recipe's).
        independent_arch, independent_epochs: The independently trained control model.
        remote: Also serve the stolen copy over HTTP on 127.0.0.1 (Open Inference Protocol) and
            verify it there; the report is then the remote one (endpoint and query log).
    """

    out: Path
    source: str = "builtin:mnist"
    target: str = "builtin:mnistm"
    arch: str = "vgg_small"
    epochs: int = 4
    seed: int = 0
    device: str | None = None
    progress: bool = True
    protect_options: Mapping[str, Any] = field(
        default_factory=lambda: {"epochs": 2, "max_steps_per_epoch": 40}
    )
    embed_epochs: int | None = None
    independent_arch: str = "vgg_tiny"
    independent_epochs: int = 4
    remote: bool = False


def _model_cache() -> Path:
    import os

    root = os.environ.get("MAPGUARD_CACHE_DIR") or platformdirs.user_cache_dir("mapguard")
    path = Path(root) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _step(title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            console.rule(f"[bold]{title}")
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            console.print(f"[dim]({time.perf_counter() - t0:.0f} s)[/dim]")
            return result

        return wrapper

    return deco


def cached_source_model(
    data: str, *, arch: str, epochs: int, seed: int, device: str | None, progress: bool
) -> Path:
    """Train once and reuse: the checkpoint is cached keyed by its recipe."""
    from mapguard.training import train_source

    name = f"{arch}-{data.replace(':', '_').replace('/', '_')}-e{epochs}-s{seed}.pt"
    path = _model_cache() / name
    if path.exists():
        console.print(f"reusing cached model {path}")
        return path
    summary = train_source(
        data, arch=arch, out=path, epochs=epochs, seed=seed, device=device, progress=progress
    )
    console.print(f"trained {arch} on {data}: test accuracy {summary['test_accuracy']:.2%}")
    return path


@_step("1. Train the source model (authorized domain)")
def _train(cfg: DemoConfig) -> Path:
    return cached_source_model(
        cfg.source,
        arch=cfg.arch,
        epochs=cfg.epochs,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
    )


@_step("2. Cross-domain accuracy of the source model")
def _table(cfg: DemoConfig, model: Path) -> dict[str, Any]:
    from mapguard.data import list_domains
    from mapguard.evaluate import evaluate_model, render_accuracy_table

    specs = [f"builtin:{d}" for d in list_domains()]
    report = evaluate_model(model, specs, device=cfg.device, progress=cfg.progress)
    render_accuracy_table(report)
    return report


@_step("3. Protect it against the unauthorized domain (MAP mask pruning)")
def _protect(cfg: DemoConfig, model: Path) -> dict[str, Any]:
    from mapguard.protect import protect

    report = protect(
        model,
        source=cfg.source,
        targets=[cfg.target],
        method="map",
        options=dict(cfg.protect_options),
        out=cfg.out / "protected-map.pt",
        metrics_out=cfg.out / "protect-metrics.json",
        seed=cfg.seed,
        force=True,
        device=cfg.device,
        progress=cfg.progress,
    )
    m = report.metrics
    tb, ta = m.targets[cfg.target]
    console.print(
        f"source {cfg.source}: {m.source_before:.1%} -> {m.source_after:.1%}   "
        f"target {cfg.target}: {tb:.1%} -> {ta:.1%}   "
        f"pruned {m.pruned_fraction:.2%} of weights   ST-D "
        + ("n/a (target already at chance)" if m.st_d is None else f"{m.st_d:.3f}")
    )
    for name, (b, a) in m.others.items():
        console.print(f"  other domain {name}: {b:.1%} -> {a:.1%}")
    console.print(f"protected model: {cfg.out / 'protected-map.pt'}")
    return report.to_dict()


@_step("4. Owner key and watermark embedding (secret designated domain)")
def _embed(cfg: DemoConfig, model: Path) -> dict[str, Any]:
    from mapguard.watermark import EmbedConfig, embed
    from protocols.keys import generate_keypair, load_private_key

    info = generate_keypair(cfg.out / "owner", force=True)
    console.print(f"owner key {info.private_path} (fingerprint {info.fingerprint})")
    result = embed(
        model,
        cfg.source,
        load_private_key(info.private_path),
        EmbedConfig().replace(epochs=cfg.embed_epochs) if cfg.embed_epochs else EmbedConfig(),
        out=cfg.out / "watermarked",
        force=True,
        device=cfg.device,
        progress=cfg.progress,
    )
    console.print(
        f"clean accuracy {result.clean_accuracy_before:.1%} -> {result.clean_accuracy_after:.1%}; "
        f"with each secret trigger: "
        + ", ".join(f"{a:.1%}" for a in result.secret_trigger_accuracy)
        + f"; with random keys: {result.random_key_accuracy:.1%}; trigger PSNR "
        f"{result.psnr_db:.1f} dB"
    )
    if result.ready:
        console.print(f"published commitment: {result.files['commitment.dsse.json']}")
    else:
        console.print(f"[red]NOT READY for publication[/red]: {'; '.join(result.not_ready)}")
    return {"dir": result.out, "pub": info.public_path, "key": info.private_path}


@_step("5. Verify: the watermarked model and an independently trained one")
def _verify(cfg: DemoConfig, wm: dict[str, Any]) -> dict[str, Any]:
    from mapguard.watermark import verify_suspect
    from protocols.keys import load_private_key

    independent = cached_source_model(
        cfg.source,
        arch=cfg.independent_arch,
        epochs=cfg.independent_epochs,
        seed=cfg.seed + 1,
        device=cfg.device,
        progress=cfg.progress,
    )
    key = load_private_key(wm["key"])
    verdicts: dict[str, Any] = {}
    # In a real claim the arbiter fixes the nonce after the claim is filed; the demo plays both.
    for name, suspect in (
        ("watermarked", wm["dir"] / "protected.pt"),
        ("independent", independent),
    ):
        rep = verify_suspect(
            suspect,
            wm["dir"] / "owner.wm",
            claim_nonce=DEMO_CLAIM_NONCE,
            key=key,
            out=cfg.out / f"result-{name}.dsse.json",
            force=True,
        )
        r = rep.result
        verdict = "OWNERSHIP EVIDENCED" if rep.evidenced else "not evidenced"
        console.print(
            f"{name:12s} p = {r.pvalue:.3g} (alpha {r.alpha:g}, {r.queries} label queries): "
            f"[bold]{verdict}[/bold]"
        )
        verdicts[name] = {"evidenced": rep.evidenced, "pvalue": r.pvalue, "out": rep.out}
    return verdicts


@_step("5b. Verify the stolen copy behind an inference API (served on 127.0.0.1)")
def _verify_remote(cfg: DemoConfig, wm: dict[str, Any]) -> dict[str, Any]:
    return verify_served(wm["dir"], wm["key"], out=cfg.out)


def verify_served(wm_dir: Path, key_path: Path, *, out: Path) -> dict[str, Any]:
    """Serve ``wm_dir/protected.pt`` over the Open Inference Protocol on 127.0.0.1 and verify
    it through the endpoint: the result records the URL and the query log."""
    from mapguard._oip_server import OipServer
    from mapguard.checkpoint import load_checkpoint
    from mapguard.training import input_side
    from mapguard.watermark import verify_suspect
    from protocols.keys import load_private_key

    model, meta = load_checkpoint(wm_dir / "protected.pt")
    result = out / "result-remote.dsse.json"
    for stale in (result, out / "result-remote.querylog.jsonl"):
        stale.unlink(missing_ok=True)  # a fresh claim each demo run
    with OipServer(model.eval(), side=input_side(meta), num_classes=meta.num_classes) as server:
        console.print(f"serving the stolen copy at {server.url}")
        rep = verify_suspect(
            server.url,
            wm_dir / "owner.wm",
            claim_nonce=DEMO_CLAIM_NONCE,
            key=load_private_key(key_path),
            out=result,
        )
    log = rep.predicate["query_log"]
    verdict = "OWNERSHIP EVIDENCED" if rep.evidenced else "not evidenced"
    console.print(
        f"remote       p = {rep.result.pvalue:.3g}: [bold]{verdict}[/bold]; query log {log['name']}"
        f" ({log['queries']} queries in {log['requests']} requests, {log['retries']} retries)"
    )
    return {"evidenced": rep.evidenced, "pvalue": rep.result.pvalue, "out": rep.out,
            "endpoint": server.url, "query_log": out / log["name"]}  # fmt: skip


@_step("6. Evidence report")
def _report(cfg: DemoConfig, wm: dict[str, Any], verdicts: dict[str, Any]) -> Path:
    from mapguard.report import build_report

    res = build_report(
        verdicts.get("remote", verdicts["watermarked"])["out"],
        wm["dir"] / "commitment.dsse.json",
        watermark_path=wm["dir"] / "owner.wm",
        pubkey_path=wm["pub"],
        out_html=cfg.out / "evidence.html",
        force=True,
    )
    console.print(f"evidence report: {res.html_path} (sha256 {res.sha256})")
    return res.html_path


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every demo stage; returns what each produced (paths, verdicts)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"config": cfg}
    state["source_model"] = _train(cfg)
    state["accuracy_table"] = _table(cfg, state["source_model"])
    state["protect"] = _protect(cfg, state["source_model"])
    state["watermark"] = _embed(cfg, state["source_model"])
    state["verdicts"] = _verify(cfg, state["watermark"])
    if cfg.remote:
        state["verdicts"]["remote"] = _verify_remote(cfg, state["watermark"])
    state["report"] = _report(cfg, state["watermark"], state["verdicts"])
    return state
