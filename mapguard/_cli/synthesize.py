"""``mapguard synthesize``: recover pseudo-source images from a model alone."""

from __future__ import annotations

import click

from mapguard import _cli


@_cli.command()
@click.argument("model", type=_cli.FILE)
@click.option("--n", "n", type=int, default=2000, show_default=True, help="Number of images.")
@_cli.out_option("Output directory.", type=click.Path(file_okay=True))
@click.option("--steps", type=int, default=None, help="Optimisation steps per batch (default 400).")
@click.option(
    "--batch-size", type=int, default=None, help="Images optimised together (default 100)."
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the synthesis cache.")
@_cli.shared_options("seed", "unsafe", "device", "quiet", "json")
def synthesize(model, out, no_cache, unsafe_load, quiet, as_json, **options):
    """Synthesize N pseudo-source images from MODEL alone (no data) into directory OUT.

    OUT gets pseudo_source.npz, synthesis.json, an ImageFolder images/<class>/ and grid.png
    (pseudo-source and neighbour-domain samples).
    """
    from mapguard.synthesis import synthesize_to_dir

    summary = synthesize_to_dir(
        model, out, cache=not no_cache, allow_unsafe=unsafe_load, progress=not quiet, **options
    )
    s = summary["stats"]
    _cli.echo_result(
        as_json,
        summary,
        lambda: click.echo(
            f"synthesized {summary['n']} images in {s['seconds']:.0f} s -> {out} "
            f"(model agreement {s['agreement']:.1%}, BN loss {s['bn_loss']:.2f})"
        ),
    )
