"""``mapguard evaluate``: accuracy of a model on data sets (drops and ST-D against a reference)."""

from __future__ import annotations

import click

from mapguard import _cli


@_cli.command()
@click.argument("model", type=_cli.FILE)
@click.option("--data", "data_specs", multiple=True, required=True, help=_cli.DATA_HELP)
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test")
@click.option("--reference", type=_cli.FILE, help="Original model: adds drops.")
@click.option("--source", help="Which --data is the authorized source (for ST-D).")
@_cli.shared_options("workers", "unsafe", "device", "quiet", "json")
def evaluate(model, data_specs, unsafe_load, quiet, as_json, **options):
    """Accuracy of MODEL on each --data (and drops / ST-D against --reference)."""
    from mapguard.evaluate import evaluate_model, render_accuracy_table

    report = evaluate_model(
        model, list(data_specs), allow_unsafe=unsafe_load, progress=not quiet, **options
    )
    _cli.echo_result(as_json, report, lambda: render_accuracy_table(report))
