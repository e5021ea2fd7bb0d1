"""The cycles API: scopes, shapes, problem+json errors, launch/remind/close."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.config import Settings
from app.cycles.models import Invitation
from app.db import utcnow
from app.mail.models import OutboxMessage
from app.ratings import service as ratings_service
from tests.cycles.helpers import (
    answers_for,
    finish_close_jobs,
    invitation_of,
    make_company,
    make_cycle,
)
from tests.factories import auth_header, make_api_key


@pytest.fixture
def hdr(db: Session) -> dict[str, str]:
    key = make_api_key(db, "cycles:read", "cycles:write")
    # Release the savepoint: an error answer rolls the request's work back, not the key.
    db.commit()
    return auth_header(key)


def problem(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = r.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    return body


def test_scopes_are_enforced(client: TestClient, db: Session) -> None:
    problem(client.get("/api/v1/cycles"), 401)
    read_only = auth_header(make_api_key(db, "cycles:read"))
    assert client.get("/api/v1/cycles", headers=read_only).status_code == 200
    problem(client.post("/api/v1/cycles", json={"quarter": "2031Q1"}, headers=read_only), 403)
    org_only = auth_header(make_api_key(db, "org:read"))
    problem(client.get("/api/v1/cycles", headers=org_only), 403)


def test_create_by_quarter_and_list(client: TestClient, hdr: dict[str, str]) -> None:
    r = client.post("/api/v1/cycles", json={"quarter": "2031Q2", "ask_nps": False}, headers=hdr)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "2031-Q2" and body["state"] == "draft"
    assert body["period_start"] == "2031-04-01" and body["period_end"] == "2031-06-30"
    assert body["ask_nps"] is False and (body["invited"], body["responded"]) == (0, 0)
    listed = client.get("/api/v1/cycles", headers=hdr).json()
    assert [c["name"] for c in listed if c["name"] == "2031-Q2"] == ["2031-Q2"]
    problem(client.post("/api/v1/cycles", json={"quarter": "2031-Q2"}, headers=hdr), 409)


def test_create_with_explicit_dates_and_zones(client: TestClient, hdr: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/cycles",
        json={
            "name": "Pilot",
            "period_start": "2031-01-01",
            "period_end": "2031-03-31",
            "opens_at": "2031-03-20T09:00:00+03:00",
            "closes_at": "2031-04-10T18:00:00Z",
            "scale_min": 1,
            "scale_max": 5,
        },
        headers=hdr,
    )
    assert r.status_code == 201, r.text
    assert r.json()["opens_at"] == "2031-03-20T06:00:00Z"
    assert r.json()["scale_max"] == 5


@pytest.mark.parametrize(
    "payload",
    [
        {"quarter": "2031Q9"},
        {"quarter": "2031Q1", "name": "both"},
        {"name": "only a name"},
        {},
        {"quarter": 2031},
        {"quarter": "2031Q1", "scale_min": 10, "scale_max": 3},
        {
            "name": "backwards",
            "period_start": "2031-01-01",
            "period_end": "2031-03-31",
            "opens_at": "2031-04-10T00:00:00",
            "closes_at": "2031-03-10T00:00:00",
        },
        {"quarter": "2031Q1", "unexpected": True},
    ],
)
def test_bad_creates_are_422_problems(
    client: TestClient, hdr: dict[str, str], payload: dict[str, object]
) -> None:
    problem(client.post("/api/v1/cycles", json=payload, headers=hdr), 422)


def test_launch_read_remind_close(
    client: TestClient, db: Session, settings: Settings, hdr: dict[str, str]
) -> None:
    company = make_company(db, suppliers=2, customers=3)
    cycle = make_cycle(db, closes_at=utcnow() + timedelta(days=10))
    r = client.post(f"/api/v1/cycles/{cycle.id}/launch", headers=hdr)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "open" and r.json()["invited"] == 3
    # Launching again changes nothing.
    again = client.post(f"/api/v1/cycles/{cycle.id}/launch", headers=hdr)
    assert again.status_code == 200 and again.json()["invited"] == 3
    assert db.scalar(select(func.count()).select_from(Invitation)) == 3

    invitation = invitation_of(db, cycle, company.customers[0])
    ratings_service.submit_answers(
        db,
        invitation_id=invitation.id,
        answers=answers_for(db, cycle, company.suppliers),
        secret_key=settings.secret_key,
    )
    detail = client.get(f"/api/v1/cycles/{cycle.id}", headers=hdr).json()
    assert (detail["invited"], detail["responded"]) == (3, 1)
    assert detail["response_rate"] == pytest.approx(1 / 3)
    assert detail["departments"] == [
        {
            "department_id": company.departments[0].id,
            "name": "Sales",
            "invited": 3,
            "responded": 1,
            "response_rate": pytest.approx(1 / 3),
        }
    ]
    assert detail["undeliverable"] == 0
    # Nothing in the answer names who responded.
    assert company.customers[0].email not in str(detail)
    assert company.customers[0].full_name not in str(detail)

    reminded = client.post(f"/api/v1/cycles/{cycle.id}/reminders", headers=hdr)
    assert reminded.status_code == 200 and reminded.json() == {"queued": 2}
    assert client.post(f"/api/v1/cycles/{cycle.id}/reminders", headers=hdr).json() == {"queued": 0}
    assert (
        db.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "reminder")
        )
        == 2
    )

    queued = client.post(f"/api/v1/cycles/{cycle.id}/close", headers=hdr)
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert (job["state"], job["step"], job["percent"]) == ("queued", "queued", 0)
    assert queued.headers["location"] == job["href"]
    # Asked again while queued: the same job, nothing new.
    again = client.post(f"/api/v1/cycles/{cycle.id}/close", headers=hdr)
    assert again.status_code == 202 and again.json()["id"] == job["id"]
    assert client.get(f"/api/v1/cycles/{cycle.id}", headers=hdr).json()["state"] == "open"
    assert finish_close_jobs(db, settings) == 1
    done = client.get(job["href"], headers=hdr).json()
    assert (done["state"], done["step"], done["percent"]) == ("done", "results ready", 100)
    assert done["finished_at"] and done["error"] is None
    closed = client.get(f"/api/v1/cycles/{cycle.id}", headers=hdr).json()
    assert closed["state"] == "closed" and closed["responded"] == 1
    # Closing a closed cycle changes nothing: its finished job, 200.
    repeat = client.post(f"/api/v1/cycles/{cycle.id}/close", headers=hdr)
    assert repeat.status_code == 200 and repeat.json()["id"] == job["id"]
    problem(client.get(f"/api/v1/cycles/{cycle.id}/close-jobs/424242", headers=hdr), 404)
    closes = db.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "close", AuditEntry.entity_id == str(cycle.id)
        )
    ).all()
    assert len(closes) == 1 and closes[0].actor.startswith("api-key:")
    problem(client.post(f"/api/v1/cycles/{cycle.id}/reminders", headers=hdr), 409)


def test_errors_on_unknown_and_draft_cycles(
    client: TestClient, db: Session, hdr: dict[str, str]
) -> None:
    for method, path in [
        ("get", "/api/v1/cycles/424242"),
        ("post", "/api/v1/cycles/424242/launch"),
        ("post", "/api/v1/cycles/424242/close"),
        ("post", "/api/v1/cycles/424242/reminders"),
    ]:
        problem(getattr(client, method)(path, headers=hdr), 404)
    problem(client.get("/api/v1/cycles/not-a-number", headers=hdr), 422)
    draft = make_cycle(db)
    db.commit()
    problem(client.post(f"/api/v1/cycles/{draft.id}/close", headers=hdr), 409)
    problem(client.post(f"/api/v1/cycles/{draft.id}/reminders", headers=hdr), 409)
    # Launching with nobody to invite is refused.
    problem(client.post(f"/api/v1/cycles/{draft.id}/launch", headers=hdr), 422)


def test_every_cycles_route_is_documented(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    routes = {p: ops for p, ops in spec["paths"].items() if p.startswith("/api/v1/cycles")}
    expected = {
        "/api/v1/cycles",
        "/api/v1/cycles/{cycle_id}",
        "/api/v1/cycles/{cycle_id}/launch",
        "/api/v1/cycles/{cycle_id}/reminders",
        "/api/v1/cycles/{cycle_id}/close",
        "/api/v1/cycles/{cycle_id}/close-jobs/{job_id}",
    }
    assert expected <= set(routes)
    for path in expected:
        for op in routes[path].values():
            assert op["summary"] and op["description"]
            assert "401" in op["responses"] and "403" in op["responses"]
