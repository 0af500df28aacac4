"""``mapguard train``: train a source model and save it as a mapguard checkpoint."""

from __future__ import annotations

import click

from mapguard import _cli


@_cli.command()
@click.option("--data", "data_spec", required=True, help=_cli.DATA_HELP)
@click.option(
    "--arch",
    default="vgg_small",
    show_default=True,
    help="Zoo name or spec (torchvision:NAME, timm:NAME, module:pkg.mod:factory).",
)
@click.option(
    "--size",
    type=int,
    default=None,
    help="Image side the model takes (default 32, the zoo's side); recorded in the checkpoint.",
)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@_cli.out_option("Output checkpoint.")
@_cli.shared_options("seed", "workers", "device", "amp", "quiet", "json")
def train(data_spec, quiet, as_json, **options):
    """Train a source model on DATA and save it as a mapguard checkpoint."""
    from mapguard.training import train_source

    summary = train_source(data_spec, progress=not quiet, **options)
    _cli.echo_result(
        as_json,
        summary,
        lambda: click.echo(
            f"trained {options['arch']} on {data_spec} at {summary['size']} px: test accuracy "
            f"{summary['test_accuracy']:.2%} in {summary['seconds']:.0f} s -> {options['out']}"
        ),
    )
