"""``mapguard keygen``: an Ed25519 owner key pair."""

from __future__ import annotations

import click

from mapguard import _cli


@_cli.command()
@_cli.out_option("Path prefix: writes PREFIX.key (0600) and PREFIX.pub.", type=None)
@_cli.shared_options("passphrase", "json")
def keygen(out, passphrase_file, force, as_json):
    """Generate an Ed25519 owner key pair and print its fingerprint."""
    from protocols import keys

    passphrase = _cli.read_passphrase(passphrase_file)
    info = keys.generate_keypair(out, passphrase=passphrase, force=force)
    data = {
        "private_key": str(info.private_path),
        "public_key": str(info.public_path),
        "fingerprint": info.fingerprint,
        "encrypted": info.encrypted,
    }
    _cli.echo_result(as_json, data, lambda: _print_keys(info))


def _print_keys(info) -> None:  # noqa: ANN001
    encrypted = ", encrypted" if info.encrypted else ""
    click.echo(f"private key  {info.private_path} (mode 0600{encrypted})")
    click.echo(f"public key   {info.public_path}")
    click.echo(f"fingerprint  {info.fingerprint}")
