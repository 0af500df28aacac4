"""``mapguard timestamp``: obtain an RFC 3161 time-stamp token for a commitment."""

from __future__ import annotations

import click

from mapguard import _cli

_EXISTING = click.Path(exists=True, dir_okay=False)

#: ``--timestamp``, ``--tsa-cert`` and ``--suspect-first-seen`` of ``check`` and ``report``.
timing_options = _cli._stacked(
    click.option(
        "--timestamp",
        "timestamp_path",
        type=_cli.FILE,
        help="RFC 3161 token on the commitment (commitment.tsr, from `mapguard timestamp`).",
    ),
    click.option(
        "--tsa-cert",
        type=_cli.FILE,
        help="The TSA's certificate and its CA chain up to the root (PEM), to check --timestamp.",
    ),
    click.option(
        "--suspect-first-seen",
        metavar="TIME",
        help="The suspect's first known date (RFC 3339 or YYYY-MM-DD): say whether the "
        "commitment's certified time predates it.",
    ),
)


@_cli.command()
@click.argument("commitment", type=_EXISTING)
@click.option("--tsa", "tsa_url", required=True, help="URL of the time-stamp authority (RFC 3161).")
@click.option(
    "--tsa-cert",
    type=_EXISTING,
    help="The TSA's certificate and its CA chain up to the root (PEM): check the token now.",
)
@_cli.out_option("Token file to write (commitment.tsr: the TSA's DER reply, unchanged).")
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=30, show_default=True,
    help="Seconds to wait for the TSA.",
)  # fmt: skip
@_cli.shared_options("json")
def timestamp(commitment, tsa_url, tsa_cert, out, force, timeout, as_json):
    """Ask a time-stamp authority to certify COMMITMENT's digest (the SHA-256 of its canonical
    statement) and store its token; `mapguard check --timestamp` and `mapguard report
    --timestamp` verify it with the TSA's certificate and show the certified time."""
    from mapguard.timestamping import timestamp_commitment

    res = timestamp_commitment(
        commitment, tsa_url=tsa_url, tsa_cert=tsa_cert, out=out, force=force, timeout=timeout
    )
    _cli.echo_result(as_json, res.to_dict(), lambda: _print(res))


def _print(res) -> None:  # noqa: ANN001
    t = res.token
    accuracy = "" if t.accuracy_seconds is None else f" (±{t.accuracy_seconds:g} s)"
    click.echo(f"certified    {t.time}{accuracy}, serial {t.serial_number}, policy {t.policy}")
    click.echo(f"digest       {res.commitment_digest} (the commitment statement's SHA-256)")
    if res.verified:
        click.echo(f"TSA          {t.tsa} (token verified with its certificate)")
    else:
        click.echo("TSA          not checked (no --tsa-cert); check and report will need it")
    click.echo(f"wrote        {res.out}")
