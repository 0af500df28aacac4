"""Render the context to HTML (Jinja2, autoescaping on) and HTML to PDF (WeasyPrint)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import jinja2

from mapguard.report._errors import ReportError

__all__ = ["TEMPLATE", "render_html", "render_pdf"]

TEMPLATE = "report.html.j2"
PDF_HINT = "pip install 'mapguard[pdf]' and the Pango/HarfBuzz system libraries"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mapguard.report", "templates"),
        autoescape=True,  # every value is escaped, whatever the template name
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def render_html(context: dict[str, Any]) -> str:
    """The report as one self-contained HTML document."""
    return _environment().get_template(TEMPLATE).render(**context)


def _offline_fetcher(weasyprint: Any) -> Any:
    """A URL fetcher that resolves only ``data:`` URIs: the report never reaches out."""
    fetcher_class = getattr(weasyprint.urls, "URLFetcher", None)
    if fetcher_class is not None:  # WeasyPrint >= 66
        return fetcher_class(allowed_protocols={"data"}, fail_on_errors=True)

    def fetch(url: str, *args: Any, **kwargs: Any) -> Any:  # older WeasyPrint
        if not url.startswith("data:"):
            raise ReportError(f"the report refers to an external resource {url!r}")
        return weasyprint.default_url_fetcher(url, *args, **kwargs)

    return fetch


def render_pdf(html: str) -> bytes:
    """The PDF of ``html`` (fonts embedded, no network).

    Raises:
        ReportError: WeasyPrint or its system libraries are missing.
    """
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"PDF output needs WeasyPrint ({first}); {PDF_HINT}") from None
    for name in ("weasyprint", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    fatal = getattr(weasyprint.urls, "FatalURLFetchingError", ReportError)
    document = weasyprint.HTML(string=html, url_fetcher=_offline_fetcher(weasyprint))
    try:
        return document.write_pdf()
    except fatal as exc:
        raise ReportError(f"the report refers to an external resource: {exc}") from None
