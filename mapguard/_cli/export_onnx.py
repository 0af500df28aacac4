"""``mapguard export-onnx``: a checkpoint as one self-contained ONNX file."""

from __future__ import annotations

import click

from mapguard import _cli


@_cli.command("export-onnx")
@click.argument("model", type=_cli.FILE)
@_cli.out_option("Output ONNX file.")
@_cli.shared_options("unsafe")
def export_onnx(model, out, force, unsafe_load):
    """Export MODEL (a mapguard checkpoint) to ONNX for users who run ONNX (needs
    pip install 'mapguard[onnx]'); `mapguard verify` reads the .onnx like the checkpoint."""
    from mapguard.export import export_checkpoint_onnx

    path = export_checkpoint_onnx(model, out=out, force=force, allow_code=unsafe_load)
    click.echo(f"exported {model} -> {path} ({path.stat().st_size:,} bytes, ONNX)")
