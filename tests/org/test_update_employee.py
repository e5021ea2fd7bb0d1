"""org_service.update_employee: a PATCH of some fields, under the rules of the upsert."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.matrix.models import MatrixLink
from app.org import service as org_service
from tests.factories import link, make_department, make_employee


def test_changes_only_the_fields_named(db: Session) -> None:
    dept = make_department(db, external_id="OPS")
    emp = make_employee(db, department=dept, language="ru", full_name="Old Name")
    changed = org_service.update_employee(db, employee=emp, changes={"full_name": "New Name"})
    assert changed == ["full_name"]
    assert (emp.full_name, emp.department_id, emp.language) == ("New Name", dept.id, "ru")
    assert org_service.update_employee(db, employee=emp, changes={"full_name": "New Name"}) == []


def test_renames_the_external_id_and_keeps_the_record(db: Session) -> None:
    emp = make_employee(db, external_id="OLD")
    make_employee(db, external_id="TAKEN")
    assert org_service.update_employee(db, employee=emp, changes={"external_id": "NEW"}) == [
        "external_id"
    ]
    assert org_service.get_employee(db, external_id="NEW").id == emp.id
    with pytest.raises(Conflict):
        org_service.update_employee(db, employee=emp, changes={"external_id": "TAKEN"})


def test_refuses_what_the_upsert_refuses(db: Session) -> None:
    boss = make_employee(db)
    emp = make_employee(db, manager=boss, email="me@example.com")
    other = make_employee(db, email="other@example.com")
    with pytest.raises(Conflict):
        org_service.update_employee(db, employee=emp, changes={"email": "OTHER@example.com"})
    with pytest.raises(Conflict):  # a loop in the reporting lines
        org_service.update_employee(
            db, employee=boss, changes={"manager_external_id": emp.external_id}
        )
    with pytest.raises(Invalid):
        org_service.update_employee(db, employee=emp, changes={"department_external_id": "NOPE"})
    with pytest.raises(Invalid):
        org_service.update_employee(db, employee=emp, changes={"email": "not an email"})
    assert (emp.email, boss.manager_id, other.email) == (
        "me@example.com",
        None,
        "other@example.com",
    )


def test_deactivating_drops_live_matrix_links(db: Session) -> None:
    supplier, customer = make_employee(db), make_employee(db)
    link(db, supplier=supplier, customer=customer)
    org_service.update_employee(db, employee=customer, changes={"active": False})
    assert db.query(MatrixLink).count() == 0
