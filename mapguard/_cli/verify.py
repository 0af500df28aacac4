"""``mapguard verify``: test a suspect model for the owner's watermark."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard import _cli
from protocols.errors import InputError


@_cli.command()
@click.argument("suspect", type=_cli.FILE)
@click.option("--watermark", "watermark_path", required=True, type=_cli.FILE)
@click.option(
    "--claim-nonce",
    help="The claim's nonce, fixed after the claim was filed by someone other than the owner "
    "(the arbiter's nonce or a public randomness-beacon value); with the commitment it seeds the "
    "null keys. Required (recorded in the result: the same nonce reproduces the p-value).",
)
@click.option(
    "--exploratory",
    is_flag=True,
    help="Allow options that depart from the committed analysis (below); the result is stamped "
    "EXPLORATORY and is not evidence.",
)
@click.option("--labels-only", is_flag=True, help="Exploratory: query top-1 labels only.")
@click.option("--queries", type=int, default=None, help="Exploratory: total query budget.")
@click.option("--alpha", type=float, default=None, help="Exploratory: significance level.")
@click.option("--null-keys", type=int, default=None, help="Exploratory: null keys per secret.")
@click.option("--key", "key_path", type=_cli.FILE, help="Sign the result.")
@_cli.out_option("Result JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds the isolated worker may take to load the suspect, and to answer one batch.",
)
@_cli.shared_options("passphrase", "unsafe", "json")
def verify(
    suspect,
    watermark_path,
    claim_nonce,
    exploratory,
    labels_only,
    queries,
    alpha,
    null_keys,
    key_path,
    passphrase_file,
    as_json,
    **options,
):
    """Run the committed analysis on SUSPECT; exit 0 evidenced, 1 not evidenced, 2 error."""
    from mapguard.watermark import verify_suspect

    chosen = {"labels_only": labels_only or None, "queries": queries, "alpha": alpha,
              "null_keys": null_keys}  # fmt: skip
    given = sorted(f"--{k.replace('_', '-')}" for k, v in chosen.items() if v is not None)
    if given and not exploratory:
        raise InputError(
            f"{', '.join(given)} would change the committed analysis; the p-value is fixed by "
            "the commitment (pass --exploratory for a run that is stamped EXPLORATORY)"
        )
    key, passphrase = _cli.owner_key(key_path, passphrase_file)
    report = verify_suspect(
        suspect,
        watermark_path,
        claim_nonce=claim_nonce,
        exploratory=chosen if exploratory else None,
        key=key,
        passphrase=passphrase,
        **options,
    )
    name = Path(watermark_path).name
    _cli.echo_result(as_json, report.predicate, lambda: _print_verdict(report, name))
    click.get_current_context().exit(0 if report.evidenced else 1)


def _print_verdict(report, watermark_name: str) -> None:  # noqa: ANN001
    p, r = report.predicate, report.result
    verdict = "EVIDENCED" if r.evidenced else "not evidenced"
    if p.get("exploratory"):
        verdict = f"EXPLORATORY (not the committed analysis; not evidence): {verdict}"
    click.echo(f"verdict      {verdict} at alpha {r.alpha:g}")
    click.echo(
        f"p-value      {r.pvalue:.3g} (exact; floor {r.pvalue_floor:.3g}), ranks {list(r.ranks)}"
    )
    click.echo(f"test         {r.method}")
    click.echo(f"claim nonce  {p.get('claim_nonce')} (null seed {r.null_seed[:16]}...)")
    click.echo(
        "condition    the verdict assumes the commitment existed before the suspect; its time "
        "is the owner's own statement unless a trusted timestamp shows it"
    )
    click.echo(f"queries      {r.queries} ({r.mode}, {r.n_images} images per key)")
    click.echo(
        f"effect       {r.effect.estimate:.3f} "
        f"[{r.effect.ci_low:.3f}, {r.effect.ci_high:.3f}] ({r.effect.confidence_level:.0%} CI)"
    )
    click.echo(f"null keys    max g {r.null_summary.max:.3f}, median {r.null_summary.median:.3f}")
    if r.owner_key:
        # Anyone can re-sign a copy of a watermark file: the verdict is about this key's watermark.
        click.echo(
            f"owner key    {r.owner_key} (signer of {watermark_name}; check it against the "
            "published commitment with 'mapguard check')"
        )
    isolation = p["suspect"].get("isolation", "")
    if isolation:
        click.echo(f"loaded       {isolation}")
    signed = "signed statement" if report.signed else "unsigned JSON"
    click.echo(
        f"result       {report.out} ({signed}; suspect sha256 {p['suspect']['sha256'][:16]}...)"
    )
