"""POST /api/v1/employees/{external_id}/erase."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.org.models import Employee
from app.reports.models import EmployeeResult
from tests.factories import auth_header, make_api_key
from tests.reports.factories import build_three_levels


def test_erase_through_the_api(client: TestClient, db: Session) -> None:
    org = build_three_levels(db)
    person = org["e1"]
    reader = auth_header(make_api_key(db, "org:read"))
    writer = auth_header(make_api_key(db, "org:write", name="HRIS"))
    db.commit()
    url = f"/api/v1/employees/{person.external_id}/erase"
    assert client.post(url, headers=reader).status_code == 403
    assert client.post("/api/v1/employees/NOPE/erase", headers=writer).status_code == 404

    r = client.post(url, headers=writer, params={"delete_results": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pseudonym"] == f"erased-{person.id}" and body["results_deleted"] >= 1
    assert db.scalar(select(Employee.full_name).where(Employee.id == person.id)) != "e1"
    assert db.scalar(select(EmployeeResult).where(EmployeeResult.employee_id == person.id)) is None
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "erase employee"))
    assert entry is not None and entry.actor == "api-key:HRIS"
    # The old external id no longer names anyone.
    assert client.post(url, headers=writer).status_code == 404
