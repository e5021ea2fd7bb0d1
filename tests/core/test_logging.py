"""Our logging set-up keeps chatty libraries at WARNING, checked in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.core.helpers import ROOT

RENDER_PDF = textwrap.dedent(
    """
    from app.cli import _configure_logging
    from app.config import Settings
    from app.reports.charts import _figure, render

    _configure_logging(Settings(_env_file=None, log_level="INFO"))
    fig = _figure(4, 3)
    fig.text(0.1, 0.5, "Quality of work — Качество работы")
    data = render(fig, "pdf")
    assert data.startswith(b"%PDF"), data[:10]
    import logging
    logging.getLogger("app").info("rendered")
    """
)


def test_a_pdf_logs_no_glyph_lists() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RENDER_PDF],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "INFO app: rendered" in result.stderr  # our own INFO lines still show
    assert "fontTools" not in result.stderr, result.stderr[:2000]
