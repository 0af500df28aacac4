"""The ``mapguard`` command line: parse, call one library function, print.

One module per command (``train.py``, ``embed.py``, ...) registers it on :data:`cli`; this module
holds the group, the options several commands share and the helpers they call. Every
user-caused error (:class:`protocols.errors.InputError`) becomes one line on stderr and exit code
2; nothing is left half-written because every output goes through an atomic rename. An unexpected
exception is one line and exit code 2 as well (never 1, which ``verify`` uses for "not
evidenced"); ``MAPGUARD_DEBUG=1`` shows its traceback and third-party warnings.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mapguard._errors import ConfigError
from protocols.errors import InputError

__all__ = ["Command", "cli", "command", "main"]

_F = TypeVar("_F", bound=Callable[..., Any])
_DEBUG_ENV = "MAPGUARD_DEBUG"
_RAW_VALUES = "mapguard.raw_values"


def _debug() -> bool:
    return os.environ.get(_DEBUG_ENV) == "1"


class Command(click.Command):
    """A command whose paths are checked before it runs (see :mod:`mapguard._cli._paths`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from mapguard._cli._paths import raw_values

        ctx.meta[_RAW_VALUES] = raw_values(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from mapguard._cli._paths import check_paths

        check_paths(ctx, ctx.meta.get(_RAW_VALUES, {}))
        return super().invoke(ctx)


class _Group(click.Group):
    """Click group that turns every error into one ``mapguard: ...`` line on stderr and exit 2."""

    command_class = Command

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
DATA_HELP = "Data: builtin:NAME (mnist, mnistm, optdigits, svhnlike, syn) or an ImageFolder path."
PASSPHRASE_HELP = "File whose first line is the passphrase (never pass it on the command line)."
#: ``click.Path`` of an output that is one file (``check_paths`` refuses ``newdir/`` for it).
FILE = click.Path(dir_okay=False)

_UNSAFE_HELP = (
    "Load .pt2/TorchScript/pickle model files, and checkpoints whose architecture is a "
    "module:pkg.mod:factory, in this process (runs code: only for files you trust; results say "
    "UNSAFE LOAD). Without it, verify and evaluate run .pt2/TorchScript/pickle files in an "
    "isolated worker; other commands refuse them."
)
_SHARED: dict[str, tuple[Callable[[_F], _F], ...]] = {
    "seed": (click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),),
    "force": (click.option("--force", is_flag=True, help="Overwrite existing outputs."),),
    "unsafe": (  # ``--unsafe-load``; the old spelling ``--unsafe-pickle`` is kept, hidden
        click.option("--unsafe-load", "unsafe_load", is_flag=True, help=_UNSAFE_HELP),
        click.option("--unsafe-pickle", "unsafe_load", is_flag=True, hidden=True),
    ),
    "device": (
        click.option(
            "--device", default=None, help="torch device (default: cuda if available, else cpu)."
        ),
    ),
    "amp": (
        click.option(
            "--amp",
            is_flag=True,
            help="bf16 autocast and channels-last in the training loops (CUDA only; refused "
            "on other devices).",
        ),
    ),
    "quiet": (click.option("--quiet", "-q", is_flag=True, help="No progress bars."),),
    "json": (click.option("--json", "as_json", is_flag=True, help="Print JSON for machines."),),
    "passphrase": (click.option("--passphrase-file", type=FILE, help=PASSPHRASE_HELP),),
    "workers": (
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="DataLoader processes decoding folder images (results do not depend on it).",
        ),
    ),
}


def shared_options(*names: str) -> Callable[[_F], _F]:
    """The shared options ``names`` (``seed``, ``force``, ``unsafe``, ``device``, ``amp``,
    ``quiet``, ``json``, ``passphrase``, ``workers``), listed under ``--help`` in the order
    given."""
    unknown = sorted(set(names) - set(_SHARED))
    if unknown:
        raise ValueError(f"unknown shared option(s) {unknown}; choose from {sorted(_SHARED)}")
    return _stacked(*(option for name in names for option in _SHARED[name]))


def out_option(
    help_text: str, *, type: click.ParamType | None = FILE, dest: str = "out"
) -> Callable[[_F], _F]:
    """``--out`` (required) followed by ``--force``: what the command writes, and whether an
    existing output may be replaced. ``type`` is :data:`FILE` for one file, ``click.Path(
    file_okay=False)`` for a folder, ``None`` for a prefix of several files."""
    out = click.option("--out", dest, required=True, type=type, help=help_text)
    return _stacked(out, *_SHARED["force"])


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Command]:
    """Make a function a :class:`Command` (its paths checked before it runs); the list at the
    end of this module adds it to :data:`cli`."""
    return click.command(name, cls=Command)


def extra_options(help_text: str) -> Callable[[_F], _F]:
    """``--option/-o KEY=VALUE`` (repeatable) into the ``extra`` argument; see parse_options."""
    return click.option(
        "--option", "-o", "extra", multiple=True, metavar="KEY=VALUE", help=help_text
    )


def budget_options(whose: str) -> Callable[[_F], _F]:
    """``--epochs``, ``--lr`` and ``--batch-size``; each left unset means ``whose`` default (the
    protection method's, the attack kind's)."""
    return _stacked(
        click.option("--epochs", type=int, help=f"Training epochs ({whose} default)."),
        click.option("--lr", type=float, help=f"Learning rate ({whose} default)."),
        click.option("--batch-size", type=int, help=f"Batch size ({whose} default)."),
    )


def _stacked(*options: Callable[[_F], _F]) -> Callable[[_F], _F]:
    """One decorator made of ``options``, listed under ``--help`` in the order given."""

    def apply(fn: _F) -> _F:
        for option in reversed(options):  # click lists the last-applied decorator first
            fn = option(fn)
        return fn

    return apply


# ---- helpers of the commands ---------------------------------------------------------------------
def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def echo_result(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    """Print a command's outcome: ``data`` as JSON with ``--json``, else what ``render`` prints."""
    if as_json:
        echo_json(data)
    else:
        render()


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


def read_passphrase(path: str | os.PathLike[str] | None) -> bytes | None:
    """The first line of the passphrase file ``path`` (None: no passphrase).

    Read like every small input (:func:`protocols.fileio.read_input`): a regular file of at most
    ``MAX_KEY_BYTES``.
    """
    if path is None:
        return None
    from protocols.fileio import MAX_KEY_BYTES, read_input

    data = read_input(path, "passphrase", max_bytes=MAX_KEY_BYTES)
    line = data.splitlines()[0] if data else b""
    if not line:
        raise InputError(f"passphrase file '{path}' is empty")
    return line


def owner_key(key_path: str | None, passphrase_file: str | None) -> tuple[Any, bytes | None]:
    """``(private key, passphrase)``: the owner's key at ``key_path`` (None without a path),
    opened with the passphrase if it is encrypted, and the passphrase itself (which also opens
    an encrypted watermark file)."""
    passphrase = read_passphrase(passphrase_file)
    if key_path is None:
        return None, passphrase
    from protocols import keys
    from protocols.fileio import MAX_KEY_BYTES, read_input

    data = read_input(key_path, "private key", max_bytes=MAX_KEY_BYTES)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    return keys.load_private_key(key_path, passphrase=passphrase if encrypted else None), passphrase


# ---- entry point ---------------------------------------------------------------------------------
def main() -> None:
    """Console-script entry point (also ``python -m mapguard``)."""
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


# ---- the commands, one module each; they use the options and helpers above, so come last -------
from mapguard._cli import (  # noqa: E402
    attack,
    check,
    demo,
    embed,
    evaluate,
    export_onnx,
    import_,
    keygen,
    protect,
    report,
    synthesize,
    timestamp,
    train,
    verify,
)

for _command in (
    train.train,
    evaluate.evaluate,
    import_.import_command,
    export_onnx.export_onnx,
    protect.protect,
    synthesize.synthesize,
    keygen.keygen,
    embed.embed,
    verify.verify,
    timestamp.timestamp,
    check.check,
    report.report_command,
    attack.attack,
    demo.demo,
):
    cli.add_command(_command)
