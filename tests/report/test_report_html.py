"""The HTML report: every section in order, every number equal to the one in the signed files."""

from __future__ import annotations

import hashlib
import json

import pytest

from mapguard.report import UNSIGNED, VERIFIED, build_report
from protocols import canonical

GENERATED = "2025-03-02T09:00:00Z"


@pytest.fixture(scope="module")
def report(report_inputs, tmp_path_factory, html_tools):
    out = tmp_path_factory.mktemp("report") / "evidence.html"
    res = build_report(
        report_inputs.result,
        report_inputs.commitment,
        watermark_path=report_inputs.watermark,
        pubkey_path=report_inputs.pubkey,
        out_html=out,
        generated=GENERATED,
    )
    html = out.read_text(encoding="utf-8")
    return res, html, html_tools.parse_report(html)


def test_sections_are_all_present_in_order(report, html_tools):
    _, _, parsed = report
    assert parsed.sections == html_tools.SECTIONS


def test_every_number_is_the_one_in_the_files(report, report_inputs, html_tools):
    _, _, parsed = report
    docs = {
        "result": report_inputs.result_predicate,
        "commitment": report_inputs.commitment_predicate,
    }
    checked = 0
    for cell in parsed.cells:
        source, _, path = cell.field.partition(":")
        if source not in docs:
            continue
        value = html_tools.lookup(docs[source], path)
        assert json.loads(cell.raw) == value, cell.field
        assert html_tools.shown_matches(cell, value), (cell.field, cell.text, value)
        checked += 1
    assert checked > 40


@pytest.mark.parametrize(
    "field",
    [
        "result:test.pvalue",
        "result:test.statistic",
        "result:test.alpha",
        "result:queries_used",
        "result:effect.estimate",
        "result:effect.ci_low",
        "result:effect.ci_high",
        "result:test.per_secret[0].rank",
        "result:test.per_secret[1].pvalue",
        "result:suspect.sha256",
        "commitment:model.sha256",
        "commitment:owner_key_fingerprint",
        "commitment:created",
    ],
)
def test_key_numbers_are_shown(report, report_inputs, html_tools, field):
    _, _, parsed = report
    shown = [c for c in parsed.cells if c.field == field]
    assert shown, f"{field} is not shown"
    source, _, path = field.partition(":")
    doc = (
        report_inputs.result_predicate if source == "result" else report_inputs.commitment_predicate
    )
    assert all(json.loads(c.raw) == html_tools.lookup(doc, path) for c in shown)


def test_pvalue_text_is_exactly_readable(report, report_inputs, html_tools):
    _, _, parsed = report
    (first, *_) = [c for c in parsed.cells if c.field == "result:test.pvalue"]
    assert float(first.text) == pytest.approx(
        report_inputs.result_predicate["test"]["pvalue"], rel=5e-4
    )


def test_signature_checks_are_stated(report):
    res, _, parsed = report
    assert [c.status for c in res.signatures] == [VERIFIED] * 3
    assert [row[2] for row in parsed.check_rows] == [VERIFIED] * 3
    assert not parsed.banners


def test_sha256_is_the_file_digest(report):
    res, html, _ = report
    assert res.sha256 == hashlib.sha256(html.encode("utf-8")).hexdigest()
    assert res.sha256 == hashlib.sha256(res.html_path.read_bytes()).hexdigest()


def test_self_contained_no_scripts_no_external_urls(report):
    _, html, parsed = report
    assert "script" not in parsed.tags
    assert len(parsed.images) == 2 and all(
        s.startswith("data:image/png;base64,") for s in parsed.images
    )
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert 'src="http' not in html and "href=" not in html


def test_secrets_and_nonces_never_appear(report, report_inputs):
    _, html, _ = report
    wm = report_inputs.watermark_doc
    secrets = [s["secret"] for s in wm["secrets"]] + [o["nonce"] for o in wm["openings"].values()]
    assert secrets and not any(s in html for s in secrets)
    assert wm["verification_set"]["inline"]["images"][:64] not in html


def test_same_inputs_give_the_same_bytes(report, report_inputs, tmp_path):
    res, _, _ = report
    again = build_report(
        report_inputs.result,
        report_inputs.commitment,
        watermark_path=report_inputs.watermark,
        pubkey_path=report_inputs.pubkey,
        out_html=res.html_path,
        generated=GENERATED,
        force=True,
    )
    assert again.sha256 == res.sha256


def test_unsigned_result_is_marked(report_inputs, tmp_path, html_tools):
    res = build_report(
        report_inputs.result_plain,
        report_inputs.commitment,
        pubkey_path=report_inputs.pubkey,
        out_html=tmp_path / "r.html",
    )
    parsed = html_tools.parse_report(res.html_path.read_text(encoding="utf-8"))
    assert res.signatures[0].status == UNSIGNED
    assert [lvl for lvl, text in parsed.banners if text.startswith("UNSIGNED")] == ["warning"]
    assert parsed.sections == html_tools.SECTIONS


def test_autoescape(report_inputs, tmp_path, html_tools):
    from protocols import dsse, statements

    evil = "<script>alert(1)</script>.pt"
    predicate = json.loads(json.dumps(report_inputs.result_predicate))
    predicate["suspect"]["name"] = evil
    stmt = statements.make_statement(
        subjects=[(evil, predicate["suspect"]["sha256"])],
        predicate_type=statements.RESULT_PREDICATE_TYPE,
        predicate=predicate,
    )
    dsse.write_envelope(
        tmp_path / "evil.json", statements.sign_statement(stmt, report_inputs.private_key)
    )
    res = build_report(
        tmp_path / "evil.json",
        report_inputs.commitment,
        pubkey_path=report_inputs.pubkey,
        out_html=tmp_path / "r.html",
    )
    html = res.html_path.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.pt" in html
    parsed = html_tools.parse_report(html)
    assert evil in [c.text for c in parsed.cells if c.field == "result:suspect.name"]


def test_existing_output_needs_force(report_inputs, tmp_path):
    from protocols.errors import OutputExistsError

    out = tmp_path / "r.html"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError):
        build_report(
            report_inputs.result,
            report_inputs.commitment,
            pubkey_path=report_inputs.pubkey,
            out_html=out,
        )
    assert out.read_text() == "keep me"


def test_result_for_another_commitment_is_refused(report_inputs, tmp_path):
    from mapguard.report import ReportError

    predicate = json.loads(json.dumps(report_inputs.result_predicate))
    predicate["watermark"]["commitment_digest"] = "ab" * 32
    canonical.write_json(tmp_path / "other.json", predicate)
    with pytest.raises(ReportError, match="commitment"):
        build_report(
            tmp_path / "other.json",
            report_inputs.commitment,
            pubkey_path=report_inputs.pubkey,
            out_html=tmp_path / "r.html",
        )
    assert not (tmp_path / "r.html").exists()


def test_verdicts_are_stated_in_plain_language(report, report_inputs, tmp_path, html_tools):
    _, html, parsed = report
    assert report_inputs.result_predicate["verdict"] == "evidenced"
    assert "Ownership EVIDENCED at significance level" in parsed.text
    assert "What this does NOT mean" in parsed.text
    res = build_report(
        report_inputs.result_independent,
        report_inputs.commitment,
        pubkey_path=report_inputs.pubkey,
        out_html=tmp_path / "independent.html",
    )
    independent = html_tools.parse_report(res.html_path.read_text(encoding="utf-8"))
    assert report_inputs.independent_predicate["verdict"] == "not_evidenced" and not res.evidenced
    assert "Ownership NOT evidenced at significance level" in independent.text
    assert "does not show that the suspect is independent" in independent.text
    assert independent.sections == html_tools.SECTIONS
    pvalues = [c for c in independent.cells if c.field == "result:test.pvalue"]
    assert pvalues and all(
        json.loads(c.raw) == report_inputs.independent_predicate["test"]["pvalue"] for c in pvalues
    )


def test_suspect_loading_is_shown_and_unsafe_load_is_flagged(report_inputs, tmp_path, html_tools):
    from click.testing import CliRunner

    from mapguard._cli import cli

    def render(result):
        res = build_report(
            result,
            report_inputs.commitment,
            pubkey_path=report_inputs.pubkey,
            out_html=tmp_path / f"{result.stem}.html",
        )
        return res.html_path.read_text(encoding="utf-8")

    safe = render(report_inputs.result_plain)  # the TorchScript suspect, via the isolated worker
    assert "isolated worker" in safe and "UNSAFE LOAD" not in safe
    unsafe = tmp_path / "unsafe.json"
    args = [report_inputs.dir / "suspect.ts", "--watermark", report_inputs.watermark]
    args += ["--unsafe-load", "--claim-nonce", "report-claim", "--out", unsafe]
    res = CliRunner().invoke(cli, ["verify", *map(str, args)])
    assert res.exit_code in (0, 1), res.output
    parsed = html_tools.parse_report(render(unsafe))
    assert [lvl for lvl, text in parsed.banners if text.startswith("UNSAFE LOAD")] == ["danger"]


def test_exploratory_results_are_flagged_and_preregistered_ones_say_so(
    report_inputs, tmp_path, html_tools
):
    from click.testing import CliRunner

    from mapguard._cli import cli

    def render(result):
        res = build_report(result, report_inputs.commitment, pubkey_path=report_inputs.pubkey,
                           out_html=tmp_path / f"{result.stem}.html")  # fmt: skip
        return res.html_path.read_text(encoding="utf-8")

    assert "legacy commitment" in render(report_inputs.result_plain)  # the fixture is v1
    out = tmp_path / "exploratory.json"
    args = [report_inputs.dir / "suspect.ts", "--watermark", report_inputs.watermark,
            "--exploratory", "--null-keys", "5", "--out", out]  # fmt: skip
    res = CliRunner().invoke(cli, ["verify", *map(str, args)])
    assert res.exit_code in (0, 1), res.output
    parsed = html_tools.parse_report(render(out))
    assert [lvl for lvl, text in parsed.banners if text.startswith("EXPLORATORY")] == ["danger"]
