"""``mapguard protect``: restrict a model to its authorized source domain."""

from __future__ import annotations

from collections import Counter

import click

from mapguard import _cli


@_cli.command()
@click.argument("model", type=_cli.FILE)
@click.option(
    "--source",
    help="Authorized source data (required except for sf-map / df-map, which never read its "
    f"training split: given, only its test split is read, to measure the drop). {_cli.DATA_HELP}",
)
@click.option("--target", "targets", multiple=True, help="Unauthorized target data (repeatable).")
@click.option(
    "--keep", "keeps", multiple=True, help="Further authorized data to preserve (repeatable)."
)
@click.option("--method", default="map", show_default=True, help="Protection method: map, ntl, ...")
@_cli.out_option("Protected checkpoint.")
@click.option("--mask-out", type=_cli.FILE, help="Bit-packed mask file.")
@click.option("--metrics-out", type=_cli.FILE, help="Metrics JSON.")
@click.option("--export", type=_cli.FILE, help="torch.export archive (.pt2).")
@_cli.budget_options("method")
@click.option(
    "--granularity", type=click.Choice(["weight", "channel"]), help="MAP mask granularity."
)
@click.option("--exclude", multiple=True, help="MAP: layer name pattern never masked (repeatable).")
@_cli.extra_options("Further method option, e.g. -o keep_weight=10.")
@_cli.shared_options("seed", "workers", "unsafe", "device", "amp", "quiet", "json")
def protect(model, targets, keeps, extra, unsafe_load, quiet, as_json, **args):
    """Protect MODEL: keep its accuracy on --source, make it fail on every --target."""
    from mapguard.masking import launched_rank
    from mapguard.protect import protect as run_protect

    method_options = {k: args.pop(k) for k in ("epochs", "lr", "batch_size", "granularity")}
    method_options["exclude"] = list(args.pop("exclude")) or None
    options = {k: v for k, v in method_options.items() if v is not None}
    options |= _cli.parse_options(extra)
    report = run_protect(model, targets=list(targets), keep=list(keeps), options=options,
                         progress=not quiet, allow_code=unsafe_load, **args)  # fmt: skip
    if launched_rank() == 0:  # under torchrun only rank 0 reports (group left by now)
        _cli.echo_result(as_json, report.to_dict(), lambda: _print_summary(report))
        if report.info.get("within_threshold") is False:  # SF-/DF-MAP: no epoch was accepted
            click.echo(
                "mapguard: warning: the stopping rule accepted no epoch (held-out KL above "
                "stop_kl from the first); the mask is the lowest-KL epoch's and its source "
                "drop may be far above the estimate (method_info.within_threshold: false)",
                err=True,
            )


def _print_summary(report) -> None:  # noqa: ANN001
    m = report.metrics
    click.echo(f"{report.method}: {_source_line(m)}")
    for name, (b, a) in m.targets.items():
        click.echo(f"  target {name}: {b:.2%} -> {a:.2%}")
    for name, (b, a) in m.others.items():
        click.echo(f"  other  {name}: {b:.2%} -> {a:.2%}")
    st = m.st_d
    st_text = "n/a" if st is None else f"{st:.3f}"
    click.echo(f"pruned {m.pruned_fraction:.2%}, ST-D {st_text}, {report.seconds:.0f} s")
    if report.masked_layers:
        click.echo(_masked_line(report.masked_layers))
    for kind, path in report.outputs.items():
        click.echo(f"  {kind}: {path}")


def _source_line(m) -> str:  # noqa: ANN001
    """The measured source accuracies, or (no source data given) the estimated drop."""
    est = m.estimated_source_drop
    est_text = (
        f"estimated source drop {100 * est['estimate']:.1f} pts "
        f"[{100 * est['low']:.1f}, {100 * est['high']:.1f}] ({est['confidence']:.0%})"
        if est
        else ""
    )
    if m.source_before is None:
        return f"no source data given; {est_text or 'no estimate of the source drop'}"
    measured = f"source {m.source} {m.source_before:.2%} -> {m.source_after:.2%}"
    return f"{measured}; {est_text}" if est_text else measured


def _masked_line(layers) -> str:  # noqa: ANN001
    """``masked 3 layers, 1,234 weights (Conv2d 2, MultiheadAttention 1)``; details in --json."""
    kinds = Counter(layer.kind for layer in layers)
    weights = sum(layer.num_weights for layer in layers)
    by_kind = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
    return f"masked {len(layers)} layers, {weights:,} weights ({by_kind}); per layer in --json"
