"""``mapguard check``: check a signed commitment or result (and that it opens to a watermark)."""

from __future__ import annotations

import click

from mapguard import _cli

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
@_cli.shared_options("passphrase", "json")
def check(file, pubkey, watermark_path, artifact, passphrase_file, as_json):
    """Check a signed commitment or result: signature, schema, subject and (with --watermark)
    that the commitment opens to the revealed watermark. Exit 0 only if all hold."""
    from verification.check import check as run_check

    res = run_check(
        file,
        pubkey,
        watermark_path,
        passphrase=_cli.read_passphrase(passphrase_file),
        artifact=artifact,
    )
    _cli.echo_result(as_json, res.to_dict(), lambda: _print_checks(res))
    click.get_current_context().exit(0 if res.ok else 1)


def _print_checks(res) -> None:  # noqa: ANN001
    for item in res.items:
        click.echo(f"{'ok  ' if item.ok else 'FAIL'}  {item.name:<17} {item.detail}")
    click.echo(f"{res.kind}: {'all checks hold' if res.ok else 'CHECK FAILED'}")
