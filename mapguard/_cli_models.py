"""``mapguard train`` and ``mapguard evaluate``."""

from __future__ import annotations

import click

from mapguard._cli import (
    DATA_HELP,
    cli,
    device_option,
    echo_json,
    force_option,
    json_option,
    quiet_option,
    seed_option,
    unsafe_option,
)


@cli.command()
@click.option("--data", "data_spec", required=True, help=DATA_HELP)
@click.option("--arch", default="vgg_small", show_default=True, help="Architecture name.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output checkpoint.")
@seed_option
@force_option
@device_option
@quiet_option
@json_option
def train(data_spec, arch, epochs, lr, batch_size, out, seed, force, device, quiet, as_json):
    """Train a source model on DATA and save it as a mapguard checkpoint."""
    from mapguard.training import train_source

    summary = train_source(
        data_spec,
        arch=arch,
        out=out,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        force=force,
        device=device,
        progress=not quiet,
    )
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"trained {arch} on {data_spec}: test accuracy {summary['test_accuracy']:.2%} "
            f"in {summary['seconds']:.0f} s -> {out}"
        )


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_specs", multiple=True, required=True, help=DATA_HELP)
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test")
@click.option("--reference", type=click.Path(dir_okay=False), help="Original model: adds drops.")
@click.option("--source", "source_spec", help="Which --data is the authorized source (for ST-D).")
@unsafe_option
@device_option
@quiet_option
@json_option
def evaluate(
    model, data_specs, split, reference, source_spec, unsafe_load, device, quiet, as_json
):
    """Accuracy of MODEL on each --data (and drops / ST-D against --reference)."""
    from mapguard.evaluate import evaluate_model, render_accuracy_table

    report = evaluate_model(
        model,
        list(data_specs),
        split=split,
        reference=reference,
        source=source_spec,
        allow_unsafe=unsafe_load,
        device=device,
        progress=not quiet,
    )
    if as_json:
        echo_json(report)
    else:
        render_accuracy_table(report)
