"""``mapguard check``: check a signed commitment or result (and that it opens to a watermark)."""

from __future__ import annotations

import dataclasses

import click

from mapguard import _cli
from mapguard._cli.timestamp import timing_options

_EXISTING = click.Path(exists=True, dir_okay=False)


@_cli.command()
@click.argument("file", type=_EXISTING)
@click.option("--pubkey", required=True, type=_EXISTING)
@click.option(
    "--watermark",
    "watermark_path",
    type=_EXISTING,
    help="Revealed owner.wm: check that the commitment opens to it.",
)
@click.option(
    "--artifact",
    type=_EXISTING,
    help="The model file the statement is about: compare its sha256 with the subject.",
)
@click.option(
    "--query-log",
    type=_EXISTING,
    help="A remote result's query log (default: next to FILE, by the name it records).",
)
@timing_options
@_cli.shared_options("passphrase", "json")
def check(
    file,
    pubkey,
    watermark_path,
    artifact,
    query_log,
    timestamp_path,
    tsa_cert,
    suspect_first_seen,
    passphrase_file,
    as_json,
):
    """Check a signed commitment or result: signature, schema, subject and (with --watermark)
    that the commitment opens to the revealed watermark. Exit 0 only if all hold."""
    from verification import timestamps
    from verification.check import check as run_check

    first_seen = None
    if suspect_first_seen is not None:
        first_seen = timestamps.parse_time(suspect_first_seen, what="--suspect-first-seen")
    res = run_check(
        file,
        pubkey,
        watermark_path,
        passphrase=_cli.read_passphrase(passphrase_file),
        artifact=artifact,
        timestamp=timestamp_path,
        tsa_cert=tsa_cert,
        query_log=query_log,
    )
    data, order = res.to_dict(), None
    if res.kind == "commitment" and (timestamp_path or first_seen):
        order = timestamps.time_order(res.timestamp, first_seen, stated=res.created)
        data["order"] = dataclasses.asdict(order)
    _cli.echo_result(as_json, data, lambda: _print_checks(res, order))
    click.get_current_context().exit(0 if res.ok else 1)


def _print_checks(res, order) -> None:  # noqa: ANN001
    for item in res.items:
        click.echo(f"{'ok  ' if item.ok else 'FAIL'}  {item.name:<17} {item.detail}")
    click.echo(f"{res.kind}: {'all checks hold' if res.ok else 'CHECK FAILED'}")
    if order is not None:
        click.echo(f"order: {order.sentence}")
