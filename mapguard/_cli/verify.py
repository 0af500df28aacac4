"""``mapguard verify``: test a suspect model for the owner's watermark."""

from __future__ import annotations

from pathlib import Path

import click

from mapguard import _cli
from mapguard._cli.timestamp import timing_options
from protocols.errors import InputError

_REMOTE = {
    "query_log": "--query-log", "resume": "--resume", "auth_env": "--auth-env",
    "auth_file": "--auth-file", "request_template": "--request-template", "ca_cert": "--ca-cert",
    "batch_size": "--batch-size", "max_qps": "--max-qps", "retries": "--retries",
    "max_wait": "--max-retry-wait", "max_queries": "--max-queries",
}  # fmt: skip


def _remote_options(fn):  # noqa: ANN001, ANN202 - a click decorator
    """Options of a suspect behind an API (SUSPECT an http(s) URL); none changes the p-value."""
    options = (
        click.option("--query-log", type=_cli.FILE,
                     help="Remote: the query log (default: next to --out, NAME.querylog.jsonl)."),
        click.option("--resume", is_flag=True,
                     help="Remote: continue the query log of an interrupted run (answered "
                     "requests are read back, not asked again)."),
        click.option("--auth-env", metavar="VAR",
                     help="Remote: environment variable holding the credential (a bearer token "
                     "or 'Header-Name: value')."),
        click.option("--auth-file", type=_cli.FILE,
                     help="Remote: file holding the credential (as --auth-env)."),
        click.option("--request-template", type=_cli.FILE,
                     help="Remote: a mapguard-request-template-v1 JSON file for an API that is "
                     "not the Open Inference Protocol (docs/FORMATS.md)."),
        click.option("--ca-cert", type=_cli.FILE,
                     help="Remote: PEM CA certificate of the endpoint (default: the system's)."),
        click.option("--batch-size", type=click.IntRange(1, 4096),
                     help="Remote: images per request [64]."),
        click.option("--max-qps", type=click.FloatRange(min=0, min_open=True),
                     help="Remote: most queries (images) per second [no limit]."),
        click.option("--retries", type=click.IntRange(0, 20),
                     help="Remote: retries of a request after a timeout, 429 or 5xx [4]."),
        click.option("--max-retry-wait", "max_wait", type=click.FloatRange(min=0, min_open=True),
                     help="Remote: longest wait before a retry, Retry-After included [60 s]."),
        click.option("--max-queries", type=click.IntRange(min=1),
                     help="Remote: stop after this many queries (an API quota; --resume "
                     "continues). Never more than the committed analysis needs."),
    )  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@_cli.command()
@click.argument("suspect")
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
@click.option(
    "--forgery-audit",
    "audit_keys",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="When the test evidences, score N audit keys (from the claim's null seed, of the "
    "secrets' target classes) on the suspect with the committed images: if the best k of them "
    "reach the secrets' statistic, a claimant who saw the suspect could have selected this "
    "evidence, and without an established time order the verdict is 'not evidenced' (N x "
    "images-per-key more queries; default 1000 for a file, 0 (not run) for an endpoint or when a "
    "trusted timestamp establishes the time order).",
)
@click.option("--key", "key_path", type=_cli.FILE, help="Sign the result.")
@_cli.out_option("Result JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds the isolated worker may take to load the suspect, and to answer one batch "
    "(remote: one request).",
)
@_remote_options
@timing_options
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
    """Run the committed analysis on SUSPECT (a model file, or an http(s) inference endpoint);
    exit 0 evidenced, 1 not evidenced, 2 error."""
    from mapguard.watermark import verify_suspect
    from mapguard.watermark._verify_remote import remote_options

    chosen = {"labels_only": labels_only or None, "queries": queries, "alpha": alpha,
              "null_keys": null_keys}  # fmt: skip
    given = sorted(f"--{k.replace('_', '-')}" for k, v in chosen.items() if v is not None)
    if given and not exploratory:
        raise InputError(
            f"{', '.join(given)} would change the committed analysis; the p-value is fixed by "
            "the commitment (pass --exploratory for a run that is stamped EXPLORATORY)"
        )
    remote = {k: options.pop(k) for k in _REMOTE}
    remote["timeout"] = options["timeout"]
    if not suspect.lower().startswith(("http://", "https://")):
        given = [_REMOTE[k] for k, v in remote.items() if k in _REMOTE and v not in (None, False)]
        if given:
            raise InputError(f"{', '.join(given)}: only for a suspect behind an http(s) URL")
    key, passphrase = _cli.owner_key(key_path, passphrase_file)
    options["timestamp"] = options.pop("timestamp_path")
    report = verify_suspect(
        suspect,
        watermark_path,
        claim_nonce=claim_nonce,
        exploratory=chosen if exploratory else None,
        key=key,
        passphrase=passphrase,
        remote=remote_options(remote),
        **options,
    )
    name = Path(watermark_path).name
    _cli.echo_result(as_json, report.predicate, lambda: _print_verdict(report, name))
    click.get_current_context().exit(0 if report.evidenced else 1)


def _print_verdict(report, watermark_name: str) -> None:  # noqa: ANN001
    p, r, v, c = report.predicate, report.result, report.verdict, report.channel
    verdict = "EVIDENCED" if report.evidenced else "not evidenced"
    if p.get("exploratory"):
        verdict = f"EXPLORATORY (not the committed analysis; not evidence): {verdict}"
    if v is not None:
        by = f" by the {' and the '.join(v.by)}" if v.by else ""
        click.echo(f"verdict      {verdict}{by} at alpha {v.alpha:g} (Bonferroni over 2 channels)")
        click.echo(f"p-value      {v.pvalue:.3g} = 2 x min(trigger, channel if admissible)")
        counted = "counted" if c.admissible else "NOT counted: " + c.admissibility
        click.echo(f"channel      p {c.pvalue:.3g} (rank {c.rank} of {c.null_keys + 1}, z "
                   f"{c.z:.1f}, {c.queries} boundary queries); {counted}")  # fmt: skip
    else:
        click.echo(f"verdict      {verdict} at alpha {r.alpha:g}")
    label = "trigger p    " if v is not None else "p-value      "
    click.echo(f"{label}{r.pvalue:.3g} (exact; floor {r.pvalue_floor:.3g}), ranks {list(r.ranks)}")
    click.echo(f"test         {r.method}")
    click.echo(f"claim nonce  {p.get('claim_nonce')} (null seed {r.null_seed[:16]}...)")
    order = p.get("time_order")
    if order is None:
        click.echo(
            "condition    the verdict assumes the commitment existed before the suspect; its "
            "time is the owner's own statement unless a trusted timestamp shows it"
        )
    else:
        click.echo(f"time order   {order['sentence']}")
    audit = p.get("forgery_audit")
    if audit is not None:
        weight = "decides the verdict" if audit["counted"] else "recorded (time order established)"
        click.echo(f"forgery      {audit['sentence']}; {weight}")
    elif r.evidenced and not (order or {}).get("established"):
        click.echo("forgery      not audited: evidence selected after seeing the suspect is not "
                   "excluded (--forgery-audit N, or a trusted timestamp)")  # fmt: skip
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
    log = p.get("query_log")
    if log is None:
        click.echo(
            f"result       {report.out} ({signed}; suspect sha256 {p['suspect']['sha256'][:16]}...)"
        )
        return
    click.echo(
        f"query log    {log['name']} (sha256 {log['sha256'][:16]}...): {log['queries']} queries "
        f"in {log['requests']} requests, {log['failures']} failed exchanges, {log['retries']} "
        f"retries, {log['sessions']} session(s)"
    )
    same = log.get("nondeterminism", {})
    if same and not same.get("deterministic", True):
        click.echo(
            f"WARNING      the endpoint answered {same['changed_answers']} of "
            f"{same['rechecked_images']} re-asked images differently (max difference "
            f"{same['max_abs_difference']:.3g}): it is not deterministic"
        )
    click.echo(f"result       {report.out} ({signed}; endpoint {p['suspect']['endpoint']})")
