"""``build_report``: load and check the inputs, render HTML (and PDF), write atomically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapguard.report._context import build_context
from mapguard.report._errors import ReportError
from mapguard.report._evidence import load_evidence
from mapguard.report._render import render_html, render_pdf
from mapguard.report._sources import SignatureCheck
from protocols.fileio import atomic_write_bytes, check_writable
from verification import timestamps

__all__ = ["ReportResult", "build_report"]

PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        html_path: The HTML report.
        pdf_path: The PDF report, if requested.
        sha256: Hex SHA-256 of the HTML file's bytes (to cite in a signed statement).
        pdf_sha256: Hex SHA-256 of the PDF file's bytes, if written.
        signatures: One check per signed input (file, role, status, detail, signer).
        evidenced: The verdict recorded in the result file.
    """

    html_path: Path
    pdf_path: Path | None
    sha256: str
    pdf_sha256: str | None
    signatures: tuple[SignatureCheck, ...]
    evidenced: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""
        return {
            "html": str(self.html_path),
            "sha256": self.sha256,
            "pdf": str(self.pdf_path) if self.pdf_path is not None else None,
            "pdf_sha256": self.pdf_sha256,
            "evidenced": self.evidenced,
            "signatures": [dataclasses.asdict(c) for c in self.signatures],
        }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _default_command(
    result_path: PathLike,
    commitment_path: PathLike,
    watermark_path: PathLike | None,
    pubkey_paths: Sequence[PathLike],
    out_html: PathLike,
    pdf: PathLike | None,
    allow_unverified: bool,
    timing: Sequence[str] = (),
) -> list[str]:
    cmd = ["mapguard", "report", str(result_path), "--commitment", str(commitment_path)]
    if watermark_path is not None:
        cmd += ["--watermark", str(watermark_path)]
    cmd += timing
    for key in pubkey_paths:
        cmd += ["--pubkey", str(key)]
    cmd += ["--out", str(out_html)]
    if pdf is not None:
        cmd += ["--pdf", str(pdf)]
    if allow_unverified:
        cmd.append("--allow-unverified")
    return cmd


def _timing_options(
    timestamp_path: PathLike | None,
    tsa_cert_path: PathLike | None,
    first_seen: str | dt.datetime | None,
) -> list[str]:
    """``--timestamp``, ``--tsa-cert`` and ``--suspect-first-seen`` as given."""
    given = [("--timestamp", timestamp_path), ("--tsa-cert", tsa_cert_path)]
    if isinstance(first_seen, dt.datetime):
        first_seen = first_seen.isoformat().replace("+00:00", "Z")
    given.append(("--suspect-first-seen", first_seen))
    return [str(x) for option, value in given if value is not None for x in (option, value)]


def _key_paths(pubkey_path: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if pubkey_path is None:
        return []
    if isinstance(pubkey_path, str | os.PathLike):
        return [pubkey_path]
    return list(pubkey_path)


def build_report(
    result_path: PathLike,
    commitment_path: PathLike,
    *,
    watermark_path: PathLike | None = None,
    pubkey_path: PathLike | Sequence[PathLike] | None = None,
    out_html: PathLike,
    pdf: PathLike | None = None,
    force: bool = False,
    allow_unverified: bool = False,
    watermark_passphrase: bytes | None = None,
    generated: str | None = None,
    timestamp_path: PathLike | None = None,
    tsa_cert_path: PathLike | None = None,
    suspect_first_seen: str | dt.datetime | None = None,
) -> ReportResult:
    """Write the evidence report on a verification result.

    Args:
        result_path: ``mapguard verify`` output: a DSSE-signed result statement, or plain JSON
            (reported, but marked UNSIGNED).
        commitment_path: The owner's signed commitment (``commitment.dsse.json``).
        watermark_path: The owner's watermark file; adds calibration figures and checks that it
            opens the commitment. Its secrets never enter the report.
        pubkey_path: Public key(s) (PEM) to check the signatures with.
        out_html: Where to write the HTML report.
        pdf: Also write a PDF of the same HTML here (needs WeasyPrint).
        force: Overwrite existing outputs.
        allow_unverified: Write a report even when a signature fails or cannot be checked,
            marked UNVERIFIED in red at the top, instead of refusing.
        watermark_passphrase: Passphrase of an encrypted watermark file.
        generated: Report timestamp (RFC 3339); default now (UTC).
        timestamp_path: An RFC 3161 token on the commitment (``mapguard timestamp``); needs
            ``tsa_cert_path``. Its certified time is shown, with its source, if it verifies.
        tsa_cert_path: The TSA's certificate and its CA chain up to the root (PEM).
        suspect_first_seen: The suspect's first known date (RFC 3339 or ``YYYY-MM-DD``), given
            by the arbiter: the report says whether the certified time predates it.

    Returns:
        A :class:`ReportResult` with the paths, the report's SHA-256 and the signature checks.

    Raises:
        UnverifiedInputError: a signature failed or could not be checked (without
            ``allow_unverified``).
        ReportError: the inputs do not belong together, or PDF rendering is unavailable.
        TimestampError: a malformed ``suspect_first_seen`` or TSA certificate file.
        OutputExistsError: an output exists and ``force`` is false.
    """
    keys = _key_paths(pubkey_path)
    first_seen = suspect_first_seen
    if isinstance(first_seen, str):
        first_seen = timestamps.parse_time(first_seen, what="--suspect-first-seen")
    outputs = [Path(out_html)] + ([Path(pdf)] if pdf is not None else [])
    if len(set(map(os.path.abspath, outputs))) != len(outputs):
        raise ReportError(f"--out and --pdf must differ, both are '{out_html}'")
    for path in outputs:
        check_writable(path, force=force)
    evidence = load_evidence(
        result_path,
        commitment_path,
        watermark_path=watermark_path,
        pubkey_paths=keys,
        watermark_passphrase=watermark_passphrase,
        allow_unverified=allow_unverified,
        timestamp_path=timestamp_path,
        tsa_cert_path=tsa_cert_path,
    )
    timing = _timing_options(timestamp_path, tsa_cert_path, suspect_first_seen)
    command = _default_command(
        result_path, commitment_path, watermark_path, keys, out_html, pdf, allow_unverified,
        timing,
    )  # fmt: skip
    context = build_context(
        evidence,
        generated=generated or _now(),
        report_command=command,
        first_seen=first_seen,
    )
    html = render_html(context).encode("utf-8")
    pdf_bytes = render_pdf(html.decode("utf-8")) if pdf is not None else None
    atomic_write_bytes(out_html, html, force=force)
    if pdf is not None:
        atomic_write_bytes(pdf, pdf_bytes, force=force)
    return ReportResult(
        html_path=Path(out_html),
        pdf_path=Path(pdf) if pdf is not None else None,
        sha256=hashlib.sha256(html).hexdigest(),
        pdf_sha256=hashlib.sha256(pdf_bytes).hexdigest() if pdf_bytes is not None else None,
        signatures=evidence.checks,
        evidenced=evidence.result.predicate["verdict"] == "evidenced",
    )
