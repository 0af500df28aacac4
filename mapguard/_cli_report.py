"""``mapguard report``: the legal-evidence report (HTML, optionally PDF) on a verification."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard._cli import cli, echo_json, force_option, json_option
from mapguard._errors import ConfigError

__all__ = ["report_command"]

_PATH = click.Path(exists=False, dir_okay=False, path_type=Path)


def _passphrase(path: Path | None) -> bytes | None:
    """First line of ``path`` (same convention as ``mapguard embed --passphrase-file``)."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read passphrase file '{path}': {exc.strerror}") from None
    line = data.splitlines()[0] if data else b""
    if not line:
        raise ConfigError(f"passphrase file '{path}' is empty")
    return line


@cli.command("report")
@click.argument("result", type=_PATH)
@click.option(
    "--commitment",
    required=True,
    type=_PATH,
    help="The owner's signed commitment (commitment.dsse.json).",
)
@click.option(
    "--watermark",
    type=_PATH,
    default=None,
    help="The owner's watermark file: adds calibration figures, checks the opening.",
)
@click.option(
    "--passphrase-file",
    type=_PATH,
    default=None,
    help="File whose first line is the watermark file's passphrase (if it is encrypted).",
)
@click.option(
    "--pubkey",
    "pubkeys",
    type=_PATH,
    multiple=True,
    help="Public key (PEM) to check signatures with; repeat for several signers.",
)
@click.option("--out", "out_html", required=True, type=_PATH, help="HTML report to write.")
@click.option(
    "--pdf",
    type=_PATH,
    default=None,
    help="Also write a PDF of the same report (needs mapguard[pdf]).",
)
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Write the report even if a signature fails or cannot be checked, marked "
    "UNVERIFIED in red at the top (default: refuse with exit code 2).",
)
@force_option
@json_option
def report_command(
    result: Path,
    commitment: Path,
    watermark: Path | None,
    passphrase_file: Path | None,
    pubkeys: tuple[Path, ...],
    out_html: Path,
    pdf: Path | None,
    allow_unverified: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write the evidence report on RESULT (the output of `mapguard verify`).

    Every number is read from the signed files. A signature that fails (or cannot be checked
    for want of --pubkey) makes the command refuse with exit code 2 unless --allow-unverified
    is given; an unsigned (plain JSON) result is reported but marked UNSIGNED. Prints the
    report's SHA-256 so that it can be cited in a signed statement.
    """
    from mapguard.report import build_report  # matplotlib/jinja2 load only for this command

    res = build_report(
        result,
        commitment,
        watermark_path=watermark,
        pubkey_path=list(pubkeys),
        out_html=out_html,
        pdf=pdf,
        force=force,
        allow_unverified=allow_unverified,
        watermark_passphrase=_passphrase(passphrase_file),
    )
    if as_json:
        echo_json(res.to_dict())
        return
    for check in res.signatures:
        click.echo(f"{check.status:>11}  {check.role}: {check.file}")
    click.echo(f"verdict in the result: {'evidenced' if res.evidenced else 'not evidenced'}")
    click.echo(f"wrote {res.html_path}  sha256 {res.sha256}")
    if res.pdf_path is not None:
        click.echo(f"wrote {res.pdf_path}  sha256 {res.pdf_sha256}")
