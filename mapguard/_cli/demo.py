"""``mapguard demo``: the whole walk on built-in data."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard import _cli


@_cli.command()
@click.option(
    "--out",
    default="mapguard-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for the demo's outputs.",
)
@click.option("--epochs", type=int, default=4, show_default=True, help="Source-model epochs.")
@click.option(
    "--remote",
    is_flag=True,
    help="Also serve the stolen copy over HTTP on 127.0.0.1 and verify it through the endpoint "
    "(the report then shows the endpoint and the query log).",
)
@_cli.shared_options("seed", "device", "quiet")
def demo(out, epochs, remote, seed, device, quiet):
    """Train, protect, watermark and verify a model on built-in data (a few minutes on a CPU)."""
    from mapguard.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=Path(out), epochs=epochs, seed=seed, device=device,
                        progress=not quiet, remote=remote))  # fmt: skip
