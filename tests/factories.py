"""Plain factory functions for test data: ``make_employee(session, department=...)``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.db.bulk import insert_rows
from app.mail import service as mail_service
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
from app.org.models import Competency, Department, Employee
from app.ratings import service as ratings_service
from app.ratings.ballots import BOX_COLUMNS, Ballots, boxes, comments_by_supplier
from app.ratings.models import BallotBox

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


# --- ballots, as the close stores them: a box per supplier -------------------------------


@dataclass(frozen=True)
class StoredBallot:
    """One ballot read back from its box (comments are kept apart from ballots)."""

    cycle_id: int
    supplier_id: int
    nps: int | None
    scores: tuple[int | None, ...]


def store_ballots(
    session: Session,
    cycle_id: int,
    ballots: Sequence[tuple[int, int | None, str | None, Sequence[int | None]]],
) -> None:
    """Add (supplier id, nps, comment, scores in competency order) ballots to the cycle's
    boxes, as a close would have stored them."""
    order = ratings_service.cycle_competency_order(session, cycle_id=cycle_id)
    comments = [comment for _, _, comment, _ in ballots]
    suppliers = np.array([b[0] for b in ballots], dtype=np.int64)
    added = Ballots(
        competencies=order,
        suppliers=suppliers,
        nps=np.array([np.nan if b[1] is None else b[1] for b in ballots], dtype=np.float64),
        scores=np.array(
            [[np.nan if s is None else s for s in b[3]] for b in ballots], dtype=np.float64
        ).reshape(len(ballots), len(order)),
        comments=comments_by_supplier(suppliers, comments),
    )
    before = ratings_service.read_ballots(session, cycle_id=cycle_id, competencies=order)
    session.execute(delete(BallotBox).where(BallotBox.cycle_id == cycle_id))
    insert_rows(
        session,
        cast(Table, BallotBox.__table__),
        boxes(cycle_id, Ballots.joined([before, added])),
        columns=BOX_COLUMNS,
    )
    session.flush()


def stored_ballots(session: Session, *, cycle_id: int | None = None) -> list[StoredBallot]:
    """Every stored ballot (of one cycle, or of all), in the order the boxes hold them."""
    out: list[StoredBallot] = []
    cycles = session.scalars(select(BallotBox.cycle_id).distinct()).all()
    for cid in cycles if cycle_id is None else [cycle_id]:
        read = ratings_service.read_ballots(session, cycle_id=cid)
        for supplier, nps, scores in zip(
            read.suppliers.tolist(), read.nps.tolist(), read.scores.tolist(), strict=True
        ):
            out.append(
                StoredBallot(
                    cycle_id=cid,
                    supplier_id=supplier,
                    nps=None if nps != nps else int(nps),
                    scores=tuple(None if s != s else int(s) for s in scores),
                )
            )
    return out


def stored_comments(session: Session, *, cycle_id: int | None = None) -> list[str]:
    """Every comment stored in the boxes (of one cycle, or of all), box by box."""
    query = select(BallotBox.comments).order_by(BallotBox.cycle_id, BallotBox.supplier_id)
    if cycle_id is not None:
        query = query.where(BallotBox.cycle_id == cycle_id)
    return [text for texts in session.scalars(query) for text in texts or ()]


def ballot_count(session: Session, *, cycle_id: int | None = None) -> int:
    """How many ballots the boxes hold."""
    query = select(func.coalesce(func.sum(BallotBox.ballots), 0))
    if cycle_id is not None:
        query = query.where(BallotBox.cycle_id == cycle_id)
    return int(session.scalar(query) or 0)
