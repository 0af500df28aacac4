"""``mapguard keygen``, ``embed``, ``verify`` and ``check`` (ownership watermark)."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard._cli import (
    DATA_HELP,
    cli,
    device_option,
    echo_json,
    extra_options,
    force_option,
    json_option,
    parse_options,
    quiet_option,
    seed_option,
    unsafe_option,
)
from protocols.errors import InputError

_PASSPHRASE_HELP = "File whose first line is the passphrase (never pass it on the command line)."


def _read_passphrase(path: str | None) -> bytes | None:
    if path is None:
        return None
    from protocols.fileio import MAX_KEY_BYTES, read_input

    data = read_input(path, "passphrase", max_bytes=MAX_KEY_BYTES)
    line = data.splitlines()[0] if data else b""
    if not line:
        raise InputError(f"passphrase file '{path}' is empty")
    return line


def _private_key(path: str, passphrase: bytes | None):  # noqa: ANN202
    from protocols import keys
    from protocols.fileio import MAX_KEY_BYTES, read_input

    data = read_input(path, "private key", max_bytes=MAX_KEY_BYTES)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    return keys.load_private_key(path, passphrase=passphrase if encrypted else None)


def passphrase_option(fn):  # noqa: ANN001, ANN201
    return click.option(
        "--passphrase-file", type=click.Path(dir_okay=False), help=_PASSPHRASE_HELP
    )(fn)


@cli.command()
@click.option("--out", required=True, help="Path prefix: writes PREFIX.key (0600) and PREFIX.pub.")
@passphrase_option
@force_option
@json_option
def keygen(out, passphrase_file, force, as_json):
    """Generate an Ed25519 owner key pair and print its fingerprint."""
    from protocols import keys

    info = keys.generate_keypair(out, passphrase=_read_passphrase(passphrase_file), force=force)
    if as_json:
        echo_json(
            {
                "private_key": str(info.private_path),
                "public_key": str(info.public_path),
                "fingerprint": info.fingerprint,
                "encrypted": info.encrypted,
            }
        )
        return
    click.echo(
        f"private key  {info.private_path} (mode 0600{', encrypted' if info.encrypted else ''})"
    )
    click.echo(f"public key   {info.public_path}")
    click.echo(f"fingerprint  {info.fingerprint}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, help=DATA_HELP)
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Owner key."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--epochs", type=int, default=None, help="Mask-learning epochs (default: recipe).")
@click.option("--secrets", "n_secrets", type=int, default=None, help="Number of secrets k.")
@click.option("--null-keys", type=int, default=None, help="Null keys per secret M (committed).")
@click.option("--no-export", is_flag=True, help="Do not write the protected.pt2 export.")
@extra_options("Further recipe option (EmbedConfig field or mask.FIELD), e.g. -o target_weight=2.")
@passphrase_option
@seed_option
@force_option
@device_option
@quiet_option
@json_option
def embed(
    model,
    data_spec,
    key_path,
    out,
    epochs,
    n_secrets,
    null_keys,
    no_export,
    extra,
    passphrase_file,
    seed,
    force,
    device,
    quiet,
    as_json,
):
    """Embed an ownership watermark into MODEL; write DIR with the protected model, owner.wm
    (private) and commitment.dsse.json (publish it before deploying the model).

    With --passphrase-file the key is opened with it (if encrypted) and owner.wm is encrypted.
    """
    from mapguard.watermark import EmbedConfig
    from mapguard.watermark import embed as run_embed

    passphrase = _read_passphrase(passphrase_file)
    key = _private_key(key_path, passphrase)
    changes = {"seed": seed, "export": not no_export}
    changes |= {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("n_secrets", n_secrets),
            ("null_keys_per_secret", null_keys),
        )
        if v is not None
    }
    cfg = EmbedConfig().replace(**changes).with_options(parse_options(extra))
    res = run_embed(
        model,
        data_spec,
        key,
        cfg,
        out=out,
        passphrase=passphrase,
        force=force,
        device=device,
        progress=not quiet,
    )
    if as_json:
        echo_json(res.to_dict())
        return
    sc = res.self_check
    click.echo(f"wrote {res.out}/: {', '.join(sorted(p.name for p in res.files.values()))}")
    click.echo(f"trigger visibility    PSNR {res.psnr_db:.1f} dB")
    click.echo(
        f"clean accuracy        {res.clean_accuracy_before:.2%} -> {res.clean_accuracy_after:.2%}"
        f" (drop {100 * res.accuracy_drop:.2f} points)"
    )
    accs = ", ".join(f"{a:.2%}" for a in res.secret_trigger_accuracy)
    click.echo(f"secret-trigger acc.   {accs}")
    if res.target_rate is not None:
        rates = ", ".join(f"{r:.2%}" for r in res.target_rate)
        click.echo(f"sent to target class  {rates}")
    click.echo(
        f"random-key accuracy   {res.random_key_accuracy_before:.2%} -> "
        f"{res.random_key_accuracy:.2%} (original -> protected)"
    )
    click.echo(
        f"self-check (labels)   p = {sc['pvalue']:.3g} with {sc['queries']} queries "
        f"(ranks {sc['ranks']})"
    )
    click.echo(f"commitment            {res.commitment_digest} (publish commitment.dsse.json)")


@cli.command()
@click.argument("suspect", type=click.Path(dir_okay=False))
@click.option("--watermark", "watermark_path", required=True, type=click.Path(dir_okay=False))
@click.option("--labels-only", is_flag=True, help="Query top-1 labels only.")
@click.option("--queries", type=int, default=None, help="Total query budget (default: all images).")
@click.option("--alpha", type=float, default=1e-3, show_default=True, help="Significance level.")
@click.option(
    "--null-keys", type=int, default=None, help="Null keys per secret (default: committed)."
)
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="Sign the result.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Result JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds the isolated worker may take to load the suspect, and to answer one batch.",
)
@passphrase_option
@unsafe_option
@force_option
@json_option
def verify(
    suspect,
    watermark_path,
    labels_only,
    queries,
    alpha,
    null_keys,
    key_path,
    out,
    timeout,
    passphrase_file,
    unsafe_load,
    force,
    as_json,
):
    """Test whether SUSPECT carries the watermark; exit 0 evidenced, 1 not evidenced, 2 error."""
    from mapguard.watermark import verify_suspect

    passphrase = _read_passphrase(passphrase_file)
    key = _private_key(key_path, passphrase) if key_path else None
    report = verify_suspect(
        suspect,
        watermark_path,
        labels_only=labels_only,
        queries=queries,
        alpha=alpha,
        null_keys=null_keys,
        key=key,
        passphrase=passphrase,
        unsafe_load=unsafe_load,
        timeout=timeout,
        out=out,
        force=force,
    )
    if as_json:
        echo_json(report.predicate)
    else:
        _print_verdict(report)
    click.get_current_context().exit(0 if report.evidenced else 1)


def _print_verdict(report) -> None:  # noqa: ANN001
    p, r = report.predicate, report.result
    verdict = "EVIDENCED" if r.evidenced else "not evidenced"
    click.echo(f"verdict      {verdict} at alpha {r.alpha:g}")
    click.echo(
        f"p-value      {r.pvalue:.3g} (exact; floor {r.pvalue_floor:.3g}), ranks {list(r.ranks)}"
    )
    click.echo(f"queries      {r.queries} ({r.mode}, {r.n_images} images per key)")
    click.echo(
        f"effect       {r.effect.estimate:.3f} "
        f"[{r.effect.ci_low:.3f}, {r.effect.ci_high:.3f}] ({r.effect.confidence_level:.0%} CI)"
    )
    click.echo(f"null keys    max g {r.null_summary.max:.3f}, median {r.null_summary.median:.3f}")
    if r.owner_key:
        # Anyone can re-sign a copy of a watermark file: the verdict is about this key's watermark.
        wm_name = Path(click.get_current_context().params.get("watermark_path") or "owner.wm").name
        click.echo(
            f"owner key    {r.owner_key} (signer of {wm_name}; check it against the published "
            "commitment with 'mapguard check')"
        )
    isolation = p["suspect"].get("isolation", "")
    if isolation:
        click.echo(f"loaded       {isolation}")
    signed = "signed statement" if report.signed else "unsigned JSON"
    click.echo(
        f"result       {report.out} ({signed}; suspect sha256 {p['suspect']['sha256'][:16]}...)"
    )


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--pubkey", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--watermark",
    "watermark_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Revealed owner.wm: check that the commitment opens to it.",
)
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False),
    help="The model file the statement is about: compare its sha256 with the subject.",
)
@passphrase_option
@json_option
def check(file, pubkey, watermark_path, artifact, passphrase_file, as_json):
    """Check a signed commitment or result: signature, schema, subject and (with --watermark)
    that the commitment opens to the revealed watermark. Exit 0 only if all hold."""
    from verification.check import check as run_check

    res = run_check(
        file,
        pubkey,
        watermark_path,
        passphrase=_read_passphrase(passphrase_file),
        artifact=artifact,
    )
    if as_json:
        echo_json(res.to_dict())
    else:
        for item in res.items:
            click.echo(f"{'ok  ' if item.ok else 'FAIL'}  {item.name:<17} {item.detail}")
        click.echo(f"{res.kind}: {'all checks hold' if res.ok else 'CHECK FAILED'}")
    click.get_current_context().exit(0 if res.ok else 1)
