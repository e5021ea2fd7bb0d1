"""Retention periods and erasure, checked in the database before and after."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import AuditEntry, Role, User
from app.config import Settings
from app.cycles.models import Cycle, CycleEmployee
from app.db import utcnow
from app.lifecycle import scheduled_jobs
from app.org.models import Employee
from app.privacy import service as privacy_service
from app.ratings.models import BallotBox
from app.reports import service as reports_service
from app.reports.models import (
    CompanyResult,
    EmployeeComment,
    EmployeeResult,
)
from app.scim.models import ScimUser
from tests.factories import ballot_count, make_user, stored_ballots, stored_comments
from tests.reports.factories import build_three_levels


def rows_of(db: Session, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    columns = table.c if isinstance(table, Table) else table.__table__.c
    for name, value in where.items():
        query = query.where(columns[name] == value)
    return int(db.scalar(query) or 0)


def cycle_rows(db: Session, cycle_id: int) -> dict[str, int]:
    """Rows of every table holding this cycle's data (ballots carry their scores)."""
    return {
        table.name: rows_of(db, table, cycle_id=cycle_id)
        for table in privacy_service._tables_with_cycle_id()
    }


def test_retention_deletes_what_expired_and_nothing_else(db: Session, settings: Settings) -> None:
    now = utcnow()
    old = build_three_levels(db)["cycle"]
    middle = build_three_levels(db)["cycle"]
    recent = build_three_levels(db)["cycle"]
    old.closed_at = now - timedelta(days=1200)
    middle.closed_at = now - timedelta(days=500)
    recent.closed_at = now - timedelta(days=100)
    auth_service.record_audit(db, actor="hr@example.com", action="update", entity="employee")
    stale = db.scalars(select(AuditEntry)).all()[-1]
    stale.created_at = now - timedelta(days=800)
    auth_service.record_audit(db, actor="hr@example.com", action="launch", entity="cycle")
    db.flush()
    before = {c.id: cycle_rows(db, c.id) for c in (old, middle, recent)}
    assert before[old.id]["employee_result"] > 0 and before[old.id]["ballot_box"] > 0
    assert rows_of(db, EmployeeComment, cycle_id=middle.id) > 0

    report = privacy_service.apply_retention(db, settings=settings, now=now)

    assert report.cycles_deleted == 1 and report.audit_entries_deleted == 1
    assert db.get(Cycle, old.id) is None
    assert set(cycle_rows(db, old.id).values()) == {0}
    # Past the comment period only: the results stay, the comments go.
    after_middle = cycle_rows(db, middle.id)
    assert after_middle["employee_comment"] == 0 and report.comments_deleted > 0
    assert after_middle["employee_result"] == before[middle.id]["employee_result"]
    assert stored_comments(db, cycle_id=middle.id) == []
    assert ballot_count(db, cycle_id=middle.id) > 0  # the ballots stay, without comments
    assert cycle_rows(db, recent.id) == before[recent.id]
    assert db.scalar(select(AuditEntry).where(AuditEntry.action == "update")) is None
    assert db.scalar(select(AuditEntry).where(AuditEntry.action == "launch")) is not None
    assert db.scalar(select(AuditEntry.detail).where(AuditEntry.action == "retention"))

    # A second run finds nothing more; 0 days means "keep for ever".
    assert not privacy_service.apply_retention(db, settings=settings, now=now).anything
    forever = settings.model_copy(
        update={
            "retention_results_days": 0,
            "retention_comments_days": 0,
            "retention_audit_days": 0,
        }
    )
    later = now + timedelta(days=5000)
    assert not privacy_service.apply_retention(db, settings=forever, now=later).anything
    assert db.get(Cycle, recent.id) is not None


def test_retention_is_a_scheduled_job() -> None:
    assert ("apply retention periods", privacy_service.retention_job) in scheduled_jobs()


def test_erasure_pseudonymises_everywhere_and_keeps_anonymous_ballots(db: Session) -> None:
    org = build_three_levels(db)
    cycle, person = org["cycle"], org["e1"]
    email, external_id, name = person.email, person.external_id, person.full_name
    db.add(ScimUser(employee_id=person.id, user_name="e1@idp.example", given_name="Eve"))
    account = make_user(db, role=Role.manager, email=email, employee=person)
    auth_service.record_audit(
        db,
        actor="hr@example.com",
        action="create employee",
        entity="employee",
        entity_id=external_id,
        detail=email,
    )
    auth_service.record_audit(db, actor=email, action="login", entity="session")
    db.flush()
    ballots_total = ballot_count(db, cycle_id=cycle.id)
    about_them = sum(b.supplier_id == person.id for b in stored_ballots(db, cycle_id=cycle.id))
    assert about_them > 0
    assert rows_of(db, EmployeeResult, employee_id=person.id) == 1
    company_before = db.scalar(
        select(CompanyResult.coefficient).where(CompanyResult.cycle_id == cycle.id)
    )

    report = privacy_service.erase_employee(
        db, external_id=external_id, delete_results=True, actor="api-key:HRIS"
    )

    db.refresh(person)
    assert person.external_id == report.pseudonym and person.active is False
    assert person.email.endswith("@erased.invalid") and name not in person.full_name
    assert db.get(ScimUser, person.id) is None
    snapshot = db.get(CycleEmployee, (cycle.id, person.id))
    assert snapshot is not None and snapshot.full_name == person.full_name
    assert snapshot.external_id == report.pseudonym
    db.refresh(account)
    assert account.active is False and email not in account.email
    assert not auth_service.authenticate_user(db, email=email, password="correct horse battery")
    # Nothing in the audit log names them any more, except as the pseudonym.
    for entry in db.scalars(select(AuditEntry)):
        text = " ".join(str(v) for v in (entry.actor, entry.entity_id, entry.detail))
        assert email not in text and external_id != entry.entity_id
    erased = db.scalar(select(AuditEntry).where(AuditEntry.action == "erase employee"))
    assert erased is not None and erased.entity_id == report.pseudonym
    # Their results and the ballots about them are gone; the figures of others and the
    # ballots they may have given (anonymous: nothing ties them to anyone) stay.
    assert rows_of(db, EmployeeResult, employee_id=person.id) == 0
    assert rows_of(db, BallotBox, supplier_id=person.id) == 0
    assert report.ballots_about_them_deleted == about_them
    assert ballot_count(db, cycle_id=cycle.id) == ballots_total - about_them
    assert (
        db.scalar(select(CompanyResult.coefficient).where(CompanyResult.cycle_id == cycle.id))
        == company_before
    )
    assert db.scalar(select(func.count()).select_from(User).where(User.email == email)) == 0
    assert db.scalar(select(Employee.id).where(Employee.email == email)) is None


def test_erasure_can_keep_the_results(db: Session) -> None:
    org = build_three_levels(db)
    person = org["e2"]
    report = privacy_service.erase_employee(
        db, external_id=person.external_id, delete_results=False, actor="cli"
    )
    assert report.results_deleted == 0
    assert rows_of(db, EmployeeResult, employee_id=person.id) == 1


def _name_pages(db: Session, cycle_id: int) -> list[str]:
    """The employee table in name order, two rows a page, as a client pages through it."""
    total, _ = reports_service.employee_rows(db, cycle_id=cycle_id, limit=1)
    return [
        row["full_name"]
        for offset in range(0, total, 2)
        for row in reports_service.employee_rows(db, cycle_id=cycle_id, limit=2, offset=offset)[1]
    ]


def _positions(db: Session, cycle_id: int) -> list[int | None]:
    return sorted(
        db.scalars(select(EmployeeResult.name_order).where(EmployeeResult.cycle_id == cycle_id)),
        key=lambda p: -1 if p is None else p,
    )


@pytest.mark.parametrize("delete_results", [False, True])
def test_erasure_moves_the_person_to_their_new_name_in_the_results(
    db: Session, delete_results: bool
) -> None:
    # The stored name order must follow the pseudonym (the old place would hint at the
    # old name) and keep no gap, or pages would skip or repeat rows.
    org = build_three_levels(db)
    cycle_id = org["cycle"].id
    assert _name_pages(db, cycle_id) == ["e1", "e2", "e3", "e4", "e5", "e6"]
    person = org["e5"]
    privacy_service.erase_employee(
        db, external_id=person.external_id, delete_results=delete_results, actor="cli"
    )
    db.refresh(person)
    names = _name_pages(db, cycle_id)
    expected = ["e1", "e2", "e3", "e4", "e6"]
    if not delete_results:
        expected = sorted([*expected, person.full_name])
    assert names == expected and "e5" not in names
    assert _positions(db, cycle_id) == list(range(len(expected)))
