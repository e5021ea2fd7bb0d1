"""The quarterly rhythm on a frozen clock: the worker creates, launches, reminds and
closes a quarter's cycle without anyone pressing a button."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.auth.models import AuditEntry, Role
from app.config import Settings
from app.cycles import nomination, rhythm
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState, Invitation, LaunchPreview, NominationList
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
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


# --- the rhythm starts the confirmation round -------------------------------------------------

ROUND = RHYTHM.model_copy(update={"nomination_days": 7})


@pytest.fixture
def org_with_round(committed_db: sessionmaker[Session]) -> Iterator[None]:
    with committed_db() as session:
        make_company(session, suppliers=2, customers=4, competencies=2)
        fast_user(session, role=Role.hr, email="hr.lead@example.com")
        rhythm.update_rhythm(session, fields=ROUND, actor="test")
        session.commit()
    yield


def _links(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(MatrixLink)) or 0)


def test_a_quarter_with_its_confirmation_round_runs_itself(
    org_with_round: None, settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    """Create -> nominate -> launch -> remind -> close, with nobody pressing a button."""
    factory = committed_db
    with at(datetime(2027, 3, 2, 12)), factory() as session:
        step = rhythm.next_step(session, settings=settings)
        assert step and step.action == "create"
        assert step.round_starts_at == datetime(2027, 3, 10)

    with at(datetime(2027, 3, 3, 0, 5)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.draft
        assert cycle.nomination_starts_at == datetime(2027, 3, 10)
        assert _mail(factory, "nomination") == 0
        with factory() as session:
            review = session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "rhythm")
            ).one()
            assert "confirmation round starts on its own on Mar 10, 2027" in review.body_text
            step = rhythm.next_step(session, settings=settings)
        assert step and step.action == "start round" and step.when == datetime(2027, 3, 10)
        assert step.customers == 4 and step.suppliers_short == 2  # the stored preview

    with at(datetime(2027, 3, 9, 23, 59)):
        worker_pass(settings, engine, factory)
        assert _cycle(factory).state == CycleState.draft  # type: ignore[union-attr]

    with at(datetime(2027, 3, 10, 0, 1)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.nominating
        assert _mail(factory, "nomination") == 2  # each supplier gets their link
        worker_pass(settings, engine, factory)
        assert _mail(factory, "nomination") == 2  # once
        with factory() as session:
            step = rhythm.next_step(session, settings=settings)
            assert step and step.action == "launch" and step.nominating
            # Supplier 0 removes a customer and confirms; supplier 1 does nothing.
            supplier = session.scalar(select(Employee).where(Employee.full_name == "Supplier 0"))
            customer = session.scalar(select(Employee).where(Employee.full_name == "Customer 3"))
            assert supplier and customer
            own = session.scalars(
                select(NominationList).where(NominationList.supplier_id == supplier.id)
            ).one()
            nomination.propose_remove(
                session, nomination=own, customer_id=customer.id, reason="We never worked together"
            )
            nomination.confirm(session, nomination=own)
            session.commit()
    assert _links(factory) == 8

    with at(datetime(2027, 3, 17, 0, 1)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.open
        assert _links(factory) == 7  # the confirmed list reached the matrix at launch
        assert _mail(factory, "invitation") == 4
        with factory() as session:
            invited = list(
                session.scalars(select(Invitation).where(Invitation.cycle_id == cycle.id))
            )
            suppliers = list(
                session.scalars(select(Employee).where(Employee.full_name.like("Supplier %")))
            )
            for invitation in invited[:3]:
                customer = session.get(Employee, invitation.customer_id)
                assert customer is not None
                rated = [
                    s
                    for s in suppliers
                    if session.scalar(
                        select(func.count())
                        .select_from(MatrixLink)
                        .where(
                            MatrixLink.supplier_id == s.id, MatrixLink.customer_id == customer.id
                        )
                    )
                ]
                ratings_service.submit_answers(
                    session,
                    invitation_id=invitation_of(session, cycle, customer).id,
                    answers=answers_for(session, cycle, rated, score=8),
                    secret_key=settings.secret_key,
                )
            session.commit()

    with at(datetime(2027, 3, 24, 9)):  # day 7
        worker_pass(settings, engine, factory)
        assert _mail(factory, "reminder") == 1
    with at(datetime(2027, 3, 27, 0, 1)):
        worker_pass(settings, engine, factory)
        cycle = _cycle(factory)
        assert cycle and cycle.state == CycleState.closed and cycle.results_ready_at
        with factory() as session:
            actions = set(
                session.scalars(select(AuditEntry.action).where(AuditEntry.actor == rhythm.ACTOR))
            )
            assert actions == {"create", "start round", "launch"}
            # The launched cycle's preview is gone; the next quarter's is not there yet.
            assert session.scalar(select(func.count()).select_from(LaunchPreview)) == 0


def test_a_paused_draft_does_not_start_its_round(
    org_with_round: None, settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    with at(datetime(2027, 3, 3, 1)):
        worker_pass(settings, engine, committed_db)
    cycle = _cycle(committed_db)
    assert cycle is not None
    with committed_db() as session:
        rhythm.set_auto_launch(session, cycle_id=cycle.id, on=False)
        session.commit()
    with at(datetime(2027, 3, 10, 0, 1)):
        worker_pass(settings, engine, committed_db)
    assert _cycle(committed_db).state == CycleState.draft  # type: ignore[union-attr]
    assert _mail(committed_db, "nomination") == 0


def test_a_round_that_cannot_start_is_audited_and_the_cycle_still_launches(
    org_with_round: None, settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    with at(datetime(2027, 3, 3, 1)):
        worker_pass(settings, engine, committed_db)
    with committed_db() as session:  # every customer left: no supplier has one
        session.execute(
            update(Employee).where(Employee.full_name.like("Customer %")).values(active=False)
        )
        session.commit()
    with at(datetime(2027, 3, 10, 0, 1)):
        worker_pass(settings, engine, committed_db)
        worker_pass(settings, engine, committed_db)
    cycle = _cycle(committed_db)
    assert cycle and cycle.state == CycleState.draft and cycle.nomination_starts_at is None
    with committed_db() as session:
        entries = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "round not started"))
        )
        assert len(entries) == 1 and "no supplier" in entries[0].detail
        step = rhythm.next_step(session, settings=settings)
        assert step and step.action == "launch"


def test_the_dashboard_reads_the_stored_preview(
    org: None,
    settings: Settings,
    engine: Engine,
    committed_db: sessionmaker[Session],
    live_app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TestClient(live_app)
    with at(datetime(2027, 3, 3, 1)):
        worker_pass(settings, engine, committed_db)
    with committed_db() as session:
        preview = session.scalars(select(LaunchPreview)).one()
        assert (preview.customers, preview.suppliers_short) == (4, 2)
        assert preview.computed_at == datetime(2027, 3, 3, 1)

    def slow(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dashboard computed the coverage")

    real = cycles_service.launch_coverage
    monkeypatch.setattr(cycles_service, "launch_coverage", slow)
    with at(datetime(2027, 3, 3, 1, 30)):
        with committed_db() as session:
            sign_in(client, session)
        page = client.get("/")
        assert page.status_code == 200, page.text
        assert "4 customers" in page.text and "2 suppliers below k + 2" in page.text
        body = client.get("/rhythm").text
        assert "4 customers" in body

    # Within the hour the job keeps the stored figures; after it, it computes them again.
    monkeypatch.setattr(cycles_service, "launch_coverage", real)
    with committed_db() as session:
        session.execute(
            delete(MatrixLink).where(
                MatrixLink.customer_id.in_(
                    select(Employee.id).where(Employee.full_name == "Customer 3")
                )
            )
        )
        session.commit()
    with at(datetime(2027, 3, 3, 1, 59)):
        worker_pass(settings, engine, committed_db)
    with committed_db() as session:
        assert session.scalars(select(LaunchPreview)).one().customers == 4
    with at(datetime(2027, 3, 3, 2, 1)):
        worker_pass(settings, engine, committed_db)
    with committed_db() as session:
        row = session.scalars(select(LaunchPreview)).one()
        assert row.customers == 3 and row.computed_at == datetime(2027, 3, 3, 2, 1)


def test_the_round_setting_on_the_page_and_through_the_api(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    assert 'name="nomination_days"' in client.get("/rhythm").text
    data = {
        "csrf_token": signed.csrf,
        "enabled": "1",
        "opens_days_before_quarter_end": "14",
        "open_days": "10",
        "reminder_days": "7, 9",
        "prepare_days": "14",
        "nomination_days": "7",
    }
    assert client.post("/rhythm", data=data, follow_redirects=False).status_code == 303
    assert rhythm.get_rhythm(db).nomination_days == 7
    assert "its confirmation round starts on" in client.get("/rhythm").text
    bad = client.post("/rhythm", data={**data, "nomination_days": "20"})
    assert bad.status_code == 422
    assert re.search(r'has-error"><label for="r-nom"', bad.text)
    assert "the confirmation round starts once the cycle exists" in bad.text
    assert client.post("/rhythm", data={**data, "nomination_days": "x"}).status_code == 422

    h = auth_header(make_api_key(db, "cycles:read", "cycles:write"))
    db.commit()
    body = client.get("/api/v1/rhythm", headers=h).json()
    assert body["nomination_days"] == 7 and body["next_step"]["round_starts_at"]
    r = client.put("/api/v1/rhythm", json={**RHYTHM.model_dump(), "nomination_days": 3}, headers=h)
    assert r.status_code == 200 and r.json()["nomination_days"] == 3
    wrong = client.put(
        "/api/v1/rhythm", json={**RHYTHM.model_dump(), "nomination_days": 15}, headers=h
    )
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith(
        "application/problem+json"
    )
    db.expire_all()
    assert rhythm.get_rhythm(db).nomination_days == 3
    audit = db.scalars(
        select(AuditEntry).where(AuditEntry.entity == "rhythm").order_by(AuditEntry.id)
    ).all()
    assert ['"nomination_days":3' in a.detail for a in audit][-1]


def test_figures_of_a_cycle_launched_meanwhile_are_not_stored(
    db: Session, settings: Settings
) -> None:
    make_company(db, suppliers=2, customers=4, competencies=2)
    rhythm.update_rhythm(db, fields=RHYTHM, actor="test")
    plan = rhythm.plan_for(rhythm.get_rhythm(db), 2027, 1)
    event = rhythm._create(db, plan=plan, rhythm=rhythm.get_rhythm(db), now=plan.create_at, hr=[])
    (draft,) = rhythm.previews_due(db, now=plan.create_at)
    figures = rhythm.compute_preview(db, settings=settings, cycle=draft, now=plan.create_at)
    assert (figures.cycle_id, figures.customers, figures.suppliers_short) == (event.cycle_id, 4, 2)
    rhythm.set_auto_launch(db, cycle_id=event.cycle_id, on=False)  # paused meanwhile
    rhythm.store_previews(db, figures=[figures])
    assert db.scalar(select(func.count()).select_from(LaunchPreview)) == 0
    rhythm.set_auto_launch(db, cycle_id=event.cycle_id, on=True)
    rhythm.store_previews(db, figures=[figures])
    assert db.get(LaunchPreview, event.cycle_id) is not None
    assert rhythm.previews_due(db, now=plan.create_at) == []
    rhythm.set_auto_launch(db, cycle_id=event.cycle_id, on=False)
    rhythm.drop_stale_previews(db)
    assert db.get(LaunchPreview, event.cycle_id) is None
