"""The legal-evidence report: one self-contained HTML (and PDF) document on a verification.

It states, for readers who are not ML engineers, what was tested, how, with which result and how
to reproduce it. Every number is read from the signed input files (never re-typed), each shown
with the field it came from (``data-field`` / ``data-value`` attributes); the report says which
signatures verified and refuses to report on a file whose signature fails, unless asked to mark it
UNVERIFIED. Its own SHA-256 is returned so that it can be cited in a signed statement.

Example (see ``mapguard report --help`` for the command line)::

    from mapguard.report import build_report
    res = build_report("result.json", "out/commitment.dsse.json", watermark_path="out/owner.wm",
                       pubkey_path="owner.pub", out_html="evidence.html", pdf="evidence.pdf")
    print(res.sha256, [(c.file, c.status) for c in res.signatures])
"""

from mapguard.report._build import ReportResult, build_report
from mapguard.report._errors import ReportError, UnverifiedInputError
from mapguard.report._sources import FAILED, UNCHECKED, UNSIGNED, VERIFIED, SignatureCheck

__all__ = [
    "FAILED",
    "UNCHECKED",
    "UNSIGNED",
    "VERIFIED",
    "ReportError",
    "ReportResult",
    "SignatureCheck",
    "UnverifiedInputError",
    "build_report",
]
