"""The ``mapguard`` command line: parse, call one library function, print.

Every user-caused error (:class:`protocols.errors.InputError`) becomes one line on stderr and exit
code 2; nothing is left half-written because every output goes through an atomic rename. An
unexpected exception is one line and exit code 2 as well (never 1, which ``verify`` uses for "not
evidenced"); ``MAPGUARD_DEBUG=1`` shows its traceback and third-party warnings.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mapguard._errors import ConfigError
from protocols.errors import InputError

__all__ = ["cli", "main"]


_DEBUG_ENV = "MAPGUARD_DEBUG"
_RAW_VALUES = "mapguard.raw_values"


def _debug() -> bool:
    return os.environ.get(_DEBUG_ENV) == "1"


class _Command(click.Command):
    """A command whose paths are checked before it runs (see :mod:`mapguard._cli_paths`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from mapguard._cli_paths import raw_values

        ctx.meta[_RAW_VALUES] = raw_values(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from mapguard._cli_paths import check_paths

        check_paths(ctx, ctx.meta.get(_RAW_VALUES, {}))
        return super().invoke(ctx)


class _Group(click.Group):
    """Click group that turns every error into one ``mapguard: ...`` line on stderr and exit 2."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"mapguard: error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("mapguard: interrupted", err=True)
            ctx.exit(130)
        except click.ClickException as exc:  # a usage error: one line too, not click's three
            hint = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) else ""
            click.echo(f"mapguard: error: {exc.format_message()}{hint}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.Abort):
            raise  # click's own exits (Exit is a RuntimeError)
        except OSError as exc:  # e.g. the disk filled up while writing
            click.echo(f"mapguard: error: {_os_error(exc)}", err=True)
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - a bug: still one line, exit 2
            if _debug():
                traceback.print_exc()
            else:
                click.echo(f"mapguard: internal error: {_one_line(exc)}", err=True)
            ctx.exit(2)


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 300:
        first = first[:300] + "..."
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"{text} (set {_DEBUG_ENV}=1 for the traceback)"


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: '{exc.filename}'" if exc.filename else reason


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
    """``--unsafe-load`` (old spelling ``--unsafe-pickle`` kept, hidden) into ``unsafe_load``."""
    fn = click.option("--unsafe-pickle", "unsafe_load", is_flag=True, hidden=True)(fn)
    return click.option(
        "--unsafe-load",
        "unsafe_load",
        is_flag=True,
        help="Load .pt2/TorchScript/pickle model files in this process (runs code from the "
        "file: only for files you trust; results say UNSAFE LOAD). Without it, verify and "
        "evaluate run such files in an isolated worker; other commands refuse them.",
    )(fn)


DATA_HELP = "Data: builtin:NAME (mnist, mnistm, optdigits, svhnlike, syn) or an ImageFolder path."


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def out_path(value: str) -> Path:
    return Path(value)


def main() -> None:
    """Console-script entry point (also ``python -m mapguard``)."""
    from mapguard import _cli_commands  # noqa: F401  (registers the commands)

    if not _debug():
        _quiet_third_parties()
    cli.main(prog_name="mapguard")


def _quiet_third_parties() -> None:
    """Keep stderr to mapguard's own lines: no FutureWarning, PIL or torch log noise.

    Warnings are ignored except mapguard's own, shown as one ``mapguard: warning:`` line; log
    records below ERROR are dropped (torch logs some failures at WARNING with a traceback), and so
    are torch's C++ warnings (read when torch is imported, after this).
    """
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"mapguard(\.|$)")
    warnings.showwarning = _show_warning
    logging.disable(logging.WARNING)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    click.echo(f"mapguard: warning: {text}", err=True)


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
