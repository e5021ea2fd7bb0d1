"""HR screens for the organisation: department tree, employees, competencies."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry, Role
from app.matrix.models import MatrixLink
from app.org.models import Competency, Employee
from tests.auth.helpers import sign_in
from tests.factories import link, make_competency, make_department, make_employee


def _audit(db: Session, action: str, entity: str) -> list[AuditEntry]:
    return list(
        db.scalars(
            select(AuditEntry).where(AuditEntry.action == action, AuditEntry.entity == entity)
        )
    )


def test_department_tree_nests_children_with_head_counts(client: TestClient, db: Session) -> None:
    root = make_department(db, name="Operations")
    child = make_department(db, name="Logistics", parent=root)
    make_department(db, name="Warehouse Berlin", parent=child)
    make_employee(db, department=child)
    make_employee(db, department=root)
    sign_in(client, db)
    r = client.get("/org/departments")
    assert r.status_code == 200
    html = r.text
    assert "<title>Departments · Peer360</title>" in html
    # Children are rendered inside their parent's list, in order.
    assert html.index("Operations") < html.index("Logistics") < html.index("Warehouse Berlin")
    assert "2 people" in html  # Operations counts its sub-departments too
    assert f"/org/employees?department={child.id}" in html
    assert 'aria-label="Breadcrumb"' in html


def test_employees_search_filter_and_pagination(client: TestClient, db: Session) -> None:
    sales = make_department(db, name="Sales")
    emea = make_department(db, name="EMEA", parent=sales)
    other = make_department(db, name="Finance")
    make_employee(db, department=emea, full_name="Zora Quince", email="zq@example.com")
    make_employee(db, department=other, full_name="Quentin Finance")
    gone = make_employee(db, department=sales, full_name="Quinn Leaver", active=False)
    for i in range(30):
        make_employee(db, department=other, full_name=f"Bulk Person {i:02d}")
    sign_in(client, db)

    r = client.get("/org/employees", params={"q": "zq@EXAMPLE"})
    assert "Zora Quince" in r.text and "Quentin" not in r.text

    # A department includes its sub-departments.
    r = client.get("/org/employees", params={"department": sales.id})
    assert "Zora Quince" in r.text and "Quentin" not in r.text
    assert "Quinn Leaver" not in r.text  # active only by default
    r = client.get("/org/employees", params={"department": sales.id, "status": "inactive"})
    assert "Quinn Leaver" in r.text and f"/org/employees/{gone.id}/reactivate" in r.text

    r = client.get("/org/employees", params={"department": other.id})
    assert "31 employees" in r.text
    assert "Page 1 of 2" in r.text
    page2 = client.get("/org/employees", params={"department": other.id, "page": 2})
    assert "Page 2 of 2" in page2.text
    assert "Bulk Person 29" in page2.text and "Bulk Person 00" not in page2.text


def test_employee_filters_never_fail_on_junk(client: TestClient, db: Session) -> None:
    sign_in(client, db)
    for params in (
        {"page": "abc"},
        {"page": "-4"},
        {"page": "999999"},
        {"department": "x"},
        {"department": "987654"},
        {"status": "weird"},
        {"q": "%_\\"},
        {"q": "a" * 300},
    ):
        r = client.get("/org/employees", params=params)
        assert r.status_code == 200, params
    r = client.get("/org/employees", params={"q": "bad\x01char"})
    assert r.status_code == 200
    assert 'aria-invalid="true"' in r.text


def test_deactivate_asks_for_confirmation_then_deactivates(client: TestClient, db: Session) -> None:
    a = make_employee(db, full_name="Leaving Person")
    b = make_employee(db)
    link(db, supplier=a, customer=b)
    signed = sign_in(client, db)
    confirm = client.get(f"/org/employees/{a.id}/deactivate", params={"back": "/org/employees?q=L"})
    assert confirm.status_code == 200
    assert "Deactivate Leaving Person?" in confirm.text
    assert 'value="/org/employees?q=L"' in confirm.text
    db.refresh(a)
    assert a.active  # nothing happened on GET

    r = client.post(
        f"/org/employees/{a.id}/deactivate",
        data={"csrf_token": signed.csrf, "back": "/org/employees?q=L"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/org/employees?q=L&notice=deactivated"
    db.refresh(a)
    assert not a.active
    assert db.scalar(select(MatrixLink).where(MatrixLink.supplier_id == a.id)) is None
    entry = _audit(db, "deactivate", "employee")
    assert (
        entry
        and entry[0].actor == signed.user.email
        and "Leaving Person" in (entry[0].detail or "")
    )

    r = client.post(
        f"/org/employees/{a.id}/reactivate",
        data={"csrf_token": signed.csrf, "back": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/org/employees?notice=reactivated"
    db.refresh(a)
    assert a.active


def test_deactivate_without_csrf_changes_nothing(client: TestClient, db: Session) -> None:
    a = make_employee(db)
    sign_in(client, db)
    db.commit()
    r = client.post(f"/org/employees/{a.id}/deactivate", data={"csrf_token": "nope"})
    assert r.status_code == 403
    db.refresh(a)
    assert a.active


def test_unknown_employee_is_a_friendly_404(client: TestClient, db: Session) -> None:
    sign_in(client, db)
    r = client.get("/org/employees/999999/deactivate")
    assert r.status_code == 404
    assert "Not found" in r.text
    assert client.get("/org/employees/abc/deactivate").status_code == 422


def test_competency_list_and_edit(client: TestClient, db: Session) -> None:
    comp = make_competency(db, name="Responsiveness", indicators=["Answers fast"])
    signed = sign_in(client, db)
    r = client.get("/org/competencies")
    assert "Responsiveness" in r.text and "Answers fast" in r.text
    form = client.get(f"/org/competencies/{comp.id}")
    assert "Answers fast</textarea>" in form.text
    r = client.post(
        f"/org/competencies/{comp.id}",
        data={
            "csrf_token": signed.csrf,
            "name": "Speed of response",
            "description": "How quickly",
            "indicators": "Answers within a day\n\n  Warns early about delays  \n",
            "weight": "1,5",
            "display_order": "3",
            "active": "on",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    db.refresh(comp)
    assert comp.name == "Speed of response"
    assert comp.indicators == ["Answers within a day", "Warns early about delays"]
    assert comp.weight == 1.5 and comp.display_order == 3 and comp.active
    (entry,) = _audit(db, "update", "competency")
    assert "name" in (entry.detail or "") and "weight" in (entry.detail or "")


def test_competency_edit_errors_show_next_to_fields_and_keep_input(
    client: TestClient, db: Session
) -> None:
    comp = make_competency(db, name="Quality")
    signed = sign_in(client, db)
    r = client.post(
        f"/org/competencies/{comp.id}",
        data={
            "csrf_token": signed.csrf,
            "name": "",
            "description": "typed text stays",
            "indicators": "one\ntwo",
            "weight": "heavy",
            "display_order": "1.5",
        },
    )
    assert r.status_code == 422
    assert 'id="weight-error"' in r.text and 'id="display_order-error"' in r.text
    assert "typed text stays" in r.text and 'value="heavy"' in r.text
    db.refresh(comp)
    assert comp.name == "Quality"
    r = client.post(
        f"/org/competencies/{comp.id}",
        data={"csrf_token": signed.csrf, "name": "Q", "weight": "0", "display_order": "1"},
    )
    assert r.status_code == 422 and 'id="weight-error"' in r.text
    r = client.post(
        f"/org/competencies/{comp.id}",
        data={
            "csrf_token": signed.csrf,
            "name": "Q",
            "weight": "1",
            "display_order": "1",
            "indicators": "x" * 301,
        },
    )
    assert r.status_code == 422 and 'id="indicators-error"' in r.text


def test_create_competency_and_refuse_a_taken_code(client: TestClient, db: Session) -> None:
    make_competency(db, code="taken")
    signed = sign_in(client, db)
    assert client.get("/org/competencies/new").status_code == 200
    data = {
        "csrf_token": signed.csrf,
        "code": "taken",
        "name": "New one",
        "weight": "1",
        "display_order": "9",
        "active": "on",
    }
    r = client.post("/org/competencies/new", data=data)
    assert r.status_code == 422 and "already has this code" in r.text
    r = client.post("/org/competencies/new", data={**data, "code": "Bad Code!"})
    assert r.status_code == 422 and 'id="code-error"' in r.text
    r = client.post(
        "/org/competencies/new", data={**data, "code": "ownership"}, follow_redirects=False
    )
    assert r.status_code == 303
    created = db.scalar(select(Competency).where(Competency.code == "ownership"))
    assert created is not None and created.name == "New one"
    assert _audit(db, "create", "competency")


def test_manager_cannot_open_org_pages(client: TestClient, db: Session) -> None:
    boss = make_employee(db)
    sign_in(client, db, role=Role.manager, employee=boss)
    for url in ("/org/departments", "/org/employees", "/org/competencies"):
        assert client.get(url).status_code == 403
    assert db.scalar(select(Employee).where(Employee.id == boss.id)) is not None
