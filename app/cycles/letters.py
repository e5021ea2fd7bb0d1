"""Printable letters for the paper channel: one A4 page per person (fpdf2 + segno).

Each page holds the person's name, how to take part, their one-time code and a QR code
of the code-entry address (the address only: a code in a URL would end up in a phone's
history and in proxy logs). Text is set in DejaVu Sans, shipped with matplotlib, so
Cyrillic names print too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import matplotlib
import segno
from fpdf import FPDF

from app import dates, i18n
from app.cycles.paper import Letter, display_code

FONT = "DejaVu"
_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
QR_SIZE_MM = 45.0


def code_entry_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/code"


def _draw_qr(pdf: FPDF, url: str, *, x: float, y: float, size: float) -> None:
    """The QR code as filled squares: vector, sharp at any printer resolution."""
    qr = segno.make(url, error="m", micro=False)
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=4)]
    module = size / len(rows)
    pdf.set_fill_color(0, 0, 0)
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                pdf.rect(x + start * module, y + r * module, (c - start) * module, module, "F")
            else:
                c += 1


def render_letters(
    letters: Sequence[Letter],
    *,
    cycle_name: str,
    closes_at: datetime,
    base_url: str,
    tz: str = "UTC",
) -> bytes:
    """The department's PDF: one page per letter, each in the person's language."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(auto=False)
    pdf.set_margins(20, 20, 20)
    pdf.add_font(FONT, "", str(_FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(_FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.add_font("DejaVuMono", "B", str(_FONT_DIR / "DejaVuSansMono-Bold.ttf"))
    pdf.set_title(f"Peer360 {cycle_name}")
    pdf.set_creator("Peer360")
    url = code_entry_url(base_url)
    width = pdf.epw
    for letter in letters:
        lang = i18n.normalize_language(letter.language)
        _ = i18n.gettext_for(lang)
        closes = dates.format_datetime(closes_at, lang, tz) + f" ({tz})"
        pdf.add_page()
        pdf.set_font(FONT, "", 10)
        pdf.cell(width, 6, _("Personal and confidential"), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font(FONT, "B", 18)
        pdf.multi_cell(width, 9, letter.full_name, new_x="LMARGIN", new_y="NEXT")
        if letter.department:
            pdf.set_font(FONT, "", 11)
            pdf.multi_cell(width, 6, letter.department, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
        pdf.set_font(FONT, "", 12)
        intro = _(
            "Please rate the colleagues whose work you rely on (%(cycle)s). Your answers "
            "are anonymous: nobody, HR included, can see who gave them."
        ) % {"cycle": cycle_name}
        pdf.multi_cell(width, 6.5, intro, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        steps = [
            _("1. On any phone or computer, or on the kiosk at work, open: %(url)s") % {"url": url},
            _("2. Type the code below (capital letters or small, dashes optional)."),
            _("3. Rate each colleague and press Submit. The code works only once."),
            _("Open until: %(date)s") % {"date": closes},
        ]
        for step in steps:
            pdf.multi_cell(width, 6.5, step, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(8)
        pdf.set_font(FONT, "", 11)
        pdf.cell(width, 6, _("Your personal code:"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVuMono", "B", 26)
        pdf.cell(width, 14, display_code(letter.code), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        top = pdf.get_y()
        _draw_qr(pdf, url, x=pdf.l_margin, y=top, size=QR_SIZE_MM)
        pdf.set_xy(pdf.l_margin + QR_SIZE_MM + 6, top + 4)
        pdf.set_font(FONT, "", 10)
        pdf.multi_cell(
            width - QR_SIZE_MM - 6,
            5.5,
            _("Scan this to open the page, then type your code."),
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.set_y(top + QR_SIZE_MM + 8)
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(
            width,
            5,
            _(
                "Keep this letter to yourself: whoever has the code can answer in your "
                "name. If the code does not work, ask HR for a new letter."
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    return bytes(pdf.output())
