"""The PDF report: rendered offline from the same HTML; it holds the text and the figures."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from mapguard.report import build_report

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed: apt-get install poppler-utils",
)


@pytest.fixture(scope="module")
def pdf_report(report_inputs, tmp_path_factory):
    pytest.importorskip("weasyprint", reason="PDF output needs mapguard[pdf] (WeasyPrint)")
    d = tmp_path_factory.mktemp("pdf")
    res = build_report(
        report_inputs.result,
        report_inputs.commitment,
        watermark_path=report_inputs.watermark,
        pubkey_path=report_inputs.pubkey,
        out_html=d / "evidence.html",
        pdf=d / "evidence.pdf",
    )
    return res, d


def _pages_text(pdf) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return text.split("\f")


def test_pdf_holds_the_text(pdf_report, report_inputs, html_tools):
    res, _ = pdf_report
    assert res.pdf_path.read_bytes().startswith(b"%PDF-")
    text = " ".join(_pages_text(res.pdf_path))
    for heading in (
        "1. Summary",
        "2. Parties",
        "3. Models",
        "4. Commitment",
        "7. Results",
        "8. Figures",
        "9. Chain of custody",
        "10. How to reproduce",
        "11. Limitations",
    ):
        assert heading in text
    parsed = html_tools.parse_report(res.html_path.read_text(encoding="utf-8"))
    for field in ("result:test.pvalue", "result:queries_used", "result:effect.ci_low"):
        shown = next(c.text for c in parsed.cells if c.field == field)
        assert shown in text, field
    assert report_inputs.result_predicate["suspect"]["sha256"][:40] in text.replace("\n", "")


def test_pdf_holds_the_figures(pdf_report):
    res, d = pdf_report
    listing = subprocess.run(
        ["pdfimages", "-list", str(res.pdf_path)], check=True, capture_output=True, text=True
    ).stdout
    rgb = [line for line in listing.splitlines()[2:] if line.split()[2] == "image"]
    assert len(rgb) == 2
    page = next(i for i, t in enumerate(_pages_text(res.pdf_path), 1) if "Figure 1." in t)
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "50",
            "-png",
            "-f",
            str(page),
            "-l",
            str(page),
            str(res.pdf_path),
            str(d / "fig"),
        ],
        check=True,
    )
    (png,) = sorted(d.glob("fig*.png"))
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20  # not blank
    reds = (pixels[..., 0] > 150) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)
    assert reds.sum() > 50  # the secret-trigger bars / observed-statistic lines are drawn


def test_first_page_renders(pdf_report):
    res, d = pdf_report
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(res.pdf_path), str(d / "p1")],
        check=True,
    )
    (png,) = sorted(d.glob("p1*.png"))
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > pixels.shape[1] > 200 and pixels.std() > 10
