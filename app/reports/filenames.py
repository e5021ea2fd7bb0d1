"""Download names of charts and reports: readable, ASCII, and never a database id.

``<cycle>-<department or employee>-<chart>.png``, ``feedback-<employee>-<cycle>.pdf``:
a file saved to a desktop or attached to a mail still says what it is. Names are
transliterated (Russian names are common) so the header needs no RFC 5987 encoding.
"""

from __future__ import annotations

import re
import unicodedata

# Russian (ICAO/passport style, the spelling people see on their own documents).
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        [
            *("a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o"),
            *("p", "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "ie", "y", ""),
            *("e", "iu", "ia"),
        ],
        strict=True,
    )
)
MAX_SLUG = 60


def slug(text: str, *, fallback: str = "unnamed") -> str:
    """Lower-case ASCII words joined by hyphens: "Иван Петров" -> "ivan-petrov"."""
    lowered = "".join(_CYRILLIC.get(ch, ch) for ch in text.lower())
    ascii_text = unicodedata.normalize("NFKD", lowered).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:MAX_SLUG].rstrip("-") or fallback


def chart_filename(cycle: str, subject: str | None, chart: str, fmt: str) -> str:
    """``q3-2026-sales-heatmap.png``; company-wide charts name the company."""
    return f"{slug(cycle)}-{slug(subject or 'company')}-{chart}.{fmt}"


def report_filename(employee: str, cycle: str) -> str:
    return f"feedback-{slug(employee)}-{slug(cycle)}.pdf"


def reports_zip_filename(department: str, cycle: str) -> str:
    return f"feedback-{slug(department)}-{slug(cycle)}.zip"
