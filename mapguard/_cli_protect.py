"""``mapguard protect``: restrict a model to its authorized source domain."""

from __future__ import annotations

import click

from mapguard._cli import (
    DATA_HELP,
    cli,
    device_option,
    echo_json,
    extra_options,
    force_option,
    json_option,
    parse_options,
    quiet_option,
    seed_option,
)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--source", required=True, help=f"Authorized source data. {DATA_HELP}")
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Unauthorized target data (repeatable).",
)
@click.option(
    "--keep", "keeps", multiple=True, help="Further authorized data to preserve (repeatable)."
)
@click.option("--method", default="map", show_default=True, help="Protection method: map, ntl, ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Protected checkpoint.")
@click.option("--mask-out", type=click.Path(dir_okay=False), help="Bit-packed mask file.")
@click.option("--metrics-out", type=click.Path(dir_okay=False), help="Metrics JSON.")
@click.option(
    "--export", "export_path", type=click.Path(dir_okay=False), help="torch.export archive (.pt2)."
)
@click.option("--epochs", type=int, help="Epochs over the source data (method default).")
@click.option("--lr", type=float, help="Learning rate (method default).")
@click.option("--batch-size", type=int, help="Batch size per domain (method default).")
@click.option(
    "--granularity", type=click.Choice(["weight", "channel"]), help="MAP mask granularity."
)
@click.option("--exclude", multiple=True, help="MAP: layer name pattern never masked (repeatable).")
@extra_options("Further method option, e.g. -o keep_weight=10.")
@seed_option
@force_option
@device_option
@quiet_option
@json_option
def protect(
    model,
    source,
    targets,
    keeps,
    method,
    out,
    mask_out,
    metrics_out,
    export_path,
    epochs,
    lr,
    batch_size,
    granularity,
    exclude,
    extra,
    seed,
    force,
    device,
    quiet,
    as_json,
):
    """Protect MODEL: keep its accuracy on --source, make it fail on every --target."""
    from mapguard.protect import protect as run_protect

    options = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "granularity": granularity,
        "exclude": list(exclude) or None,
    }
    options = {k: v for k, v in options.items() if v is not None} | parse_options(extra)
    report = run_protect(
        model,
        source=source,
        targets=list(targets),
        keep=list(keeps),
        method=method,
        out=out,
        mask_out=mask_out,
        metrics_out=metrics_out,
        export=export_path,
        options=options,
        seed=seed,
        force=force,
        device=device,
        progress=not quiet,
    )
    from mapguard.masking import dist_info

    if not dist_info().is_main:  # under torchrun only rank 0 reports
        return
    if as_json:
        echo_json(report.to_dict())
        return
    _print_summary(report)


def _print_summary(report) -> None:  # noqa: ANN001
    m = report.metrics
    click.echo(f"{report.method}: source {m.source} {m.source_before:.2%} -> {m.source_after:.2%}")
    for name, (b, a) in m.targets.items():
        click.echo(f"  target {name}: {b:.2%} -> {a:.2%}")
    for name, (b, a) in m.others.items():
        click.echo(f"  other  {name}: {b:.2%} -> {a:.2%}")
    st = m.st_d
    st_text = "n/a" if st is None else f"{st:.3f}"
    click.echo(f"pruned {m.pruned_fraction:.2%}, ST-D {st_text}, {report.seconds:.0f} s")
    for kind, path in report.outputs.items():
        click.echo(f"  {kind}: {path}")
