"""``mapguard embed``: embed an ownership watermark and commit to it."""

from __future__ import annotations

import click

from mapguard import _cli

#: Exit code of an embedding written but not ready for publication (NOT_READY.txt).
EXIT_NOT_READY = 3


@_cli.command()
@click.argument("model", type=_cli.FILE)
@click.option("--data", "data_spec", required=True, help=_cli.DATA_HELP)
@click.option("--key", "key_path", required=True, type=_cli.FILE, help="Owner key.")
@_cli.out_option("Output folder.", type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=None, help="Mask-learning epochs (default: recipe).")
@click.option("--secrets", "n_secrets", type=int, default=None, help="Number of secrets k.")
@click.option(
    "--null-keys", "null_keys_per_secret", type=int, help="Null keys per secret M (committed)."
)
@click.option("--no-export", is_flag=True, help="Do not write the protected.pt2 export.")
@_cli.extra_options(
    "Further recipe option (EmbedConfig field, or mask. / channel. / harden.FIELD): "
    "-o target_weight=2, -o harden.epochs=10."
)
@_cli.shared_options("passphrase", "seed", "workers", "unsafe", "device", "amp", "quiet", "json")
def embed(model, data_spec, key_path, no_export, extra, passphrase_file, seed, unsafe_load, quiet,
          as_json, **args):  # fmt: skip
    """Embed an ownership watermark into MODEL; write DIR with the protected model, owner.wm
    (private) and commitment.dsse.json (publish it before deploying the model).

    With --passphrase-file the key is opened with it (if encrypted) and owner.wm is encrypted.
    Exit code 3: the outputs are written but the embedding missed its committed self-check level
    or its accuracy-cost limit (NOT_READY.txt says why; do not publish).

    Data parallel: torchrun --nproc-per-node N -m mapguard embed ... (every process learns its
    share of each batch; rank 0 draws the secrets, writes DIR and prints).
    """
    from mapguard.masking import launched_rank
    from mapguard.watermark import EmbedConfig
    from mapguard.watermark import embed as run_embed

    key, passphrase = _cli.owner_key(key_path, passphrase_file)
    recipe = {k: args.pop(k) for k in ("epochs", "n_secrets", "null_keys_per_secret")}
    cfg = EmbedConfig().replace(
        seed=seed, export=not no_export, **{k: v for k, v in recipe.items() if v is not None}
    )
    cfg = cfg.with_options(_cli.parse_options(extra))
    res = run_embed(model, data_spec, key, cfg, passphrase=passphrase, progress=not quiet,
                    allow_code=unsafe_load, **args)  # fmt: skip
    if launched_rank() != 0:  # under torchrun rank 0 reports; every rank exits with its code
        click.get_current_context().exit(0 if res.ready else EXIT_NOT_READY)
    _cli.echo_result(as_json, res.to_dict(), lambda: _print_embedding(res))
    if not res.ready:
        click.echo(
            f"mapguard: embed missed its level, NOT READY for publication "
            f"({res.out}/NOT_READY.txt): {'; '.join(res.not_ready)}",
            err=True,
        )
        click.get_current_context().exit(EXIT_NOT_READY)


def _print_embedding(res) -> None:  # noqa: ANN001
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
    if res.ready:
        click.echo(f"commitment            {res.commitment_digest} (publish commitment.dsse.json)")
    else:
        click.echo(f"commitment            {res.commitment_digest} (NOT READY: do not publish)")
