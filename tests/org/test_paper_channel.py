"""The paper-channel flag: through the API, CSV and XLSX imports, and the HR screen."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.org.models import Employee
from app.uploads import parsing
from tests.auth.helpers import sign_in
from tests.factories import make_employee
from tests.org.test_api import API, assert_problem, headers
from tests.org.test_import import _xlsx

IMPORT = f"{API}/import/employees"


def _flags(db: Session) -> dict[str, bool]:
    db.expire_all()
    rows = db.execute(select(Employee.external_id, Employee.paper_channel))
    return {ext: bool(flag) for ext, flag in rows}


def _audits(db: Session, action: str) -> list[AuditEntry]:
    return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_api_sets_keeps_and_clears_the_flag(client: TestClient, db: Session) -> None:
    h = headers(db, "org:write", "org:read")
    body = {"email": "p@example.com", "full_name": "Pavel Paper"}
    r = client.put(f"{API}/employees/P1", json={**body, "paper_channel": True}, headers=h)
    assert r.status_code == 201 and r.json()["paper_channel"] is True
    kept = client.put(f"{API}/employees/P1", json=body, headers=h)  # omitted: kept
    assert kept.status_code == 200 and kept.json()["paper_channel"] is True
    off = client.put(f"{API}/employees/P1", json={**body, "paper_channel": False}, headers=h)
    assert off.json()["paper_channel"] is False
    assert [a.entity_id for a in _audits(db, "paper channel off")] == ["P1"]
    bad = client.put(f"{API}/employees/P1", json={**body, "paper_channel": "maybe"}, headers=h)
    assert_problem(bad, 422)
    assert client.get(f"{API}/employees/P1", headers=h).json()["paper_channel"] is False


def test_csv_and_xlsx_imports_set_the_flag_and_an_empty_cell_keeps_it(
    client: TestClient, db: Session
) -> None:
    make_employee(db, external_id="OLD", email="old@example.com", paper_channel=True)
    h = headers(db, "org:write")
    csv = (
        "external_id,email,full_name,paper_channel\n"
        "OLD,old@example.com,Old Hand,\n"
        "NEW1,new1@example.com,New One,yes\n"
        "NEW2,new2@example.com,New Two,\n"
    )
    r = client.post(IMPORT, content=csv.encode(), headers={**h, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert _flags(db) == {"OLD": True, "NEW1": True, "NEW2": False}

    data = _xlsx(
        [
            ["external_id", "email", "full_name", "paper_channel"],
            ["OLD", "old@example.com", "Old Hand", False],
            ["NEW2", "new2@example.com", "New Two", "true"],
        ]
    )
    r = client.post(IMPORT, content=data, headers={**h, "content-type": parsing.XLSX_TYPE})
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 2
    assert _flags(db) == {"OLD": False, "NEW1": True, "NEW2": True}

    bad = "external_id,email,full_name,paper_channel\nX,x@example.com,X,perhaps\n"
    r = client.post(IMPORT, content=bad.encode(), headers={**h, "content-type": "text/csv"})
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "paper_channel"


def test_hr_screen_switches_the_channel_with_an_audit(client: TestClient, db: Session) -> None:
    emp = make_employee(db, full_name="Floor Worker")
    signed = sign_in(client, db)
    page = client.get("/org/employees")
    assert f"/org/employees/{emp.id}/paper-channel" in page.text
    r = client.post(
        f"/org/employees/{emp.id}/paper-channel",
        data={"csrf_token": signed.csrf, "on": "true", "back": "/org/employees"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("notice=paper_on")
    db.refresh(emp)
    assert emp.paper_channel
    assert "paper" in client.get("/org/employees").text
    assert [a.actor for a in _audits(db, "paper channel on")] == [signed.user.email]
    refused = client.post(
        f"/org/employees/{emp.id}/paper-channel", data={"csrf_token": "nope", "on": "false"}
    )
    assert refused.status_code == 403
    db.refresh(emp)
    assert emp.paper_channel
