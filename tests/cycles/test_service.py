"""Cycles: creating, launching (snapshot, invitations, outbox), progress, reminders."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import (
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
    Invitation,
)
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.mail import service as mail_service
from app.mail.models import OutboxMessage, OutboxStatus
from app.matrix.models import MatrixLink
from app.ratings import service as ratings_service
from tests.cycles.helpers import (
    answers_for,
    invitation_of,
    launched_cycle,
    links_by_customer,
    make_company,
    make_cycle,
)
from tests.factories import link, make_competency, make_employee


def count(session: Session, model: type, *where: object) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


# --- creating ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026Q4", "2026-Q4", "2026q4", " 2026-q4 "])
def test_create_quarter_cycle_accepts_both_spellings(db: Session, text: str) -> None:
    now = datetime(2026, 11, 1, 9, 30)
    cycle = cycles_service.create_quarter_cycle(db, quarter=text, now=now)
    assert cycle.name == "2026-Q4"
    assert (cycle.period_start, cycle.period_end) == (date(2026, 10, 1), date(2026, 12, 31))
    assert cycle.state == CycleState.draft
    # Opens two weeks before the quarter ends, runs three weeks.
    assert cycle.opens_at == datetime(2026, 12, 17)
    assert cycle.closes_at == cycle.opens_at + timedelta(days=21)


def test_create_quarter_cycle_for_a_past_quarter_opens_now(db: Session) -> None:
    now = datetime(2027, 2, 10, 8, 0)
    cycle = cycles_service.create_quarter_cycle(db, quarter="2026Q3", now=now)
    assert cycle.period_end == date(2026, 9, 30)
    assert cycle.opens_at == now
    assert cycle.closes_at == now + timedelta(days=21)


@pytest.mark.parametrize("text", ["", "2026", "2026Q5", "2026Q0", "Q4-2026", "1999Q1", "2026-Q4x"])
def test_create_quarter_cycle_rejects_bad_strings(db: Session, text: str) -> None:
    with pytest.raises(Invalid) as err:
        cycles_service.create_quarter_cycle(db, quarter=text)
    assert err.value.errors and err.value.errors[0]["field"] == "quarter"


def test_create_quarter_cycle_twice_is_a_conflict(db: Session) -> None:
    cycles_service.create_quarter_cycle(db, quarter="2030Q1")
    with pytest.raises(Conflict, match="2030-Q1 already exists"):
        cycles_service.create_quarter_cycle(db, quarter="2030-Q1")


def test_create_cycle_validates_dates_and_scale(db: Session) -> None:
    now = utcnow()
    with pytest.raises(Invalid) as err:
        cycles_service.create_cycle(
            db,
            name="bad",
            period_start=date(2026, 3, 31),
            period_end=date(2026, 1, 1),
            opens_at=now,
            closes_at=now - timedelta(days=1),
            scale_min=5,
            scale_max=5,
        )
    fields = {e["field"] for e in err.value.errors or []}
    assert fields == {"period_end", "closes_at", "scale_max"}


# --- launch ------------------------------------------------------------------------------


def test_launch_snapshots_and_invites_each_customer_once(db: Session, settings: Settings) -> None:
    company = make_company(db, suppliers=2, customers=3, competencies=2)
    lonely = make_employee(db)  # no supplier: not invited
    cycle = launched_cycle(db, settings)

    assert cycle.state == CycleState.open and cycle.launched_at is not None
    assert count(db, CyclePair, CyclePair.cycle_id == cycle.id) == 6
    assert count(db, CycleCompetency, CycleCompetency.cycle_id == cycle.id) == 2
    assert count(db, CycleEmployee, CycleEmployee.cycle_id == cycle.id) == 5
    assert count(db, CycleDepartment, CycleDepartment.cycle_id == cycle.id) >= 2
    invitations = db.scalars(select(Invitation).where(Invitation.cycle_id == cycle.id)).all()
    assert sorted(i.customer_id for i in invitations) == sorted(c.id for c in company.customers)
    assert lonely.id not in {i.customer_id for i in invitations}
    assert all(i.token_hash and len(i.token_hash) == 64 and not i.used for i in invitations)

    messages = db.scalars(
        select(OutboxMessage).where(OutboxMessage.tag == f"cycle:{cycle.id}")
    ).all()
    assert len(messages) == 3
    for message in messages:
        assert message.kind == "invitation" and message.status == OutboxStatus.pending
        link = mail_service.open_link(settings.secret_key, message.secret_link)
        assert link and link.startswith("http://testserver/r/")
        assert "/r/" not in (message.secret_link or "")  # stored encrypted
        # The bodies hold a placeholder; the link itself lives only in secret_link.
        assert link not in message.body_text
        assert "[[private-link]]" in message.body_text
        assert "[[private-link]]" in (message.body_html or "")
        assert "2 colleagues" in message.body_text
    # One text for the three (same language, same count), stored once with the name
    # left as a placeholder; each message reads with its own name.
    assert len({message.body_id for message in messages}) == 1
    assert mail_service.NAME_PLACEHOLDER in messages[0].body.body_text
    assert {m.to_name for m in messages} == {c.full_name for c in company.customers}
    assert all(f"Hello {m.to_name}," in m.body_text for m in messages)
    # Only the hash of each token is stored.
    hashes = {i.token_hash for i in invitations}
    tokens = [link.rsplit("/", 1)[1] for link in links_by_customer(db, cycle).values()]
    assert {cycles_service.hash_link_token(t) for t in tokens} == hashes
    assert all(len(t) >= 43 for t in tokens)  # 32 random bytes, URL-safe


def test_launch_uses_only_active_employees_and_competencies(
    db: Session, settings: Settings
) -> None:
    company = make_company(db, suppliers=1, customers=2)
    leaver = make_employee(db, active=False)
    link(db, supplier=company.suppliers[0], customer=leaver)
    make_competency(db, active=False)
    cycle = launched_cycle(db, settings)
    assert count(db, Invitation, Invitation.cycle_id == cycle.id) == 2
    assert count(db, CycleCompetency, CycleCompetency.cycle_id == cycle.id) == 2
    assert count(db, CycleEmployee, CycleEmployee.employee_id == leaver.id) == 0


def test_launching_twice_does_nothing_the_second_time(db: Session, settings: Settings) -> None:
    make_company(db)
    cycle = launched_cycle(db, settings)
    before = (count(db, Invitation), count(db, OutboxMessage), count(db, CyclePair))
    again = cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    assert again.state == CycleState.open
    assert (count(db, Invitation), count(db, OutboxMessage), count(db, CyclePair)) == before


def test_snapshot_is_not_changed_by_later_edits(db: Session, settings: Settings) -> None:
    company = make_company(db, suppliers=1, customers=2, competencies=1)
    cycle = launched_cycle(db, settings)
    supplier = company.suppliers[0]
    # After launch HR renames, reorganises and edits the matrix and competencies.
    supplier.full_name = "Renamed Person"
    company.competencies[0].name = "Renamed competency"
    company.competencies[0].weight = 9
    db.execute(MatrixLink.__table__.delete())
    newcomer = make_employee(db)
    link(db, supplier=supplier, customer=newcomer)
    make_competency(db, name="Brand new")
    db.flush()

    invitation = invitation_of(db, cycle, company.customers[0])
    form = ratings_service.load_rating_form(db, invitation_id=invitation.id)
    assert [s.full_name for s in form.suppliers] == ["Supplier 0"]
    assert [c.name for c in form.competencies] == ["Competency 0"]
    snap = db.scalar(select(CycleCompetency).where(CycleCompetency.cycle_id == cycle.id))
    assert snap is not None and snap.weight == 1.0
    assert count(db, CyclePair, CyclePair.cycle_id == cycle.id) == 2
    assert count(db, Invitation, Invitation.customer_id == newcomer.id) == 0


def test_launch_refuses_a_cycle_past_its_close_date(db: Session, settings: Settings) -> None:
    make_company(db)
    now = utcnow()
    cycle = make_cycle(db, opens_at=now - timedelta(days=30), closes_at=now - timedelta(days=1))
    with pytest.raises(Invalid, match="has passed"):
        cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    assert count(db, Invitation, Invitation.cycle_id == cycle.id) == 0


def test_launch_refuses_when_nobody_would_be_invited(db: Session, settings: Settings) -> None:
    make_competency(db)
    cycle = make_cycle(db)
    with pytest.raises(Invalid, match="Nobody would be invited"):
        cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    assert db.get(type(cycle), cycle.id).state == CycleState.draft  # type: ignore[union-attr]


def test_unknown_cycle_is_not_found(db: Session, settings: Settings) -> None:
    with pytest.raises(NotFound):
        cycles_service.launch_cycle(db, cycle_id=987654, settings=settings)


def test_invitation_emails_use_the_customer_language(db: Session, settings: Settings) -> None:
    make_company(db, suppliers=1, customers=1, language="ru")
    cycle = launched_cycle(db, settings)
    message = db.scalar(select(OutboxMessage).where(OutboxMessage.tag == f"cycle:{cycle.id}"))
    assert message is not None
    assert "Оцените" in message.subject
    assert "Здравствуйте, Customer 0!" in message.body_text
    assert '<html lang="ru">' in (message.body_html or "")


def test_customer_names_are_escaped_in_html_mail(db: Session, settings: Settings) -> None:
    company = make_company(db, suppliers=1, customers=1)
    company.customers[0].full_name = "<b>Eve</b> & Co"
    db.flush()
    cycle = launched_cycle(db, settings)
    message = db.scalar(select(OutboxMessage).where(OutboxMessage.tag == f"cycle:{cycle.id}"))
    assert message is not None
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; Co" in (message.body_html or "")
    assert "<b>Eve</b> & Co" in message.body_text


# --- progress ----------------------------------------------------------------------------


def test_progress_counts_per_department_never_who(db: Session, settings: Settings) -> None:
    company = make_company(db, suppliers=2, customers=3)
    cycle = launched_cycle(db, settings)
    first = invitation_of(db, cycle, company.customers[0])
    ratings_service.submit_answers(
        db, invitation_id=first.id, answers=answers_for(db, cycle, company.suppliers)
    )
    progress = cycles_service.cycle_progress(db, cycle_id=cycle.id, min_invited=1)
    assert (progress.invited, progress.responded) == (3, 1)
    assert progress.response_rate == pytest.approx(1 / 3)
    assert [(d.name, d.invited, d.responded) for d in progress.departments] == [("Sales", 3, 1)]
    # A department with fewer than k invitations is never shown on its own.
    folded = cycles_service.cycle_progress(db, cycle_id=cycle.id, min_invited=4)
    assert [(d.name, d.invited, d.responded) for d in folded.departments] == [
        (cycles_service.SMALL_DEPARTMENTS, 3, 1)
    ]
    assert progress.undeliverable == 0
    db.execute(
        OutboxMessage.__table__.update()
        .where(OutboxMessage.tag == f"cycle:{cycle.id}")
        .values(status=OutboxStatus.undeliverable)
    )
    assert cycles_service.cycle_progress(db, cycle_id=cycle.id, min_invited=1).undeliverable == 3
    assert cycles_service.response_counts(db, cycle_ids=[cycle.id]) == {cycle.id: (3, 1)}


# --- reminders ---------------------------------------------------------------------------


def _reminders(db: Session) -> int:
    return count(db, OutboxMessage, OutboxMessage.kind == "reminder")


def test_scheduled_reminders_once_per_reminder_date(db: Session, settings: Settings) -> None:
    company = make_company(db, suppliers=1, customers=3)
    now = utcnow()
    cycle = launched_cycle(db, settings, closes_at=now + timedelta(days=10))
    answered = invitation_of(db, cycle, company.customers[0])
    ratings_service.submit_answers(
        db, invitation_id=answered.id, answers=answers_for(db, cycle, company.suppliers)
    )
    settings.reminder_days_before_close = [7, 3]
    send = cycles_service.send_scheduled_reminders
    # Before the first reminder date: nothing.
    assert send(db, cycle_id=cycle.id, settings=settings, now=now + timedelta(days=2)) == 0
    # On the 7-days-before date: the two who have not answered, once.
    day7 = now + timedelta(days=3, hours=1)
    assert send(db, cycle_id=cycle.id, settings=settings, now=day7) == 2
    assert send(db, cycle_id=cycle.id, settings=settings, now=day7 + timedelta(hours=2)) == 0
    assert send(db, cycle_id=cycle.id, settings=settings, now=day7 + timedelta(days=1)) == 0
    # The 3-days-before date: once more.
    day3 = now + timedelta(days=7, hours=1)
    assert send(db, cycle_id=cycle.id, settings=settings, now=day3) == 2
    assert send(db, cycle_id=cycle.id, settings=settings, now=day3) == 0
    assert _reminders(db) == 4
    reminded = db.scalars(select(OutboxMessage.to_address).where(OutboxMessage.kind == "reminder"))
    assert company.customers[0].email not in set(reminded)


def test_manual_reminder_counts_as_that_days_scheduled_one(db: Session, settings: Settings) -> None:
    make_company(db, suppliers=1, customers=2)
    now = utcnow()
    cycle = launched_cycle(db, settings, closes_at=now + timedelta(days=10))
    settings.reminder_days_before_close = [3]
    reminder_day = now + timedelta(days=7, hours=1)
    assert (
        cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings, now=reminder_day)
        == 2
    )
    # The same day: neither another manual one nor the scheduled one.
    assert (
        cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings, now=reminder_day)
        == 0
    )
    assert (
        cycles_service.send_scheduled_reminders(
            db, cycle_id=cycle.id, settings=settings, now=reminder_day
        )
        == 0
    )
    # A manual reminder the next day is allowed (once).
    assert (
        cycles_service.send_reminders(
            db, cycle_id=cycle.id, settings=settings, now=reminder_day + timedelta(days=1)
        )
        == 2
    )
    assert _reminders(db) == 4


def test_reminder_link_works_and_invitation_link_still_works(
    db: Session, settings: Settings
) -> None:
    company = make_company(db, suppliers=1, customers=1)
    cycle = launched_cycle(db, settings)
    first_link = links_by_customer(db, cycle)[company.customers[0].id]
    cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings)
    reminder_link = links_by_customer(db, cycle, kind="reminder")[company.customers[0].id]
    assert reminder_link != first_link
    for url in (first_link, reminder_link):
        found = cycles_service.find_invitation_by_token(db, token=url.rsplit("/", 1)[1])
        assert found is not None and found.customer_id == company.customers[0].id


def test_reminders_only_while_open(db: Session, settings: Settings) -> None:
    make_company(db)
    cycle = make_cycle(db)
    with pytest.raises(Conflict):
        cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings)
    assert cycles_service.send_scheduled_reminders(db, cycle_id=cycle.id, settings=settings) == 0


def test_cycles_due_to_close(db: Session, settings: Settings) -> None:
    make_company(db)
    now = utcnow()
    due = launched_cycle(db, settings, closes_at=now + timedelta(hours=1))
    later = launched_cycle(db, settings, closes_at=now + timedelta(days=5))
    ids = cycles_service.cycles_due_to_close(db, now=now + timedelta(hours=2))
    assert due.id in ids and later.id not in ids
