"""Organisation services other domains rely on: the tree, reporting lines, defaults."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.org import service as org_service
from tests.factories import make_department, make_employee


def test_department_tree_and_descendants(db: Session) -> None:
    root = make_department(db, name="Company")
    ops = make_department(db, name="Operations", parent=root)
    tech = make_department(db, name="Technology", parent=root)
    team = make_department(db, name="Platform", parent=tech)
    make_employee(db, department=root)
    make_employee(db, department=team)
    make_employee(db, department=team)
    make_employee(db, department=team, active=False)

    [tree] = [n for n in org_service.department_tree(db) if n.id == root.id]
    assert [c.name for c in tree.children] == ["Operations", "Technology"]
    assert tree.total_employee_count == 3 and tree.employee_count == 1
    assert tree.children[1].children[0].employee_count == 2
    assert org_service.descendant_department_ids(db, department_id=root.id) == {
        root.id,
        ops.id,
        tech.id,
        team.id,
    }
    assert org_service.descendant_department_ids(db, department_id=team.id) == {team.id}


def test_reporting_line_ids(db: Session) -> None:
    ceo = make_employee(db)
    head = make_employee(db, manager=ceo)
    lead = make_employee(db, manager=head)
    dev = make_employee(db, manager=lead)
    peer = make_employee(db, manager=ceo)
    assert org_service.reporting_line_ids(db, manager_employee_id=head.id) == {lead.id, dev.id}
    assert org_service.reporting_line_ids(db, manager_employee_id=ceo.id) == {
        head.id,
        lead.id,
        dev.id,
        peer.id,
    }
    assert org_service.reporting_line_ids(db, manager_employee_id=dev.id) == set()


def test_upsert_employee_outcomes(db: Session) -> None:
    kw = {"external_id": "E1", "email": " X@Example.com ", "full_name": " X "}
    emp, outcome = org_service.upsert_employee(db, **kw)
    assert outcome is org_service.Outcome.created
    assert (emp.email, emp.full_name, emp.language) == ("x@example.com", "X", "en")
    assert org_service.upsert_employee(db, **kw)[1] is org_service.Outcome.unchanged
    assert org_service.upsert_employee(db, **kw, language="RU")[1] is org_service.Outcome.updated
    with pytest.raises(Conflict):
        org_service.upsert_employee(db, external_id="E2", email="x@EXAMPLE.com", full_name="Y")
    with pytest.raises(Invalid):
        org_service.upsert_employee(db, external_id="E 2/", email="y@x.io", full_name="Y")


def test_department_cycle_in_service(db: Session) -> None:
    org_service.upsert_department(db, external_id="A", name="A")
    org_service.upsert_department(db, external_id="B", name="B", parent_external_id="A")
    with pytest.raises(Conflict):
        org_service.upsert_department(db, external_id="A", name="A", parent_external_id="B")
    with pytest.raises(Invalid):
        org_service.upsert_department(db, external_id="C", name="C", parent_external_id="Z")


def test_seed_default_competencies_keeps_hr_edits(db: Session) -> None:
    assert org_service.seed_default_competencies(db) == 6
    comps = org_service.list_competencies(db)
    assert [c.code for c in comps][:2] == ["professionalism", "responsiveness"]
    assert all(3 <= len(c.indicators) <= 4 and c.description for c in comps)
    org_service.upsert_competency(db, code="teamwork", name="Team play", weight=2)
    assert org_service.seed_default_competencies(db) == 0
    assert org_service.get_competency(db, code="teamwork").name == "Team play"


def test_competency_weight_must_be_positive(db: Session) -> None:
    for weight in (0, -1, float("nan"), 1000):
        with pytest.raises(Invalid):
            org_service.upsert_competency(db, code="c", name="C", weight=weight)
