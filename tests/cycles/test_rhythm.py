"""The quarterly rhythm on a frozen clock: the worker creates, launches, reminds and
closes a quarter's cycle without anyone pressing a button."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.auth.models import AuditEntry, Role
from app.config import Settings
from app.cycles import rhythm
from app.cycles.models import Cycle, CycleState, Invitation
from app.mail.models import OutboxMessage
from app.org.models import Employee
from app.ratings import service as ratings_service
from tests.auth.helpers import fast_user, sign_in
from tests.cycles.helpers import answers_for, invitation_of, make_company
from tests.factories import auth_header, make_api_key

RHYTHM = rhythm.RhythmFields(
    enabled=True,
    opens_days_before_quarter_end=14,
    open_days=10,
    reminder_days=[7, 9],
    prepare_days=14,
)


def worker_pass(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    """Every scheduled job once, as the worker runs them."""
    for _name, job in lifecycle.scheduled_jobs():
        job(settings, engine, factory)


def at(moment: datetime) -> time_machine.travel:
    return time_machine.travel(moment.replace(tzinfo=UTC), tick=False)


@pytest.fixture
def org(committed_db: sessionmaker[Session]) -> Iterator[None]:
    with committed_db() as session:
        make_company(session, suppliers=2, customers=4, competencies=2)
        fast_user(session, role=Role.hr, email="hr.lead@example.com")
        rhythm.update_rhythm(session, fields=RHYTHM, actor="test")
        session.commit()
    yield


def _cycle(factory: sessionmaker[Session]) -> Cycle | None:
    with factory() as session:
        return session.scalar(select(Cycle).where(Cycle.name == "2027-Q1"))


def _mail(factory: sessionmaker[Session], kind: str) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == kind)
            )
            or 0
        )


def test_a_quarter_runs_itself(
    org: None, settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    factory = committed_db
    with at(datetime(2027, 3, 2, 12)):
        worker_pass(settings, engine, factory)
        assert _cycle(factory) is None
        with factory() as session:
            step = rhythm.next_step(session, settings=settings)
        assert step and step.action == "create" and step.cycle_name == "2027-Q1"
        assert step.when.date() == date(2027, 3, 3) and step.opens_at.date() == date(2027, 3, 17)

    with at(datetime(2027, 3, 3, 0, 5)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.draft and cycle.auto_launch
        assert cycle.opens_at == datetime(2027, 3, 17) and cycle.closes_at == datetime(2027, 3, 27)
        assert _mail(factory, "rhythm") == 1  # HR is asked to review the matrix
        worker_pass(settings, engine, factory)  # nothing twice
        assert _mail(factory, "rhythm") == 1
        with factory() as session:
            step = rhythm.next_step(session, settings=settings)
        # "2027-Q1 opens on 17 March, 4 customers, 2 suppliers below k + 2"
        assert step and step.action == "launch" and step.customers == 4
        assert step.suppliers_short == 2 and step.short_of == settings.anonymity_min_raters + 2

    with at(datetime(2027, 3, 16, 23, 59)):
        worker_pass(settings, engine, factory)
        assert _cycle(factory).state == CycleState.draft  # type: ignore[union-attr]

    with at(datetime(2027, 3, 17, 0, 1)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.open
        assert _mail(factory, "invitation") == 4
        with factory() as session:
            company_customers = [
                inv.customer_id
                for inv in session.scalars(
                    select(Invitation).where(Invitation.cycle_id == cycle.id)
                )
            ]
            assert len(company_customers) == 4
            # Three customers answer in the first days.
            suppliers = list(
                session.scalars(select(Employee).where(Employee.full_name.like("Supplier %")))
            )
            for customer_id in company_customers[:3]:
                customer = session.get(Employee, customer_id)
                assert customer is not None
                ratings_service.submit_answers(
                    session,
                    invitation_id=invitation_of(session, cycle, customer).id,
                    answers=answers_for(session, cycle, suppliers, score=8),
                    secret_key=settings.secret_key,
                )
            session.commit()

    with at(datetime(2027, 3, 24, 9)):  # day 7
        worker_pass(settings, engine, factory)
        assert _mail(factory, "reminder") == 1  # only the one who has not answered
        worker_pass(settings, engine, factory)
        assert _mail(factory, "reminder") == 1
    with at(datetime(2027, 3, 26, 9)):  # day 9
        worker_pass(settings, engine, factory)
        assert _mail(factory, "reminder") == 2

    with at(datetime(2027, 3, 27, 0, 1)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.closed and cycle.results_ready_at
        # Both suppliers reached k = 3: each gets the link to their own results.
        assert _mail(factory, "results") == 2
        with factory() as session:
            actors = set(
                session.scalars(select(AuditEntry.action).where(AuditEntry.actor == rhythm.ACTOR))
            )
            assert actors == {"create", "launch"}
            step = rhythm.next_step(session, settings=settings)
        assert step and step.action == "create" and step.cycle_name == "2027-Q2"


def test_a_paused_cycle_waits_for_hr(
    org: None, settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    with at(datetime(2027, 3, 3, 1)):
        worker_pass(settings, engine, committed_db)
    cycle = _cycle(committed_db)
    assert cycle is not None
    with committed_db() as session:
        rhythm.set_auto_launch(session, cycle_id=cycle.id, on=False)
        session.commit()
    with at(datetime(2027, 3, 17, 0, 1)):
        worker_pass(settings, engine, committed_db)
    assert _cycle(committed_db).state == CycleState.draft  # type: ignore[union-attr]
    assert _mail(committed_db, "invitation") == 0


def test_hr_pauses_and_resumes_on_the_cycle_page(client: TestClient, db: Session) -> None:
    rhythm.update_rhythm(db, fields=RHYTHM, actor="test")
    plan = rhythm.plan_for(rhythm.get_rhythm(db), 2027, 1)
    cycle = rhythm._create(db, plan=plan, rhythm=rhythm.get_rhythm(db), now=plan.create_at, hr=[])
    signed = sign_in(client, db)
    page = client.get(f"/cycles/{cycle.cycle_id}")
    assert "Pause the automatic launch" in page.text
    r = client.post(
        f"/cycles/{cycle.cycle_id}/auto-launch",
        data={"csrf_token": signed.csrf, "on": "false"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Cycle, cycle.cycle_id).auto_launch is False  # type: ignore[union-attr]
    assert "paused: launch it by hand" in client.get(f"/cycles/{cycle.cycle_id}").text
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "pause automatic launch"))
    assert [a.actor for a in audit] == [signed.user.email]


def test_hr_edits_the_rhythm_on_a_page_and_through_the_api(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    form = client.get("/rhythm")
    assert form.status_code == 200 and 'name="open_days"' in form.text
    data = {
        "csrf_token": signed.csrf,
        "enabled": "1",
        "opens_days_before_quarter_end": "14",
        "open_days": "10",
        "reminder_days": "9, 7",
        "prepare_days": "14",
    }
    assert client.post("/rhythm", data=data, follow_redirects=False).status_code == 303
    saved = rhythm.get_rhythm(db)
    assert saved.enabled and saved.reminder_days == [7, 9] and saved.open_days == 10
    bad = client.post("/rhythm", data={**data, "reminder_days": "12"})
    assert bad.status_code == 422 and "reminder days must be between 1 and 9" in bad.text

    h = auth_header(make_api_key(db, "cycles:read", "cycles:write"))
    db.commit()
    body = client.get("/api/v1/rhythm", headers=h).json()
    assert body["enabled"] is True and body["reminder_days"] == [7, 9]
    assert body["next_step"]["action"] == "create"
    r = client.put(
        "/api/v1/rhythm",
        json={**RHYTHM.model_dump(), "enabled": False, "open_days": 21},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["open_days"] == 21 and r.json()["next_step"] is None
    wrong = client.put("/api/v1/rhythm", json={**RHYTHM.model_dump(), "open_days": 0}, headers=h)
    assert wrong.status_code == 422
    db.expire_all()
    assert rhythm.get_rhythm(db).open_days == 21
