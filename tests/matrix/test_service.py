"""Matrix services the HR screens use: add, remove, views, counts."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid, NotFound
from app.matrix import service as matrix_service
from app.org import service as org_service
from tests.factories import link, make_department, make_employee


def test_add_and_remove_customer(db: Session) -> None:
    s, a = make_employee(db), make_employee(db)
    matrix_service.add_customer(db, supplier_id=s.id, customer_id=a.id)
    assert [e.id for e in matrix_service.customers_of(db, supplier_id=s.id)] == [a.id]
    assert [e.id for e in matrix_service.suppliers_of(db, customer_id=a.id)] == [s.id]
    with pytest.raises(Conflict):
        matrix_service.add_customer(db, supplier_id=s.id, customer_id=a.id)
    assert matrix_service.remove_customer(db, supplier_id=s.id, customer_id=a.id) is True
    assert matrix_service.remove_customer(db, supplier_id=s.id, customer_id=a.id) is False


def test_add_customer_rules(db: Session) -> None:
    s, gone = make_employee(db), make_employee(db, active=False)
    with pytest.raises(Invalid):
        matrix_service.add_customer(db, supplier_id=s.id, customer_id=s.id)
    with pytest.raises(Invalid):
        matrix_service.add_customer(db, supplier_id=s.id, customer_id=gone.id)
    with pytest.raises(Invalid):
        matrix_service.add_customer(db, supplier_id=gone.id, customer_id=s.id)
    with pytest.raises(NotFound):
        matrix_service.add_customer(db, supplier_id=s.id, customer_id=10**9)


def test_counts_and_rows(db: Session) -> None:
    dept = make_department(db)
    s1, s2, *cs = [make_employee(db, department=dept) for _ in range(6)]
    for c in cs:
        link(db, supplier=s1, customer=c)
    link(db, supplier=s2, customer=s1)
    counts = matrix_service.counts(db, min_customers=3)
    assert (counts.links, counts.suppliers, counts.customers) == (5, 2, 5)
    assert counts.suppliers_below_min == 1
    assert matrix_service.customer_counts(db) == {s1.id: 4, s2.id: 1}
    rows = matrix_service.matrix_rows(db, supplier_id=s1.id)
    assert len(rows) == 4 and rows[0].supplier_department_name == dept.name
    assert matrix_service.count_matrix_rows(db, department_id=dept.id) == 5


def test_deactivation_removes_live_links(db: Session) -> None:
    s, a = make_employee(db), make_employee(db)
    link(db, supplier=s, customer=a)
    org_service.deactivate_employee(db, external_id=a.external_id)
    assert matrix_service.customers_of(db, supplier_id=s.id) == []
