"""Turn loaded :class:`Evidence` into the template's context: sections of labelled cells.

Every number comes from :meth:`Sources.num` (a named field of a loaded file). Values the report
computes itself (digests of files, the environment) are plain text cells without a ``field``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from mapguard.report._cells import Cell, Sources
from mapguard.report._custody import custody, limitations, reproduce
from mapguard.report._evidence import Evidence
from mapguard.report._layout import CALIBRATION
from mapguard.report._results import figures, results
from mapguard.report._rows import Row, result_cell, text, tool
from mapguard.report._sources import UNSIGNED, SignatureCheck
from verification import timestamps

__all__ = ["build_context"]


def build_context(
    evidence: Evidence,
    *,
    generated: str,
    report_command: Sequence[str],
    first_seen: dt.datetime | None = None,
) -> dict[str, Any]:
    """The template context of a report on ``evidence`` (``first_seen``: the suspect's first
    known date, given by the arbiter)."""
    docs = {"result": evidence.result.predicate, "commitment": evidence.commitment.predicate}
    if evidence.watermark is not None:
        docs["watermark"] = evidence.watermark
    s = Sources(docs)
    certified = evidence.timestamp.certified if evidence.timestamp is not None else None
    stated = s.get("commitment:created") if s.has("commitment:created") else None
    order = timestamps.time_order(certified, first_seen, stated=stated)
    return {
        "generated": generated,
        "banners": _banners(evidence),
        "summary": {**_summary(s), "order": text(order.sentence)},
        "checks": evidence.checks,
        "parties": _parties(s, evidence),
        "models": _models(s),
        "commitment": _commitment(s, evidence) + _certified_rows(certified, order),
        "embedding": _embedding(s, evidence),
        "protocol": _protocol(s),
        "results": results(s),
        "figures": figures(s),
        "custody": custody(s, evidence, generated, first_seen=order.first_seen),
        "reproduce": reproduce(s, evidence, report_command),
        "limitations": limitations(evidence),
    }


def _banners(evidence: Evidence) -> list[dict[str, str]]:
    banners = [
        {
            "level": "danger",
            "text": f"UNVERIFIED: the {c.role} '{c.name}' did not pass its check ({c.status}: "
            f"{c.detail}). Nothing it states is established by this report.",
        }
        for c in evidence.failed_checks
    ]
    if evidence.result.predicate.get("exploratory"):
        banners.append(
            {
                "level": "danger",
                "text": "EXPLORATORY: this verification did not run the analysis fixed in the "
                "commitment (options were changed at verify time). Its p-value is descriptive "
                "and is not evidence of ownership.",
            }
        )
    isolation = str((evidence.result.predicate.get("suspect") or {}).get("isolation", ""))
    if isolation.startswith("UNSAFE LOAD"):
        banners.append(
            {
                "level": "danger",
                "text": "UNSAFE LOAD: the suspect file was loaded in the verifier's own process "
                "(--unsafe-load), so code in that file could have run there and influenced the "
                "answers recorded here. Re-run the verification without --unsafe-load.",
            }
        )
    if evidence.result.check.status == UNSIGNED:
        banners.append(
            {
                "level": "warning",
                "text": f"UNSIGNED: the verification result '{evidence.result.check.name}' is "
                "plain JSON without a signature; its numbers are reproduced as found, but nobody "
                "vouches for them. Run `mapguard verify` with --key for a signed result.",
            }
        )
    return banners


def _verdict_block(s: Sources) -> str:
    return "combined" if s.has("result:combined") else "test"


def _summary(s: Sources) -> dict[str, Any]:
    return {
        "evidenced": s.get("result:verdict") == "evidenced",
        "verdict": s.num("result:verdict", "text"),
        # a version-4 analysis: the combined verdict's p-value and level (Bonferroni)
        "pvalue": s.num(f"result:{_verdict_block(s)}.pvalue", "pvalue"),
        "alpha": s.num(f"result:{_verdict_block(s)}.alpha", "pvalue"),
        "queries": s.num("result:queries_used", "int"),
        "n_secrets": result_cell(s, "n_secrets", "int"),
        "null_keys": result_cell(s, "null_keys_per_secret", "int"),
        "suspect": s.num("result:suspect.name", "text"),
        "suspect_sha256": s.num("result:suspect.sha256", "text"),
        "endpoint": s.get("result:suspect.endpoint", None),
        "protected": s.num("commitment:model.name", "text"),
        "committed": s.num("commitment:created", "text"),
        "owner": s.num("commitment:owner_key_fingerprint", "text"),
        "effect": s.num("result:effect.estimate"),
        "ci_low": s.num("result:effect.ci_low"),
        "ci_high": s.num("result:effect.ci_high"),
        "confidence_level": s.num("result:effect.confidence_level", "percent"),
    }


def _signer(check: SignatureCheck) -> Cell:
    if check.verified and check.signer:
        return text(check.signer, mono=True)
    return text(f"{check.status}: {check.detail}")


def _parties(s: Sources, evidence: Evidence) -> list[Row]:
    rows = [
        Row("Owner (key named in the commitment)", s.num("commitment:owner_key_fingerprint")),
        Row("Commitment signed by", _signer(evidence.commitment.check)),
        Row("Verification result signed by", _signer(evidence.result.check)),
    ]
    if evidence.watermark is not None:
        rows.append(
            Row("Owner key named in the watermark file", s.num("watermark:owner_key_fingerprint"))
        )
    rows += [
        Row(f"Public key file '{k.file.name}'", text(k.fingerprint, mono=True))
        for k in evidence.keys
    ]
    holder = "not identified by these files; the suspect is identified by its SHA-256 (Models)"
    rows.append(Row("Holder of the suspect model", text(holder)))
    return rows


def _models(s: Sources) -> list[dict[str, Cell]]:
    return [
        {
            "role": text("Protected model (committed by the owner)"),
            "name": s.num("commitment:model.name", "text"),
            "format": s.num("commitment:model.format", "text"),
            "size": s.num(s.first(*CALIBRATION["model_size"]), "int"),
            "sha256": s.num("commitment:model.sha256", "text"),
        },
        {
            "role": text("Suspect model (tested)"),
            "name": s.num("result:suspect.name", "text"),
            "format": s.num("result:suspect.format", "text"),
            "size": result_cell(s, "suspect_size", "int"),
            "sha256": s.num("result:suspect.sha256", "text")
            if s.get("result:suspect.sha256", None)
            else text("remote endpoint: no file; its answers are in the query log (section 9)"),
            "loading": s.num("result:suspect.isolation", "text")
            if s.get("result:suspect.isolation")
            else text("not recorded (result written before isolation was recorded)"),
        },
    ]


def _commitment(s: Sources, evidence: Evidence) -> list[Row]:
    check = evidence.commitment.check
    digest = evidence.commitment_digest or "n/a (a bare predicate, not a statement)"
    rows = [
        Row("Created (as stated by the signer)", s.num("commitment:created", "text")),
        Row("Statement digest (SHA-256, computed at report time)", text(digest, mono=True)),
        Row(
            "Digest the verification result refers to",
            s.num("result:watermark.commitment_digest", "text"),
        ),
        Row("Signature status at report time", text(f"{check.status}: {check.detail}")),
        Row("Committed protected model (SHA-256)", s.num("commitment:model.sha256", "text")),
    ]
    for part in ("secret", "trigger", "verification_set"):
        algorithm = s.get(f"commitment:commitments.{part}.algorithm")
        label = f"Commitment to the {part.replace('_', ' ')} ({algorithm})"
        rows.append(Row(label, s.num(f"commitment:commitments.{part}.digest", "text")))
    rows.append(Row("Written by", text(tool(s, "commitment"))))
    return rows


def _certified_rows(
    certified: timestamps.CertifiedTime | None, order: timestamps.TimeOrder
) -> list[Row]:
    """The trusted time of the commitment (RFC 3161 token, checked at report time), and the
    order with the suspect's first known date."""
    if certified is None:
        rows = [Row("Certified time", text("none: no trusted time-stamp was checked; the time "
                                            "above is the owner's own clock"))]  # fmt: skip
    else:
        seconds = certified.accuracy_seconds
        accuracy = "" if seconds is None else f" ±{seconds:g} s"
        rows = [
            Row("Certified time (RFC 3161 time-stamp, checked at report time)",
                text(f"{certified.time}{accuracy}")),
            Row("Time-stamp authority (certificate supplied by the user)",
                text(f"{certified.tsa} ({certified.tsa_certificate_sha256})")),
            Row("Token", text(f"serial {certified.serial_number}, policy {certified.policy}, "
                              f"certifies {certified.hash_algorithm} {certified.digest}")),
        ]  # fmt: skip
    return [*rows, Row("Order with the suspect's first known date", text(order.sentence))]


def _embedding(s: Sources, evidence: Evidence) -> dict[str, Any]:
    calibration = s.flatten("watermark:calibration") if s.has("watermark:calibration") else ()
    return {
        "method": s.num("commitment:method.name", "text"),
        "method_params": [Row(k, c) for k, c in s.flatten("commitment:method.parameters")],
        "family": s.num("commitment:trigger_family.name", "text"),
        "family_params": [Row(k, c) for k, c in s.flatten("commitment:trigger_family.parameters")],
        "plan": [Row(k, c) for k, c in s.flatten("commitment:verification")],
        "calibration": [Row(k, c) for k, c in calibration],
        "watermark_given": evidence.watermark is not None,
    }


def _protocol(s: Sources) -> list[Row]:
    return [
        Row("Trigger family", result_cell(s, "family", "text")),
        Row("Query mode", s.num("result:query_mode", "text")),
        Row("Queries sent to the suspect (controls included)", s.num("result:queries_used", "int")),
        Row("Verification images per trigger (n)", s.num("result:test.n", "int")),
        Row("Secrets (the owner's triggers)", result_cell(s, "n_secrets", "int")),
        Row("Random keys per secret (the null, M)", result_cell(s, "null_keys_per_secret", "int")),
        Row("Statistic g of one trigger", result_cell(s, "statistic_definition", "text")),
        Row("Test", s.num("result:test.method", "text")),
        Row("Alternative", s.num("result:test.alternative", "text")),
        Row("Significance level (alpha)", s.num("result:test.alpha", "pvalue")),
        Row("Smallest attainable p-value", result_cell(s, "pvalue_floor", "pvalue")),
        Row("Public seed of the random keys", result_cell(s, "null_seed", "text")),
        Row("Claim nonce (with the commitment digest it gives the seed)", _optional(
            s, "result:claim_nonce", "not recorded (a result written before claim nonces)")),
        Row("Analysis", text(_analysis_text(s))),
        Row("Embedding attempt (p-value multiplied by it)", _optional(
            s, "result:analysis.attempt", "1 (not recorded)", kind="int")),
        Row("Committed effect floor", _optional(
            s, "result:analysis.effect_floor", "none (not recorded)", kind="float")),
        Row("The floor applies to (the secrets' g)", _optional(
            s, "result:analysis.floor_statistic", "min: the weakest secret (analysis version "
            "2 or earlier)")),
        Row("Forgery audit (could a claimant who saw the suspect have selected this evidence?)",
            _optional(s, "result:forgery_audit.sentence",
                      "not run: evidence selected after seeing the suspect is excluded only by a "
                      "trusted time-stamp that predates it")),  # fmt: skip
        Row("Negative controls", text(_CONTROLS)),
    ]  # fmt: skip


def _optional(s: Sources, key: str, missing: str, *, kind: str = "text") -> Cell:
    return s.num(key, kind) if s.has(key) else text(missing)


def _analysis_text(s: Sources) -> str:
    if s.get("result:exploratory", False):
        return ("EXPLORATORY: options departed from the committed analysis; the p-value is "
                "descriptive and is not evidence")  # fmt: skip
    if s.has("result:analysis.analysis_version"):
        return ("pre-registered: every number that sets the p-value was fixed in the commitment "
                "before any suspect was seen")  # fmt: skip
    return ("legacy commitment: it fixed the number of secrets, null keys and images, not the "
            "mode, level or seed rule")  # fmt: skip


_CONTROLS = (
    "the suspect is queried with random keys of the same family (the null); each random key is "
    "also tested as if it were the secret (fake secrets against the other random keys). Random "
    "keys are exchangeable with each other on any model, so this passes by construction: it "
    "checks the arithmetic of the test, not its validity on this suspect nor the owner's claim; "
    "the validity argument is the secret draw and the pre-registered analysis (docs/METHOD.md, "
    "section 4), and the false-positive benchmark measures it on independent models"
)
