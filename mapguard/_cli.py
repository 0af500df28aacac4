"""The ``mapguard`` command line: parse, call one library function, print.

Every user-caused error (:class:`protocols.errors.InputError`) becomes one line on stderr and exit
code 2; nothing is left half-written because every output goes through an atomic rename.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mapguard._errors import ConfigError
from protocols.errors import InputError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Click group that turns :class:`InputError` into ``mapguard: error: ...`` and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"mapguard: error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("mapguard: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mapguard", prog_name="mapguard")
def cli() -> None:
    """Restrict a classifier to authorized domains (MAP) and prove ownership of stolen copies."""


# ---- shared options (defined once) -------------------------------------------------------------
def seed_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


def force_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--force", is_flag=True, help="Overwrite existing outputs.")(fn)


def extra_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--option/-o KEY=VALUE`` (repeatable) into the ``extra`` argument; see parse_options."""
    return click.option(
        "--option", "-o", "extra", multiple=True, metavar="KEY=VALUE", help=help_text
    )


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(fn)


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)."
    )(fn)


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(fn)


def unsafe_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--unsafe-pickle",
        is_flag=True,
        help="Allow loading pickled models (can run arbitrary code; only for trusted files).",
    )(fn)


DATA_HELP = "Data: builtin:NAME (mnist, mnistm, optdigits, svhnlike, syn) or an ImageFolder path."


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def out_path(value: str) -> Path:
    return Path(value)


def main() -> None:
    """Console-script entry point."""
    from mapguard import _cli_commands  # noqa: F401  (registers the commands)

    cli.main(prog_name="mapguard")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON when it parses, else kept as a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out
