"""``mapguard synthesize``: recover pseudo-source images from a model alone."""

from __future__ import annotations

import click

from mapguard._cli import (
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
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=int, default=2000, show_default=True, help="Number of images.")
@click.option("--out", required=True, type=click.Path(file_okay=True), help="Output directory.")
@click.option("--steps", type=int, default=None, help="Optimisation steps per batch (default 400).")
@click.option(
    "--batch-size", type=int, default=None, help="Images optimised together (default 100)."
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the synthesis cache.")
@seed_option
@force_option
@unsafe_option
@device_option
@quiet_option
@json_option
def synthesize(
    model, n, out, steps, batch_size, no_cache, seed, force, unsafe_load, device, quiet, as_json
):
    """Synthesize N pseudo-source images from MODEL alone (no data) into directory OUT.

    OUT gets pseudo_source.npz, synthesis.json, an ImageFolder images/<class>/ and grid.png
    (pseudo-source and neighbour-domain samples).
    """
    from mapguard.synthesis import synthesize_to_dir

    summary = synthesize_to_dir(
        model,
        out,
        n=n,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        cache=not no_cache,
        force=force,
        allow_unsafe=unsafe_load,
        device=device,
        progress=not quiet,
    )
    if as_json:
        echo_json(summary)
    else:
        s = summary["stats"]
        click.echo(
            f"synthesized {summary['n']} images in {s['seconds']:.0f} s -> {out} "
            f"(model agreement {s['agreement']:.1%}, BN loss {s['bn_loss']:.2f})"
        )
