"""``mapguard demo --remote``'s step: the stolen copy served over HTTP on 127.0.0.1, verified
through the endpoint, and the report built on that result (endpoint and query log shown)."""

from __future__ import annotations

from mapguard._progress import console
from mapguard.demo import verify_served
from mapguard.report import build_report


def test_served_copy_is_evidenced_and_the_report_shows_the_endpoint(embedded, tmp_path) -> None:
    with console.capture() as captured:
        served = verify_served(embedded.out, embedded.owner.private, out=tmp_path)
    out = " ".join(captured.get().split())
    assert served["evidenced"] is True and "OWNERSHIP EVIDENCED" in out
    assert served["endpoint"].startswith("http://127.0.0.1:") and served["query_log"].is_file()
    res = build_report(
        served["out"],
        embedded.file("commitment.dsse.json"),
        watermark_path=embedded.file("owner.wm"),
        pubkey_path=embedded.owner.public,
        out_html=tmp_path / "evidence.html",
    )
    html = res.html_path.read_text(encoding="utf-8")
    assert served["endpoint"] in html and served["query_log"].name in html
    assert "Query log (the suspect is a remote endpoint)" in html
