"""``mapguard report``: the legal-evidence report (HTML, optionally PDF) on a verification."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard import _cli
from mapguard._cli.timestamp import timing_options

__all__ = ["report_command"]

_PATH = click.Path(exists=False, dir_okay=False, path_type=Path)


@_cli.command("report")
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
    help="The owner's watermark file: adds calibration figures, checks the opening.",
)
@click.option(
    "--pubkey",
    "pubkeys",
    type=_PATH,
    multiple=True,
    help="Public key (PEM) to check signatures with; repeat for several signers.",
)
@_cli.out_option("HTML report to write.", type=_PATH, dest="out_html")
@click.option("--pdf", type=_PATH, help="Also write the report as PDF (needs mapguard[pdf]).")
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Write the report even if a signature fails or cannot be checked, marked "
    "UNVERIFIED in red at the top (default: refuse with exit code 2).",
)
@timing_options
@_cli.shared_options("passphrase", "json")
def report_command(
    result: Path,
    commitment: Path,
    watermark: Path | None,
    pubkeys: tuple[Path, ...],
    out_html: Path,
    force: bool,
    pdf: Path | None,
    allow_unverified: bool,
    timestamp_path: str | None,
    tsa_cert: str | None,
    suspect_first_seen: str | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Write the evidence report on RESULT (the output of `mapguard verify`).

    Every number is read from the signed files. A signature that fails (or cannot be checked
    for want of --pubkey) makes the command refuse with exit code 2 unless --allow-unverified
    is given; an unsigned (plain JSON) result is reported but marked UNSIGNED. Prints the
    report's SHA-256 so that it can be cited in a signed statement. With --passphrase-file an
    encrypted watermark file is opened with it.
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
        watermark_passphrase=_cli.read_passphrase(passphrase_file),
        timestamp_path=timestamp_path,
        tsa_cert_path=tsa_cert,
        suspect_first_seen=suspect_first_seen,
    )
    _cli.echo_result(as_json, res.to_dict(), lambda: _print_report(res))


def _print_report(res) -> None:  # noqa: ANN001
    for check in res.signatures:
        click.echo(f"{check.status:>11}  {check.role}: {check.file}")
    click.echo(f"verdict in the result: {'evidenced' if res.evidenced else 'not evidenced'}")
    click.echo(f"wrote {res.html_path}  sha256 {res.sha256}")
    if res.pdf_path is not None:
        click.echo(f"wrote {res.pdf_path}  sha256 {res.pdf_sha256}")
