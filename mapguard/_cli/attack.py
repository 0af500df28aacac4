"""``mapguard attack``: apply a removal/adaptation attack to a model (robustness evaluation)."""

from __future__ import annotations

import click

from mapguard import _cli


class _AttackCommand(_cli.Command):
    """Lists the registered attack kinds under ``--help`` (imported only when asked for)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from mapguard.attacks import list_attacks

        with formatter.section("Attack kinds"):
            formatter.write_dl(list(list_attacks().items()))


@click.command(cls=_AttackCommand)
@click.argument("model", type=_cli.FILE)
@click.option("--kind", required=True, help="Attack kind (listed below).")
@click.option(
    "--data",
    help="Attacker data, train split (clean task data; target data for target-ft). "
    + _cli.DATA_HELP,
)
@click.option("--fraction", type=float, help="Share of --data the attacker uses, in (0, 1].")
@click.option("--n-images", type=int, help="Number of --data images used (overrides --fraction).")
@click.option("--amount", type=float, help="Pruning amount in [0, 1) (prune, fine-prune).")
@_cli.budget_options("kind")
@click.option("--temperature", type=float, help="Distillation temperature (default 4).")
@click.option("--noise-scale", type=float, help="regrow: refill noise std / layer weight std.")
@click.option("--arch", help="Student architecture (distill-arch, extract).")
@click.option(
    "--epsilon",
    type=float,
    help="wrk: add relabelled boundary samples, one signed-gradient step of this size (pixel "
    "units, in (0, 1]; default: none).",
)
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@_cli.out_option("Attacked checkpoint.")
@_cli.shared_options("seed", "device", "amp", "quiet", "json")
def attack(model, kind, data, no_augment, out, seed, force, device, amp, quiet, as_json, **options):
    """Attack MODEL (a mapguard checkpoint) with --kind and save the result to --out."""
    from mapguard.attacks import AttackConfig, attack_file

    options["augment"] = False if no_augment else None
    config = AttackConfig(**{k: v for k, v in options.items() if v is not None})
    info, meta = attack_file(
        model, kind, out=out, data=data, config=config, seed=seed, force=force, device=device,
        progress=not quiet, amp=amp,
    )  # fmt: skip
    data = info.to_dict() | {"out": out, "weights_sha256": meta.weights_sha256}
    _cli.echo_result(as_json, data, lambda: _print_attack(info, out))


def _print_attack(info, out: str) -> None:  # noqa: ANN001
    used = f" on {info.n_images} images of {info.data}" if info.data else ""
    click.echo(f"{info.kind}{used}: {info.seconds:.1f} s -> {out} ({info.arch})")
    for key, value in info.details.items():
        click.echo(f"  {key}: {value}")
    for note in info.notes:
        click.echo(f"  note: {note}")
