"""``mapguard attack``: apply a removal/adaptation attack to a model (robustness evaluation)."""

from __future__ import annotations

import click

from mapguard._cli import (
    DATA_HELP,
    _Command,
    cli,
    device_option,
    echo_json,
    force_option,
    json_option,
    quiet_option,
    seed_option,
)


class _AttackCommand(_Command):
    """Lists the registered attack kinds under ``--help`` (imported only when asked for)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from mapguard.attacks import list_attacks

        with formatter.section("Attack kinds"):
            formatter.write_dl(list(list_attacks().items()))


@cli.command(cls=_AttackCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--kind", required=True, help="Attack kind (listed below).")
@click.option(
    "--data",
    help=f"Attacker data, train split (clean task data; target data for target-ft). {DATA_HELP}",
)
@click.option("--fraction", type=float, help="Share of --data the attacker uses, in (0, 1].")
@click.option("--n-images", type=int, help="Number of --data images used (overrides --fraction).")
@click.option("--amount", type=float, help="Pruning amount in [0, 1) (prune, fine-prune).")
@click.option("--epochs", type=int, help="Training epochs (kind default).")
@click.option("--lr", type=float, help="Peak learning rate (kind default).")
@click.option("--batch-size", type=int, help="Training batch size (default 64).")
@click.option("--temperature", type=float, help="Distillation temperature (default 4).")
@click.option("--noise-scale", type=float, help="regrow: refill noise std / layer weight std.")
@click.option("--arch", help="Student architecture (distill-arch, extract).")
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Attacked checkpoint.")
@seed_option
@force_option
@device_option
@quiet_option
@json_option
def attack(
    model, kind, data, fraction, n_images, amount, epochs, lr, batch_size, temperature,
    noise_scale, arch, no_augment, out, seed, force, device, quiet, as_json,
):  # fmt: skip
    """Attack MODEL (a mapguard checkpoint) with --kind and save the result to --out."""
    from mapguard.attacks import AttackConfig, attack_file

    options = {
        "fraction": fraction, "n_images": n_images, "amount": amount, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "temperature": temperature, "noise_scale": noise_scale,
        "arch": arch, "augment": False if no_augment else None,
    }  # fmt: skip
    config = AttackConfig(**{k: v for k, v in options.items() if v is not None})
    info, meta = attack_file(
        model, kind, out=out, data=data, config=config, seed=seed, force=force, device=device,
        progress=not quiet,
    )  # fmt: skip
    if as_json:
        echo_json(info.to_dict() | {"out": out, "weights_sha256": meta.weights_sha256})
        return
    used = f" on {info.n_images} images of {info.data}" if info.data else ""
    click.echo(f"{info.kind}{used}: {info.seconds:.1f} s -> {out} ({info.arch})")
    for key, value in info.details.items():
        click.echo(f"  {key}: {value}")
    for note in info.notes:
        click.echo(f"  note: {note}")
