"""Dates and times for people: one place that turns stored UTC into the organisation's
time zone and formats it in one way per language (Babel's locale patterns).

Both databases store naive UTC (see ``app.db.utcnow``); forms take local wall-clock
times in the organisation's zone and store UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_format_date
from babel.dates import format_time as babel_format_time
from babel.dates import get_datetime_format

from app import i18n


@lru_cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def to_local(value: datetime, tz: str) -> datetime:
    """A stored (naive UTC) or aware datetime as wall-clock time in ``tz``."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(zone(tz))


def to_utc(local: datetime, tz: str) -> datetime:
    """A wall-clock time typed in ``tz`` (naive) as naive UTC for the database."""
    aware = local if local.tzinfo else local.replace(tzinfo=zone(tz))
    return aware.astimezone(UTC).replace(tzinfo=None)


def format_date(value: date | datetime, lang: str, tz: str = "UTC") -> str:
    """E.g. ``Mar 17, 2026`` in English, ``17 мар. 2026 г.`` in Russian."""
    if isinstance(value, datetime):
        value = to_local(value, tz).date()
    return str(babel_format_date(value, "medium", locale=i18n.normalize_language(lang)))


def format_datetime(value: datetime, lang: str, tz: str = "UTC") -> str:
    """E.g. ``Mar 17, 2026, 2:30 PM`` in English, ``17 мар. 2026 г., 14:30`` in Russian."""
    locale = i18n.normalize_language(lang)
    local = to_local(value, tz)
    time_text = babel_format_time(local.time(), "short", locale=locale)
    date_text = babel_format_date(local.date(), "medium", locale=locale)
    pattern = str(get_datetime_format("medium", locale=locale)).replace("'", "")
    return pattern.replace("{0}", str(time_text)).replace("{1}", str(date_text))


def input_value(value: datetime, tz: str) -> str:
    """The value of a ``datetime-local`` input showing a stored time in ``tz``."""
    return to_local(value, tz).strftime("%Y-%m-%dT%H:%M")
