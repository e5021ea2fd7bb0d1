"""The HRIS API for departments, employees and competencies, and its API-key guard."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.matrix.models import MatrixLink
from app.org.models import Department, Employee
from tests.factories import (
    auth_header,
    link,
    make_api_key,
    make_department,
    make_employee,
)

API = "/api/v1"


def headers(db: Session, *scopes: str) -> dict[str, str]:
    """A key's header; commits the test's set-up so a failing request (which rolls the
    request's work back) cannot take the set-up with it."""
    h = auth_header(make_api_key(db, *scopes))
    db.commit()
    return h


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict = response.json()
    assert body["status"] == status
    return body


# --- auth -------------------------------------------------------------------------------


def test_missing_key_is_401(client: TestClient) -> None:
    r = client.get(f"{API}/departments")
    body = assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Authorization" in body["detail"]


def test_bad_key_is_401(client: TestClient) -> None:
    r = client.get(f"{API}/employees", headers=auth_header("p360_not-a-real-key"))
    assert_problem(r, 401)


def test_revoked_key_is_401(client: TestClient, db: Session) -> None:
    key, plaintext = auth_service.create_api_key(db, name="old", scopes=["org:read"])
    db.commit()
    assert client.get(f"{API}/departments", headers=auth_header(plaintext)).status_code == 200
    auth_service.revoke_api_key(db, key_id=key.id)
    db.commit()
    assert_problem(client.get(f"{API}/departments", headers=auth_header(plaintext)), 401)


def test_key_in_query_string_is_refused(client: TestClient, db: Session) -> None:
    plaintext = make_api_key(db)
    db.commit()
    r = client.get(f"{API}/departments", params={"api_key": plaintext})
    body = assert_problem(r, 401)
    assert "never in the URL" in body["detail"]
    # Even alongside a valid header: the key has leaked into a URL either way.
    r = client.get(
        f"{API}/departments", params={"token": plaintext}, headers=auth_header(plaintext)
    )
    assert_problem(r, 401)


def test_read_only_key_cannot_write(client: TestClient, db: Session) -> None:
    h = headers(db, "org:read")
    assert client.get(f"{API}/employees", headers=h).status_code == 200
    r = client.put(f"{API}/departments/D1", json={"name": "X"}, headers=h)
    body = assert_problem(r, 403)
    assert "org:write" in body["detail"]
    assert db.scalar(select(func.count()).select_from(Department)) == 0


def test_write_only_key_cannot_read(client: TestClient, db: Session) -> None:
    h = headers(db, "org:write")
    assert_problem(client.get(f"{API}/employees", headers=h), 403)
    assert_problem(client.get(f"{API}/matrix", headers=h), 403)


def test_other_scopes_do_not_open_the_org_api(client: TestClient, db: Session) -> None:
    h = headers(db, "cycles:read", "cycles:write", "results:read")
    assert_problem(client.get(f"{API}/departments", headers=h), 403)
    assert_problem(
        client.post(
            f"{API}/import/employees",
            content=b"external_id,email,full_name\nE1,a@x.io,A\n",
            headers={**h, "content-type": "text/csv"},
        ),
        403,
    )


# --- departments -----------------------------------------------------------------------


def test_put_department_creates_then_updates(client: TestClient, db: Session) -> None:
    h = headers(db)
    r = client.put(f"{API}/departments/ROOT", json={"name": "Company"}, headers=h)
    assert r.status_code == 201
    assert r.headers["location"].endswith("/api/v1/departments/ROOT")
    assert r.json()["parent_external_id"] is None
    r = client.put(
        f"{API}/departments/OPS", json={"name": "Ops", "parent_external_id": "ROOT"}, headers=h
    )
    assert r.status_code == 201
    assert r.json()["parent_external_id"] == "ROOT"
    r = client.put(
        f"{API}/departments/OPS",
        json={"name": "Operations", "parent_external_id": "ROOT"},
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["name"] == "Operations"
    listed = client.get(f"{API}/departments", headers=h).json()
    assert [(d["external_id"], d["parent_external_id"]) for d in listed] == [
        ("ROOT", None),
        ("OPS", "ROOT"),
    ]
    assert client.get(f"{API}/departments/OPS", headers=h).json()["name"] == "Operations"


def test_department_unknown_parent_is_422(client: TestClient, db: Session) -> None:
    r = client.put(
        f"{API}/departments/D1",
        json={"name": "X", "parent_external_id": "NOPE"},
        headers=headers(db),
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "parent_external_id"
    assert "NOPE" in body["errors"][0]["message"]


def test_department_cycle_is_409(client: TestClient, db: Session) -> None:
    a = make_department(db, external_id="A")
    b = make_department(db, external_id="B", parent=a)
    make_department(db, external_id="C", parent=b)
    r = client.put(
        f"{API}/departments/A", json={"name": "A", "parent_external_id": "C"}, headers=headers(db)
    )
    body = assert_problem(r, 409)
    assert "cycle" in body["detail"]
    assert "A -> C -> B -> A" in body["detail"] or "A -> B" in body["detail"]
    db.refresh(a)
    assert a.parent_id is None


def test_department_cannot_be_its_own_parent(client: TestClient, db: Session) -> None:
    make_department(db, external_id="A")
    r = client.put(
        f"{API}/departments/A", json={"name": "A", "parent_external_id": "A"}, headers=headers(db)
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "parent_external_id"


def test_department_bad_input(client: TestClient, db: Session) -> None:
    h = headers(db)
    assert_problem(client.put(f"{API}/departments/D1", json={"name": ""}, headers=h), 422)
    assert_problem(client.put(f"{API}/departments/D1", json={"name": "a\x00b"}, headers=h), 422)
    assert_problem(
        client.put(f"{API}/departments/D1", json={"name": "x", "extra": 1}, headers=h), 422
    )
    assert_problem(client.put(f"{API}/departments/D1", content=b"{not json", headers=h), 422)
    assert_problem(client.put(f"{API}/departments/%20D1", json={"name": "x"}, headers=h), 422)
    assert_problem(client.get(f"{API}/departments/nope", headers=h), 404)


# --- employees -------------------------------------------------------------------------


def _employee(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"email": "Anna.Ivanova@Example.com", "full_name": "Anna Ivanova"}
    body.update(kw)
    return body


def test_put_employee_create_update_unchanged(client: TestClient, db: Session) -> None:
    dept = make_department(db, external_id="PAY")
    boss = make_employee(db, external_id="BOSS", department=dept)
    h = headers(db)
    r = client.put(
        f"{API}/employees/E1",
        json=_employee(department_external_id="PAY", manager_external_id="BOSS"),
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "anna.ivanova@example.com"
    assert body["language"] == "en"
    assert body["active"] is True
    assert (body["department_external_id"], body["manager_external_id"]) == ("PAY", "BOSS")

    again = client.put(
        f"{API}/employees/E1",
        json=_employee(department_external_id="PAY", manager_external_id="BOSS"),
        headers=h,
    )
    assert again.status_code == 200
    assert again.json()["updated_at"] == body["updated_at"]

    changed = client.put(f"{API}/employees/E1", json=_employee(language="ru"), headers=h)
    assert changed.status_code == 200
    assert changed.json()["language"] == "ru"
    assert changed.json()["department_external_id"] is None  # PUT replaces every field
    emp = db.scalar(select(Employee).where(Employee.external_id == "E1"))
    assert emp is not None and emp.manager_id is None and boss.id != emp.id


def test_get_employee_and_404(client: TestClient, db: Session) -> None:
    make_employee(db, external_id="E7", full_name="Seven")
    h = headers(db)
    assert client.get(f"{API}/employees/E7", headers=h).json()["full_name"] == "Seven"
    body = assert_problem(client.get(f"{API}/employees/E8", headers=h), 404)
    assert "E8" in body["detail"]


def test_duplicate_email_in_other_case_is_409(client: TestClient, db: Session) -> None:
    make_employee(db, external_id="E1", email="anna@example.com")
    r = client.put(
        f"{API}/employees/E2", json=_employee(email="ANNA@Example.COM"), headers=headers(db)
    )
    body = assert_problem(r, 409)
    assert body["errors"][0]["field"] == "email"
    assert "E1" in body["detail"]


def test_employee_unknown_department_and_manager_are_422(client: TestClient, db: Session) -> None:
    h = headers(db)
    r = client.put(
        f"{API}/employees/E1",
        json=_employee(department_external_id="NOPE", manager_external_id="GHOST"),
        headers=h,
    )
    body = assert_problem(r, 422)
    assert {e["field"] for e in body["errors"]} == {
        "department_external_id",
        "manager_external_id",
    }
    assert db.scalar(select(func.count()).select_from(Employee)) == 0


def test_employee_cannot_manage_themselves(client: TestClient, db: Session) -> None:
    r = client.put(
        f"{API}/employees/E1", json=_employee(manager_external_id="E1"), headers=headers(db)
    )
    assert assert_problem(r, 422)["errors"][0]["field"] == "manager_external_id"


def test_reporting_loop_is_409(client: TestClient, db: Session) -> None:
    a = make_employee(db, external_id="A")
    make_employee(db, external_id="B", manager=a)
    r = client.put(
        f"{API}/employees/A",
        json=_employee(email=a.email, full_name="A", manager_external_id="B"),
        headers=headers(db),
    )
    assert "loop" in assert_problem(r, 409)["detail"]


def test_employee_bad_fields_are_422(client: TestClient, db: Session) -> None:
    h = headers(db)
    for body in (
        _employee(email="not-an-email"),
        _employee(full_name=""),
        _employee(full_name="x" * 201),
        _employee(language="english please"),
        _employee(active="maybe"),
        {"full_name": "No email"},
    ):
        assert_problem(client.put(f"{API}/employees/E1", json=body, headers=h), 422)
    assert db.scalar(select(func.count()).select_from(Employee)) == 0


def test_list_employees_filters_and_pages(client: TestClient, db: Session) -> None:
    top = make_department(db, external_id="TOP")
    sub = make_department(db, external_id="SUB", parent=top)
    make_employee(db, external_id="E1", full_name="Anna", department=top)
    make_employee(db, external_id="E2", full_name="Boris", department=sub)
    make_employee(db, external_id="E3", full_name="Chen", department=sub, active=False)
    make_employee(db, external_id="E4", full_name="Dana", email="dana_100%@example.com")
    h = headers(db)

    def ids(**params: object) -> list[str]:
        r = client.get(f"{API}/employees", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [e["external_id"] for e in r.json()["items"]]

    assert ids() == ["E1", "E2", "E3", "E4"]
    assert ids(department="TOP") == ["E1"]
    assert ids(department="TOP", include_sub_departments="true") == ["E1", "E2", "E3"]
    assert ids(department="SUB", active="true") == ["E2"]
    assert ids(active="false") == ["E3"]
    assert ids(q="bor") == ["E2"]
    assert ids(q="100%") == ["E4"]  # LIKE wildcards are matched literally
    assert ids(q="_") == ["E4"]
    page = client.get(f"{API}/employees", params={"limit": 2, "offset": 1}, headers=h).json()
    assert page["total"] == 4
    assert [e["external_id"] for e in page["items"]] == ["E2", "E3"]
    assert_problem(client.get(f"{API}/employees", params={"department": "X"}, headers=h), 404)
    assert_problem(client.get(f"{API}/employees", params={"limit": 0}, headers=h), 422)
    assert_problem(client.get(f"{API}/employees", params={"q": "a\x00"}, headers=h), 422)


def test_delete_deactivates_and_leaves_the_live_matrix(client: TestClient, db: Session) -> None:
    a = make_employee(db, external_id="A")
    b = make_employee(db, external_id="B")
    c = make_employee(db, external_id="C")
    link(db, supplier=a, customer=b)
    link(db, supplier=b, customer=a)
    link(db, supplier=c, customer=b)
    h = headers(db)
    r = client.delete(f"{API}/employees/A", headers=h)
    assert r.status_code == 200
    assert r.json()["active"] is False
    db.expire_all()
    assert db.get(Employee, a.id) is not None  # never deleted
    remaining = db.execute(select(MatrixLink.supplier_id, MatrixLink.customer_id)).all()
    assert [tuple(p) for p in remaining] == [(c.id, b.id)]
    assert client.delete(f"{API}/employees/A", headers=h).status_code == 200  # idempotent
    assert_problem(client.delete(f"{API}/employees/NOPE", headers=h), 404)


def test_put_inactive_drops_matrix_links(client: TestClient, db: Session) -> None:
    a = make_employee(db, external_id="A", email="a@example.com", full_name="A")
    b = make_employee(db, external_id="B")
    link(db, supplier=b, customer=a)
    r = client.put(
        f"{API}/employees/A",
        json={"email": "a@example.com", "full_name": "A", "active": False},
        headers=headers(db),
    )
    assert r.status_code == 200
    assert db.scalar(select(func.count()).select_from(MatrixLink)) == 0


# --- competencies ----------------------------------------------------------------------


def test_competencies_upsert_and_list(client: TestClient, db: Session) -> None:
    h = headers(db)
    body = {
        "name": "Responsiveness",
        "description": "Reacts quickly.\nKeeps me informed.",
        "indicators": ["Answers within a day", "  ", "Warns early"],
        "weight": 1.5,
        "display_order": 20,
    }
    r = client.put(f"{API}/competencies/responsiveness", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["indicators"] == ["Answers within a day", "Warns early"]
    assert client.put(f"{API}/competencies/responsiveness", json=body, headers=h).status_code == 200
    client.put(
        f"{API}/competencies/quality", json={"name": "Quality", "display_order": 10}, headers=h
    )
    client.put(f"{API}/competencies/old", json={"name": "Old", "active": False}, headers=h)
    listed = client.get(f"{API}/competencies", headers=h).json()
    assert [c["code"] for c in listed] == ["old", "quality", "responsiveness"]
    active = client.get(f"{API}/competencies", params={"active": "true"}, headers=h).json()
    assert [c["code"] for c in active] == ["quality", "responsiveness"]


def test_competency_bad_input(client: TestClient, db: Session) -> None:
    h = headers(db)
    for body in (
        {"name": "X", "weight": 0},
        {"name": "X", "weight": -1},
        {"name": ""},
        {"name": "X", "indicators": ["x" * 301]},
        {"name": "X", "indicators": ["a\nb"]},
    ):
        assert_problem(client.put(f"{API}/competencies/c1", json=body, headers=h), 422)
    assert_problem(client.put(f"{API}/competencies/Bad Code", json={"name": "X"}, headers=h), 422)
