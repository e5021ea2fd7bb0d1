"""Every message the rating page and the emails show has a Russian translation."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from app import i18n

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def _msgids() -> set[str]:
    found: set[str] = set()
    # Named by import path: Babel 2.15 (our floor) finds the "jinja2" entry point only
    # through pkg_resources, which a setuptools-free environment lacks.
    jinja2 = "jinja2.ext:babel_extract"
    sources = [
        ("templates/rating", [("**.html", jinja2)]),
        ("templates/email", [("**.html", jinja2), ("**.txt", jinja2)]),
        ("templates/nominations", [("**.html", jinja2)]),
        ("app/ratings", [("**.py", "python")]),
        (
            "app/cycles",
            [("service.py", "python"), ("letters.py", "python"), ("nomination.py", "python")],
        ),
    ]
    for folder, method_map in sources:
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT / folder), method_map=method_map, keywords=KEYWORDS
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.mark.parametrize("lang", ["ru"])
def test_catalog_covers_rating_page_and_emails(lang: str) -> None:
    with (ROOT / "app/i18n" / lang / "LC_MESSAGES/messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    msgids = _msgids()
    assert len(msgids) > 40
    missing = sorted(m for m in msgids if not catalog.get(m) or not catalog.get(m).string)
    assert missing == []


def test_languages_and_fallback() -> None:
    assert {"en", "ru"} <= set(i18n.available_languages())
    assert i18n.normalize_language("ru-RU") == "ru"
    assert i18n.normalize_language("de") == "en"
    assert i18n.gettext_for("ru")("Thank you!") == "Спасибо!"
