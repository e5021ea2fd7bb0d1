"""Field rules for everything HR or the HRIS sends us: ids, names, emails, languages.

Each rule is written once, here, and reaches every entry point through the row models
(``app.uploads.rows``): the JSON API, the CSV/XLSX import and the HR forms. Rules give
the problem as a phrase ("is not an email address"); the caller prefixes the field name.
"""

from __future__ import annotations

import re
from typing import Any

EXTERNAL_ID_MAX = 100
EMAIL_MAX = 320
NAME_MAX = 200
DESCRIPTION_MAX = 4000
INDICATOR_MAX = 300
INDICATORS_MAX_COUNT = 20
CODE_MAX = 50
DEFAULT_LANGUAGE = "en"

# Deliberately simple: the HRIS owns addresses; we only refuse what cannot be an address
# (an import checks 50,000 of them, so no DNS or full RFC 5322 parsing here).
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,4})?$")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# NUL and other control characters break PostgreSQL text or hide in a name; lone
# surrogates (possible in JSON "\ud800") cannot be encoded as UTF-8 at all.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LINE_BREAK_RE = re.compile(r"[\r\n\t\u2028\u2029]")
# Either of the two: one search decides for the usual clean value.
_SUSPECT_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff\u2028\u2029]")

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "active", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "inactive", "off"})
# What a spreadsheet would run as a formula; our CSV exports prefix such cells with '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_problem(value: str, *, max_length: int, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable as stored text, or None when it is."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if not _SUSPECT_RE.search(value):
        return None
    if _CONTROL_RE.search(value):
        return "must not contain control characters"
    if not multiline and _LINE_BREAK_RE.search(value):
        return "must be a single line"
    return None


def external_id_problem(value: str) -> str | None:
    """Why ``value`` is not a usable external id (the HRIS's key), or None."""
    if not value:
        return "is required"
    if value != value.strip():
        return "must not start or end with spaces"
    if "/" in value:
        return "must not contain '/'"
    return text_problem(value, max_length=EXTERNAL_ID_MAX)


def email_problem(value: str) -> str | None:
    """Why ``value`` (already normalised) is not an email address, or None."""
    if not value:
        return "is required"
    problem = text_problem(value, max_length=EMAIL_MAX)
    if problem:
        return problem
    if not EMAIL_RE.match(value):
        return "is not an email address"
    return None


def language_problem(value: str) -> str | None:
    """Why ``value`` (already normalised) is not a language tag, or None."""
    if len(value) > 8 or not LANGUAGE_RE.match(value):
        return "must be a language tag such as 'en', 'ru' or 'pt-br'"
    return None


def code_problem(value: str) -> str | None:
    """Why ``value`` is not a competency code, or None."""
    if not value or len(value) > CODE_MAX or not CODE_RE.match(value):
        return f"must be 1-{CODE_MAX} lower-case letters, digits, '_', '.' or '-'"
    return None


def normalize_email(value: str) -> str:
    """Emails are unique case-insensitively, so they are stored lower-cased."""
    return value.strip().lower()


def normalize_language(value: str | None) -> str:
    """``pt_BR`` -> ``pt-br``; empty -> the default language."""
    return (value or "").strip().replace("_", "-").lower() or DEFAULT_LANGUAGE


def cell_text(value: Any) -> str | None:
    """A text cell as sent: trimmed, "" read as absent, JSON integers as text.

    Raises ValueError for anything else (a list, an object, a float, a boolean).
    """
    if type(value) is str:
        value = value.strip()
        # Our CSV exports prefix formula-like cells with ' (spreadsheet injection guard);
        # drop it again so an exported file can be uploaded as is.
        if value[:1] == "'" and value[1:2] in FORMULA_STARTS:
            value = value[1:]
        return value or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a string")
    return str(value)


def cell_bool(value: Any, *, default: bool) -> bool:
    """A yes/no cell: booleans, 0/1, and the words people write in spreadsheets."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return default
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("must be true or false")


def spreadsheet_safe(value: str | None) -> str:
    """A cell that a spreadsheet will show as text, never run as a formula."""
    text = value or ""
    return "'" + text if text[:1] in FORMULA_STARTS else text
