"""HR screens for cycles: list, create, launch, progress, remind, close; the start page."""

from __future__ import annotations

import re
from datetime import date, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry, Role
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState, Invitation
from app.cycles.pages import next_quarter
from app.db import utcnow
from app.mail.models import OutboxMessage
from tests.auth.helpers import SignedIn, sign_in
from tests.cycles.helpers import finish_close_jobs
from tests.factories import link, make_competency, make_department, make_employee


def _small_company(db: Session) -> dict[str, object]:
    sales = make_department(db, name="Sales")
    it = make_department(db, name="IT")
    supplier = make_employee(db, department=it, full_name="Ivy Supplier")
    customers = [make_employee(db, department=sales) for _ in range(3)]
    it_customer = make_employee(db, department=it)
    for c in [*customers, it_customer]:
        link(db, supplier=supplier, customer=c)
    make_competency(db)
    return {"sales": sales, "it": it, "customers": customers, "it_customer": it_customer}


def _create_draft(client: TestClient, signed: SignedIn) -> int:
    r = client.post("/cycles/next", data={"csrf_token": signed.csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    match = re.match(r"/cycles/(\d+)\?notice=cycle-created", r.headers["location"])
    assert match, r.headers["location"]
    return int(match.group(1))


def _count(db: Session, model: type) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_next_quarter_follows_the_newest_cycle(db: Session) -> None:
    assert next_quarter(db, today=date(2026, 11, 23)) == "2026Q4"
    cycles_service.create_quarter_cycle(db, quarter="2026Q4")
    assert next_quarter(db, today=date(2026, 11, 23)) == "2027Q1"
    cycles_service.create_quarter_cycle(db, quarter="2027Q1")
    assert next_quarter(db, today=date(2026, 11, 23)) == "2027Q2"


def test_one_click_creates_the_next_quarter_as_a_draft(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    listing = client.get("/cycles")
    year, q = cycles_service.quarter_of(utcnow().date())
    name = cycles_service.quarter_name(year, q)
    assert f"Create {name}" in listing.text
    cycle_id = _create_draft(client, signed)
    cycle = db.get(Cycle, cycle_id)
    assert cycle is not None and cycle.state == CycleState.draft and cycle.name == name
    detail = client.get(f"/cycles/{cycle_id}?notice=cycle-created")
    assert "The cycle was created as a draft." in detail.text
    assert f'href="/cycles/{cycle_id}/launch"' in detail.text
    entry = db.scalar(select(AuditEntry).where(AuditEntry.entity == "cycle"))
    assert entry is not None and entry.action == "create" and entry.actor == signed.user.email
    # The second click creates the following quarter, not a duplicate.
    second = _create_draft(client, signed)
    assert second != cycle_id


def test_custom_cycle_form(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    form = client.get("/cycles/new")
    assert form.status_code == 200 and 'name="ask_nps"' in form.text
    data = {
        "csrf_token": signed.csrf,
        "name": "Pilot 2026",
        "period_start": "2026-07-01",
        "period_end": "2026-09-30",
        "opens_at": "2026-12-01T09:00",
        "closes_at": "2026-12-20T18:00",
        "scale_min": "0",
        "scale_max": "5",
        "ask_comment": "on",
    }
    r = client.post("/cycles/new", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    cycle = db.scalar(select(Cycle).where(Cycle.name == "Pilot 2026"))
    assert cycle is not None
    assert (cycle.scale_min, cycle.scale_max, cycle.ask_nps, cycle.ask_comment) == (
        0,
        5,
        False,
        True,
    )

    # Bad input: errors next to the fields, typed values kept, nothing created.
    before = _count(db, Cycle)
    bad = {
        **data,
        "name": "Pilot 2026",
        "period_end": "2026-13-45",
        "closes_at": "soon",
        "scale_max": "ten",
    }
    r = client.post("/cycles/new", data=bad)
    assert r.status_code == 422
    for field in ("period_end", "closes_at", "scale_max"):
        assert f'id="{field}-error"' in r.text
    assert 'value="soon"' in r.text and 'value="ten"' in r.text
    # Service-level rules (closes before it opens, duplicate name) also land on fields.
    r = client.post("/cycles/new", data={**data, "closes_at": "2026-11-01T09:00"})
    assert r.status_code == 422 and 'id="closes_at-error"' in r.text
    r = client.post("/cycles/new", data=data)
    assert r.status_code == 422 and 'id="name-error"' in r.text and "already exists" in r.text
    assert _count(db, Cycle) == before


def test_launch_confirm_then_progress_remind_and_close(
    client: TestClient, db: Session, settings: Settings
) -> None:
    # The VACUUM after close needs every other connection gone; the test's open
    # transaction would make it wait. Record that it is scheduled instead.
    company = _small_company(db)
    signed = sign_in(client, db)
    cycle_id = _create_draft(client, signed)

    confirm = client.get(f"/cycles/{cycle_id}/launch")
    assert confirm.status_code == 200
    assert "4 customers will be invited to rate 4 supplier relations" in confirm.text
    assert _count(db, Invitation) == 0  # the confirm page changes nothing

    r = client.post(
        f"/cycles/{cycle_id}/launch", data={"csrf_token": signed.csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert _count(db, Invitation) == 4
    assert _count(db, OutboxMessage) == 4
    cycle = db.get(Cycle, cycle_id)
    assert cycle is not None and cycle.state == CycleState.open

    # One Sales customer answers: progress shows counts per department, never who.
    answered = company["customers"][0]  # type: ignore[index]
    inv = db.scalar(select(Invitation).where(Invitation.customer_id == answered.id))
    assert inv is not None
    inv.used = True
    db.flush()
    detail = client.get(f"/cycles/{cycle_id}")
    html = detail.text
    assert re.search(r'<span class="stat">4</span><span class="stat-label">invited', html)
    assert re.search(r'<span class="stat">1</span><span class="stat-label">responded', html)
    assert "25%" in html
    sales_row = re.search(
        r"<td>Sales</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", html
    )
    assert sales_row and sales_row.groups() == ("3", "1")
    assert answered.full_name not in html and answered.email not in html

    r = client.post(
        f"/cycles/{cycle_id}/remind", data={"csrf_token": signed.csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and "count=3" in r.headers["location"]
    assert _count(db, OutboxMessage) == 7
    assert "3 reminders queued" in client.get(r.headers["location"]).text
    # A second click the same day sends nobody a second reminder.
    r = client.post(
        f"/cycles/{cycle_id}/remind", data={"csrf_token": signed.csrf}, follow_redirects=False
    )
    assert "count=0" in r.headers["location"]

    close_confirm = client.get(f"/cycles/{cycle_id}/close")
    assert "1 of 4 customers have answered" in close_confirm.text
    r = client.post(
        f"/cycles/{cycle_id}/close", data={"csrf_token": signed.csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].endswith("notice=closing")
    # Queued for the worker: the page shows the progress and refreshes itself.
    waiting = client.get(r.headers["location"])
    assert '<meta http-equiv="refresh"' in waiting.text
    assert '<progress max="100" value="0"' in waiting.text
    assert "waiting for the worker" in waiting.text
    assert "Close now" not in waiting.text
    db.refresh(cycle)
    assert cycle.state == CycleState.open
    assert finish_close_jobs(db, settings) == 1
    db.refresh(cycle)
    assert cycle.state == CycleState.closed
    ready = client.get(r.headers["location"])
    assert "results are ready" in ready.text and "http-equiv" not in ready.text
    actions = set(db.scalars(select(AuditEntry.action).where(AuditEntry.entity == "cycle")))
    assert {"create", "launch", "remind", "close"} <= actions


def test_launch_refused_without_competencies_shows_why(client: TestClient, db: Session) -> None:
    a, b = make_employee(db), make_employee(db)
    link(db, supplier=a, customer=b)
    signed = sign_in(client, db)
    cycle_id = _create_draft(client, signed)
    r = client.post(f"/cycles/{cycle_id}/launch", data={"csrf_token": signed.csrf})
    assert r.status_code == 422
    assert "no active competency" in r.text
    assert _count(db, Invitation) == 0


def test_launch_without_csrf_changes_nothing(client: TestClient, db: Session) -> None:
    _small_company(db)
    signed = sign_in(client, db)
    cycle_id = _create_draft(client, signed)
    r = client.post(f"/cycles/{cycle_id}/launch", data={})
    assert r.status_code == 403
    assert _count(db, Invitation) == 0


def test_close_and_remind_a_draft_are_refused(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    cycle_id = _create_draft(client, signed)
    # The confirm page of a draft just goes back to the cycle.
    assert client.get(f"/cycles/{cycle_id}/close", follow_redirects=False).status_code == 303
    r = client.post(f"/cycles/{cycle_id}/close", data={"csrf_token": signed.csrf})
    assert r.status_code == 409
    r = client.post(f"/cycles/{cycle_id}/remind", data={"csrf_token": signed.csrf})
    assert r.status_code == 409
    assert client.get("/cycles/424242").status_code == 404


def test_dashboard_per_role(client: TestClient, db: Session) -> None:
    boss = make_employee(db, full_name="Boss")
    make_employee(db, manager=boss)
    make_employee(db, manager=boss)
    sign_in(client, db, role=Role.manager, employee=boss)
    r = client.get("/")
    assert "Your team&#39;s results" in r.text and "2 direct reports" in r.text
    assert 'href="/org/departments"' not in r.text  # no HR navigation for managers
    assert 'href="/results"' in r.text

    sign_in(client, db, role=Role.hr)
    r = client.get("/")
    assert 'href="/org/departments"' in r.text and 'href="/admin/users"' not in r.text
    assert 'href="/outbox"' in r.text

    sign_in(client, db, role=Role.admin)
    r = client.get("/")
    assert 'href="/admin/users"' in r.text


def test_manager_cannot_open_cycle_pages(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db, role=Role.manager, employee=make_employee(db))
    assert client.get("/cycles").status_code == 403
    r = client.post("/cycles/next", data={"csrf_token": signed.csrf})
    assert r.status_code == 403
    assert _count(db, Cycle) == 0


def test_cycle_closing_soon_shows_dates(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    cycle = cycles_service.create_cycle(
        db,
        name="Short",
        period_start=date(2026, 1, 1),
        period_end=date(2026, 3, 31),
        opens_at=utcnow(),
        closes_at=utcnow() + timedelta(days=2),
    )
    r = client.get(f"/cycles/{cycle.id}")
    assert r.status_code == 200 and "Short" in r.text and signed.user.email in r.text
