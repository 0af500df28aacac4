"""``mapguard verify``: test a suspect model for the owner's watermark."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard import _cli


@_cli.command()
@click.argument("suspect", type=_cli.FILE)
@click.option("--watermark", "watermark_path", required=True, type=_cli.FILE)
@click.option("--labels-only", is_flag=True, help="Query top-1 labels only.")
@click.option("--queries", type=int, default=None, help="Total query budget (default: all images).")
@click.option("--alpha", type=float, default=1e-3, show_default=True, help="Significance level.")
@click.option(
    "--null-keys", type=int, default=None, help="Null keys per secret (default: committed)."
)
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
def verify(suspect, watermark_path, key_path, passphrase_file, as_json, **options):
    """Test whether SUSPECT carries the watermark; exit 0 evidenced, 1 not evidenced, 2 error."""
    from mapguard.watermark import verify_suspect

    key, passphrase = _cli.owner_key(key_path, passphrase_file)
    report = verify_suspect(suspect, watermark_path, key=key, passphrase=passphrase, **options)
    name = Path(watermark_path).name
    _cli.echo_result(as_json, report.predicate, lambda: _print_verdict(report, name))
    click.get_current_context().exit(0 if report.evidenced else 1)


def _print_verdict(report, watermark_name: str) -> None:  # noqa: ANN001
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
