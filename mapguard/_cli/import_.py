"""``mapguard import``: a model trained elsewhere (state dict or safetensors) as a checkpoint."""

from __future__ import annotations

import click

from mapguard import _cli
from mapguard._errors import ConfigError

_ARCH_HELP = (
    "Architecture: a zoo name, torchvision:NAME, timm:NAME (pip install 'mapguard[timm]') or "
    "module:pkg.mod:factory (imports and runs that code: factory(num_classes=N))."
)


@_cli.command("import")
@click.argument("weights", type=_cli.FILE)
@click.option("--arch", required=True, help=_ARCH_HELP)
@click.option("--num-classes", type=int, required=True, help="Number of outputs.")
@click.option("--input-size", default="3x224x224", show_default=True, help="CxHxW.")
@click.option("--mean", default="0.485,0.456,0.406", show_default=True, help="Per channel.")
@click.option("--std", default="0.229,0.224,0.225", show_default=True, help="Per channel.")
@click.option(
    "--classes-from",
    type=click.Path(file_okay=False),
    help="ImageFolder directory whose sorted sub-folders name the classes (default 0..N-1).",
)
@_cli.out_option("Output checkpoint.")
@_cli.shared_options("json")
def import_command(weights, input_size, mean, std, classes_from, as_json, **options):
    """Import WEIGHTS (a .pth/.pt state dict or a safetensors file) trained elsewhere.

    WEIGHTS is read as tensors only: a pickle holding other objects is refused, never
    unpickled. The written model takes pixels in [0, 1]: --mean/--std become its first module.
    """
    from mapguard.importing import folder_classes, import_model

    result = import_model(
        weights,
        input_size=parse_size(input_size),
        mean=parse_floats(mean, "--mean"),
        std=parse_floats(std, "--std"),
        classes=folder_classes(classes_from) if classes_from else None,
        **options,
    )
    _cli.echo_result(as_json, result.to_dict(), lambda: _render(result.to_dict()))


def parse_size(text: str) -> tuple[int, ...]:
    """``CxHxW`` (e.g. ``3x224x224``) as integers, strictly."""
    parts = text.strip().lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--input-size must be CxHxW such as 3x224x224, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated numbers (e.g. ``0.5,0.5,0.5``), strictly."""
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{option} must be comma-separated numbers such as 0.5,0.5,0.5, got {text!r}"
        ) from None


def _render(d: dict) -> None:
    classes = ", ".join(d["classes"][:5]) + (", ..." if d["num_classes"] > 5 else "")
    click.echo(
        f"imported {d['arch']} ({d['parameters']:,} parameters, input "
        f"{'x'.join(map(str, d['input_size']))}, {d['num_classes']} classes: {classes}) "
        f"-> {d['out']}"
    )
