"""Dates for people: the organisation's time zone, one format per language, forms that
read times in that zone, and the local outbox that says what it did."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import dates
from app.config import Settings
from app.cycles import rhythm
from app.cycles.models import Cycle
from app.db import utcnow
from app.mail import sender
from app.mail.models import OutboxMessage
from tests.auth.helpers import sign_in
from tests.cycles.helpers import launched_cycle, links_by_customer, make_company, token_of
from tests.cycles.test_rhythm import RHYTHM

MOSCOW = "Europe/Moscow"  # UTC+3 all year


def plain(text: str) -> str:
    """CLDR puts narrow no-break spaces in some patterns; compare with plain ones."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"org_time_zone": MOSCOW})


def test_unknown_zone_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="IANA time zone"):
        Settings(_env_file=None, org_time_zone="Mars/Olympus_Mons")  # type: ignore[call-arg]
    assert Settings(_env_file=None).org_time_zone == "UTC"  # type: ignore[call-arg]


def test_one_format_per_language_in_the_org_zone() -> None:
    stored = datetime(2026, 3, 17, 11, 30)  # naive UTC, as the database keeps it
    assert plain(dates.format_datetime(stored, "ru", MOSCOW)) == "17 мар. 2026 г., 14:30"
    assert plain(dates.format_datetime(stored, "en", MOSCOW)) == "Mar 17, 2026, 2:30 PM"
    assert plain(dates.format_datetime(stored, "en")) == "Mar 17, 2026, 11:30 AM"
    # Late evening UTC is already the next day in Moscow.
    assert plain(dates.format_date(datetime(2026, 3, 17, 22, 0), "ru", MOSCOW)) == (
        "18 мар. 2026 г."
    )
    assert dates.format_date(date(2026, 7, 1), "en", MOSCOW) == "Jul 1, 2026"
    assert dates.to_utc(datetime(2026, 3, 17, 14, 30), MOSCOW) == stored
    assert dates.input_value(stored, MOSCOW) == "2026-03-17T14:30"


def test_cycle_form_reads_and_shows_times_in_the_org_zone(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    form = client.get("/cycles/new")
    assert form.status_code == 200
    assert f"Opens ({MOSCOW})" in form.text and f"Closes ({MOSCOW})" in form.text
    data = {
        "csrf_token": signed.csrf,
        "name": "Moscow 2031",
        "period_start": "2031-01-01",
        "period_end": "2031-03-31",
        "opens_at": "2031-03-20T09:00",
        "closes_at": "2031-04-10T18:00",
        "scale_min": "1",
        "scale_max": "10",
    }
    r = client.post("/cycles/new", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    cycle = db.scalar(select(Cycle).where(Cycle.name == "Moscow 2031"))
    assert cycle is not None
    # Stored as UTC: 09:00 in Moscow is 06:00 UTC.
    assert (cycle.opens_at, cycle.closes_at) == (
        datetime(2031, 3, 20, 6),
        datetime(2031, 4, 10, 15),
    )
    detail = plain(client.get(f"/cycles/{cycle.id}").text)
    assert f"Open ({MOSCOW})" in detail
    assert "Mar 20, 2031, 9:00 AM – Apr 10, 2031, 6:00 PM" in detail
    assert "Jan 1, 2031 – Mar 31, 2031" in detail
    listing = client.get("/cycles").text
    assert f"Open ({MOSCOW})" in listing and "Mar 20, 2031 – Apr 10, 2031" in listing


def test_russian_rater_sees_closing_time_in_russian_and_the_org_zone(
    client: TestClient, db: Session, settings: Settings
) -> None:
    company = make_company(db, suppliers=1, customers=1, language="ru")
    closes = (utcnow() + timedelta(days=10)).replace(hour=20, minute=15, second=0, microsecond=0)
    cycle = launched_cycle(db, settings, closes_at=closes)
    link = links_by_customer(db, cycle)[company.customers[0].id]
    # The invitation email says it in the same words.
    mail = db.scalar(select(OutboxMessage).where(OutboxMessage.kind == "invitation"))
    assert mail is not None
    shown = dates.format_datetime(closes, "ru", MOSCOW)
    assert plain(shown).endswith("г., 23:15")
    assert f"Открыто до {shown} ({MOSCOW})." in mail.body_text
    client.get("/r/" + token_of(link), follow_redirects=False)
    page = client.get("/rate")
    assert page.status_code == 200 and '<html lang="ru">' in page.text
    assert f"{shown} ({MOSCOW})" in page.text
    assert "UTC" not in page.text


def test_local_outbox_says_kept_locally_not_sent(
    client: TestClient, db: Session, settings: Settings
) -> None:
    make_company(db, suppliers=1, customers=1)
    launched_cycle(db, settings)
    sign_in(client, db)
    factory = sessionmaker(bind=db.connection(), join_transaction_mode="create_savepoint")
    assert sender.deliver_due(factory, settings).sent == 1
    db.expire_all()
    page = client.get("/outbox").text
    assert "kept locally, not sent" in page and "Kept locally, not sent" in page
    assert ">sent<" not in page and ">Sent<" not in page
    assert f"Queued ({MOSCOW})" in page


def test_rhythm_review_email_dates_in_the_org_zone(db: Session) -> None:
    rhythm.update_rhythm(db, fields=RHYTHM, actor="test")
    plan = rhythm.plan_for(rhythm.get_rhythm(db), 2027, 1)
    assert plan.opens_at == datetime(2027, 3, 17)  # midnight UTC: still the 16th in New York
    rhythm._create(
        db,
        plan=plan,
        rhythm=rhythm.get_rhythm(db),
        now=plan.create_at,
        hr=[("hr@example.com", "HR")],
        tz="America/New_York",
    )
    mail = db.scalar(select(OutboxMessage).where(OutboxMessage.kind == "rhythm"))
    assert mail is not None
    assert "opens on its own on Mar 16, 2027" in mail.body_text
