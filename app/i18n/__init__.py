"""Message catalogs (gettext via Babel). Adding a language is adding a catalog.

Catalogs live in ``app/i18n/<lang>/LC_MESSAGES/messages.po`` and are compiled in
memory on first use, so no build step or committed binary is needed.
"""

from __future__ import annotations

import gettext
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

CATALOG_DIR = Path(__file__).resolve().parent
DEFAULT_LANGUAGE = "en"


@lru_cache
def available_languages() -> list[str]:
    # Cached: a launch asks once per customer, and the catalogs ship with the code.
    langs = {DEFAULT_LANGUAGE}
    for po in CATALOG_DIR.glob("*/LC_MESSAGES/messages.po"):
        langs.add(po.parent.parent.name)
    return sorted(langs)


def normalize_language(value: str | None) -> str:
    """The best catalog for a language tag such as ``ru-RU``; English otherwise."""
    if not value:
        return DEFAULT_LANGUAGE
    base = value.strip().replace("_", "-").split("-")[0].lower()
    return base if base in available_languages() else DEFAULT_LANGUAGE


@lru_cache
def translations(lang: str) -> gettext.NullTranslations:
    po_path = CATALOG_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return gettext.NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_for(lang: str) -> Any:
    return translations(normalize_language(lang)).gettext


def jinja_callables(lang: str) -> dict[str, Any]:
    """``_``/``gettext``/``ngettext`` for a template context (newstyle: %-formatting)."""
    t = translations(normalize_language(lang))

    def _gettext(message: str, **variables: Any) -> str:
        text = t.gettext(message)
        return text % variables if variables else text

    def _ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        return t.ngettext(singular, plural, num) % variables

    return {"_": _gettext, "gettext": _gettext, "ngettext": _ngettext}
