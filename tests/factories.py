"""Plain factory functions for test data: ``make_employee(session, department=...)``."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.mail import service as mail_service
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
from app.org.models import Competency, Department, Employee

_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


def make_department(session: Session, *, parent: Department | None = None, **kw: Any) -> Department:
    n = _n()
    dept = Department(
        external_id=kw.pop("external_id", f"D{n}"),
        name=kw.pop("name", f"Department {n}"),
        parent_id=parent.id if parent else None,
        **kw,
    )
    session.add(dept)
    session.flush()
    return dept


def make_employee(
    session: Session,
    *,
    department: Department | None = None,
    manager: Employee | None = None,
    **kw: Any,
) -> Employee:
    n = _n()
    emp = Employee(
        external_id=kw.pop("external_id", f"E{n}"),
        email=kw.pop("email", f"employee{n}@example.com").lower(),
        full_name=kw.pop("full_name", f"Employee {n}"),
        department_id=department.id if department else None,
        manager_id=manager.id if manager else None,
        language=kw.pop("language", "en"),
        active=kw.pop("active", True),
        **kw,
    )
    session.add(emp)
    session.flush()
    return emp


def make_competency(session: Session, **kw: Any) -> Competency:
    n = _n()
    comp = Competency(
        code=kw.pop("code", f"c{n}"),
        name=kw.pop("name", f"Competency {n}"),
        description=kw.pop("description", "What it means"),
        indicators=kw.pop("indicators", ["Does A", "Does B"]),
        weight=kw.pop("weight", 1.0),
        display_order=kw.pop("display_order", n),
        **kw,
    )
    session.add(comp)
    session.flush()
    return comp


def link(session: Session, *, supplier: Employee, customer: Employee) -> MatrixLink:
    row = MatrixLink(supplier_id=supplier.id, customer_id=customer.id)
    session.add(row)
    session.flush()
    return row


def make_api_key(session: Session, *scopes: str, name: str = "test key") -> str:
    """Create a key with the scopes given (all scopes when none) and return its plaintext."""
    _key, plaintext = auth_service.create_api_key(
        session, name=name, scopes=scopes or tuple(auth_service.SCOPES)
    )
    return plaintext


def auth_header(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def make_user(
    session: Session,
    *,
    role: Role = Role.hr,
    email: str | None = None,
    password: str = "correct horse battery",
    employee: Employee | None = None,
) -> User:
    return auth_service.create_user(
        session,
        email=email or f"user{_n()}@example.com",
        password=password,
        role=role,
        employee_id=employee.id if employee else None,
    )


def make_message(session: Session, *, secret_key: str, **kw: Any) -> OutboxMessage:
    """Queue one email (``mail.service.enqueue_message``); any of its fields can be given."""
    n = _n()
    fields: dict[str, Any] = {
        "kind": "test",
        "tag": None,
        "to_address": f"someone{n}@example.com",
        "to_name": "Someone",
        "subject": "Hello",
        "body_text": "Hello.",
        "body_html": None,
        "secret_link": None,
        **kw,
    }
    return mail_service.enqueue_message(session, secret_key=secret_key, **fields)
