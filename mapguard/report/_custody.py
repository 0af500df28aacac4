"""Chain of custody, the commands to reproduce, and the limitations of a report."""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mapguard.report._cells import Sources
from mapguard.report._evidence import Evidence
from mapguard.report._layout import RESULT
from mapguard.report._rows import Row, text, tool
from protocols.errors import InputError

__all__ = ["custody", "limitations", "reproduce"]

_PACKAGES = (
    "mapguard",
    "torch",
    "numpy",
    "scipy",
    "cryptography",
    "matplotlib",
    "jinja2",
    "weasyprint",
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def custody(
    s: Sources, evidence: Evidence, generated: str, *, first_seen: str | None = None
) -> dict[str, Any]:
    """Input files with digests, timestamps (each with its source), tools and the environment
    of this report."""
    env = [Row("Python", text(sys.version.split()[0])), Row("Platform", text(platform.platform()))]
    env += [Row(name, text(_version(name))) for name in _PACKAGES]
    recorded = s.first(*RESULT["environment"])
    timestamps = [
        Row("Commitment created (the owner's own clock, as signed)",
            s.num("commitment:created", "text")),
        Row("Verification result created (the verifier's clock)", s.num("result:created", "text")),
        Row("Report generated (this machine's clock)", text(generated)),
    ]  # fmt: skip
    certified = evidence.timestamp.certified if evidence.timestamp is not None else None
    if certified is not None:
        source = f"RFC 3161 time-stamp authority '{certified.tsa}'"
        timestamps.insert(1, Row(f"Commitment certified ({source})", text(certified.time)))
    if first_seen is not None:
        timestamps.append(Row("Suspect first known (as given by the arbiter)", text(first_seen)))
    tools = [
        Row("Commitment written by", text(tool(s, "commitment"))),
        Row("Verification performed by", text(tool(s, "result"))),
        Row("Report written by", text(f"mapguard {_version('mapguard')}")),
    ]
    if evidence.watermark is not None:
        timestamps.insert(1, Row("Watermark file created", s.num("watermark:created", "text")))
        tools.insert(1, Row("Watermark file written by", text(tool(s, "watermark"))))
    return {
        "files": evidence.files,
        "query_log": _query_log(s, evidence),
        "timestamps": timestamps,
        "tools": tools,
        "environment": env,
        "verify_environment": [Row(k, c) for k, c in s.flatten(recorded)] if recorded else [],
    }


def _query_log(s: Sources, evidence: Evidence) -> list[Row]:
    """A remote suspect's query log, as the result records it, and whether the file matches."""
    block = evidence.result.predicate.get("query_log")
    if not isinstance(block, dict):
        return []
    from verification.backends import check_query_log

    try:
        found = check_query_log(block, None, Path(evidence.result.file.path))
    except InputError as exc:
        found = f"NOT CHECKED OR NOT MATCHING: {exc}"
    same = block.get("nondeterminism") or {}
    determinism = "not re-checked" if not same else (
        "the same answers to re-asked images" if same.get("deterministic") else
        f"NONDETERMINISTIC: {same.get('changed_answers')} of {same.get('rechecked_images')} "
        f"re-asked images answered differently (max difference "
        f"{same.get('max_abs_difference', 0):.3g})")  # fmt: skip
    span = f"{block.get('first', '?')} to {block.get('last', '?')}"
    rows = [
        Row("Endpoint queried", s.num("result:suspect.endpoint", "text")),
        Row("Query log (name, SHA-256 signed with the result)", text(
            f"{block.get('name')} ({block.get('sha256')})", mono=True)),  # fmt: skip
        Row("Log file next to the result", text(found)),
        Row("Requests answered / queries (images)", text(
            f"{block.get('requests')} / {block.get('queries')}")),  # fmt: skip
        Row("Exchanges / failures / retries", text(
            f"{block.get('exchanges')} / {block.get('failures')} / {block.get('retries')}")),
        Row("Time span of the queries (the verifier's clock)", text(span)),
        Row("Sessions (1 + resumed runs)", text(str(block.get("sessions", 1)))),
        Row("Determinism of the endpoint", text(determinism)),
    ]  # fmt: skip
    return rows


def reproduce(
    s: Sources, evidence: Evidence, report_command: Sequence[str]
) -> list[dict[str, str]]:
    """The shell commands that re-check and re-run everything in the report."""
    keys = [k.file.path for k in evidence.keys] or ["owner.pub"]
    wm = evidence.watermark_file.path if evidence.watermark_file else "owner.wm"
    check = [
        [
            "mapguard",
            "check",
            evidence.commitment.file.path,
            "--pubkey",
            keys[0],
            "--watermark",
            wm,
        ],
        ["mapguard", "check", evidence.result.file.path, "--pubkey", keys[-1]],
    ]
    if evidence.timestamp is not None:
        token, cert = (f.path for f in evidence.timestamp.files)
        check[0] += ["--timestamp", token, "--tsa-cert", cert]
    return [
        {
            "title": "Compare the digests of the input files with the chain of custody",
            "command": shlex.join(["sha256sum", *(f.path for f in evidence.files)]),
        },
        {
            "title": "Check the signatures, and that the watermark file opens the commitment",
            "command": "\n".join(shlex.join(c) for c in check),
        },
        {
            "title": "Re-run the verification on the suspect file (the random keys come from a "
            "public seed, so the same files give the same result)",
            "command": _verify_command(s, wm),
        },
        {"title": "Re-create this report", "command": shlex.join(report_command)},
    ]


def _verify_command(s: Sources, wm: str) -> str:
    recorded = s.first(*RESULT["command"])
    if recorded:
        value = s.get(recorded)
        return shlex.join(map(str, value)) if isinstance(value, list) else str(value)
    args = ["mapguard", "verify", str(s.get("result:suspect.name")), "--watermark", wm]
    if s.get("result:query_mode") == "labels":
        args.append("--labels-only")
    args += [
        "--queries",
        str(s.get("result:queries_used")),
        "--alpha",
        repr(s.get("result:test.alpha")),
    ]
    null_keys = s.first(*RESULT["null_keys_per_secret"])
    if null_keys:
        args += ["--null-keys", str(s.get(null_keys))]
    return shlex.join([*args, "--key", "owner.key", "--out", "result.json"])


def _time_limitation(evidence: Evidence) -> str:
    if evidence.timestamp is None or evidence.timestamp.certified is None:
        return ("The commitment's time is the signer's own statement; an independent "
                "time-stamp (e.g. an RFC 3161 token from `mapguard timestamp`, or a "
                "transparency-log entry) would corroborate it.")  # fmt: skip
    return ("The commitment's time is certified by the RFC 3161 time-stamp authority named in "
            "section 4, checked with the certificate supplied for this report: it is as "
            "trustworthy as that authority and as the certificate's provenance.")  # fmt: skip


def _suspect_limitation(evidence: Evidence) -> str:
    if "endpoint" in (evidence.result.predicate.get("suspect") or {}):
        return ("The result concerns the answers the endpoint gave during the time span of its "
                "query log; it does not show which model file the service runs, nor that it ran "
                "the same model before or after.")  # fmt: skip
    return ("The result concerns the suspect file with the SHA-256 shown. A deployed service may "
            "run a different model than a file obtained from it.")  # fmt: skip


def limitations(evidence: Evidence) -> list[str]:
    """What the report does not establish."""
    items = [
        "The test answers one question: could the suspect have been made without knowledge of the "
        "owner's secret (the null hypothesis)? The p-value is the probability, under that "
        "hypothesis, of a result at least this extreme. It is not the probability that the "
        "suspect was copied, and it does not show who copied it, when, or how.",
        "Its validity rests on the secret trigger being exchangeable with random triggers of the "
        "same family, i.e. on the secret having been drawn at random and committed to before the "
        "suspect existed. " + _time_limitation(evidence),
        "A signature shows that the holder of the private key signed the file; who holds that key "
        "must be established separately (e.g. by the owner publishing the key fingerprint).",
        _suspect_limitation(evidence),
        "A 'not evidenced' verdict does not show independence: fine-tuning, pruning, "
        "distillation or a labels-only interface can weaken the watermark, and few queries "
        "limit the power.",
        "Parametric p-values, where shown, are supplementary; the verdict uses the exact rank "
        "test.",
    ]
    if not evidence.result.check.verified:
        items.insert(
            0,
            "The verification result's signature was not verified: its numbers are "
            "reproduced as found in the file, not vouched for.",
        )
    return items
