"""How long personal data is kept, and erasing one person's (GDPR art. 5(1)(e), 17).

Both span every domain (a person is an employee, maybe an HR account, a SCIM user, a
name in cycle snapshots, results and the audit log), so they live above the domains,
like ``app.lifecycle``. Tables are found through the metadata (every table with a
``cycle_id``), so a result table added later is covered without a change here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth_service
from app.auth.models import AuditEntry, User
from app.config import Settings
from app.cycles.models import Cycle, CycleEmployee, CycleState
from app.db import Base, utcnow, writer_session
from app.org import service as org_service
from app.ratings.models import BallotBox
from app.reports import service as reports_service
from app.reports.models import EmployeeComment, EmployeeResult
from app.scheduling import every
from app.scim.models import ScimUser

log = logging.getLogger(__name__)
ERASED_DOMAIN = "erased.invalid"  # RFC 2606: can never be a real mailbox


# --- retention -----------------------------------------------------------------------------


@dataclass
class RetentionReport:
    cycles_deleted: int = 0
    comments_deleted: int = 0
    audit_entries_deleted: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.cycles_deleted or self.comments_deleted or self.audit_entries_deleted)


def _cutoff(days: int, now: datetime) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def _tables_with_cycle_id() -> list[Table]:
    """Every table holding rows of a cycle, children before parents."""
    return [
        table
        for table in reversed(Base.metadata.sorted_tables)
        if "cycle_id" in table.c and table.name != Cycle.__tablename__
    ]


def delete_cycle_data(session: Session, *, cycle_id: int) -> None:
    """A closed cycle and everything it holds: snapshot, ballots, results, comments."""
    for table in _tables_with_cycle_id():
        session.execute(delete(table).where(table.c.cycle_id == cycle_id))
    session.execute(delete(Cycle).where(Cycle.id == cycle_id))


def apply_retention(
    session: Session, *, settings: Settings, now: datetime | None = None
) -> RetentionReport:
    """Delete what has outlived its retention period (RETENTION_* settings)."""
    now = now or utcnow()
    report = RetentionReport()
    closed = Cycle.state == CycleState.closed
    if (cutoff := _cutoff(settings.retention_results_days, now)) is not None:
        expired = session.scalars(select(Cycle.id).where(closed, Cycle.closed_at < cutoff)).all()
        for cycle_id in expired:
            delete_cycle_data(session, cycle_id=cycle_id)
        report.cycles_deleted = len(expired)
    if (cutoff := _cutoff(settings.retention_comments_days, now)) is not None:
        old_cycles = select(Cycle.id).where(closed, Cycle.closed_at < cutoff)
        result = session.execute(
            delete(EmployeeComment).where(EmployeeComment.cycle_id.in_(old_cycles))
        )
        report.comments_deleted = int(getattr(result, "rowcount", 0) or 0)
        session.execute(
            update(BallotBox)
            .where(BallotBox.cycle_id.in_(old_cycles), BallotBox.comments.is_not(None))
            .values(comments=None)
        )
    if (cutoff := _cutoff(settings.retention_audit_days, now)) is not None:
        result = session.execute(delete(AuditEntry).where(AuditEntry.created_at < cutoff))
        report.audit_entries_deleted = int(getattr(result, "rowcount", 0) or 0)
    if report.anything:
        auth_service.record_audit(
            session,
            actor="system",
            action="retention",
            entity="retention",
            detail=f"{report.cycles_deleted} closed cycles, {report.comments_deleted} "
            f"comments, {report.audit_entries_deleted} audit entries deleted",
        )
    session.flush()
    return report


# --- erasure -------------------------------------------------------------------------------


@dataclass
class ErasureReport:
    pseudonym: str
    results_deleted: int
    ballots_about_them_deleted: int


def erase_employee(
    session: Session, *, external_id: str, delete_results: bool, actor: str
) -> ErasureReport:
    """Pseudonymise one person's personal data everywhere (and, on request, delete the
    results about them). The ballots they gave as a rater hold nothing that points to
    them, so they cannot be found and stay (see the README). The record stays, so past
    cycles' aggregates keep adding up; it is deactivated and leaves the live matrix."""
    emp = org_service.get_employee(session, external_id=external_id)
    pseudonym = f"erased-{emp.id}"
    old_email, old_external_id = emp.email, emp.external_id
    org_service.deactivate_employee(session, external_id=old_external_id)
    # Straight to the columns: the pseudonyms are ours, not input to check.
    emp.external_id = pseudonym
    emp.email = f"{pseudonym}@{ERASED_DOMAIN}"
    emp.full_name = f"Erased employee {emp.id}"
    emp.manager_id = None
    session.execute(delete(ScimUser).where(ScimUser.employee_id == emp.id))
    session.execute(
        update(CycleEmployee)
        .where(CycleEmployee.employee_id == emp.id)
        .values(full_name=emp.full_name, external_id=pseudonym)
    )
    rated_in = list(
        session.execute(
            select(EmployeeResult.cycle_id).where(EmployeeResult.employee_id == emp.id)
        ).scalars()
    )
    _erase_accounts(session, employee_id=emp.id, email=old_email, pseudonym=pseudonym)
    _scrub_audit(session, replace={old_email: emp.email, old_external_id: pseudonym})
    results = ballots = 0
    if delete_results:
        results, ballots = _delete_results_about(session, employee_id=emp.id)
    # Their place in the results' name order would still hint at the old name.
    reports_service.reorder_names(session, cycle_ids=rated_in)
    session.flush()
    auth_service.record_audit(
        session,
        actor=actor,
        action="erase employee",
        entity="employee",
        entity_id=pseudonym,
        detail="personal data pseudonymised; "
        + (
            f"{results} results and {ballots} ballots about them deleted"
            if delete_results
            else "results kept"
        ),
    )
    return ErasureReport(
        pseudonym=pseudonym, results_deleted=results, ballots_about_them_deleted=ballots
    )


def _erase_accounts(session: Session, *, employee_id: int, email: str, pseudonym: str) -> None:
    """Their HR web app account (a manager's, or one under their email): closed and renamed."""
    users = session.scalars(
        select(User).where((User.employee_id == employee_id) | (User.email == email))
    ).all()
    for n, user in enumerate(users):
        auth_service.end_all_sessions(session, user_id=user.id)
        user.active = False
        user.email = f"{pseudonym}{f'-{n}' if n else ''}-user@{ERASED_DOMAIN}"
        user.full_name = ""


def _scrub_audit(session: Session, *, replace: dict[str, str]) -> None:
    """Replace their email and external id wherever the audit log wrote them."""
    for old, new in replace.items():
        if not old:
            continue
        session.execute(update(AuditEntry).where(AuditEntry.actor == old).values(actor=new))
        session.execute(update(AuditEntry).where(AuditEntry.entity_id == old).values(entity_id=new))
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.detail.contains(old, autoescape=True))
            .values(detail=func.replace(AuditEntry.detail, old, new))
        )


def _delete_results_about(session: Session, *, employee_id: int) -> tuple[int, int]:
    """Their own results, comments and the ballots about them (department and company
    figures stay: they are aggregates over at least k people)."""
    deleted = 0
    for model in (EmployeeComment, EmployeeResult):
        result = session.execute(delete(model).where(model.employee_id == employee_id))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    about = BallotBox.supplier_id == employee_id
    ballots = session.scalar(select(func.coalesce(func.sum(BallotBox.ballots), 0)).where(about))
    session.execute(delete(BallotBox).where(about))
    return deleted, int(ballots or 0)


# --- the worker's job --------------------------------------------------------------------

RETENTION_INTERVAL_SECONDS = 3600.0


@every(RETENTION_INTERVAL_SECONDS)
def retention_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    """Apply the retention periods (once an hour: days-long periods need no more)."""
    with writer_session(factory) as session, session.begin():
        report = apply_retention(session, settings=settings)
    if report.anything:
        log.info(
            "retention: %d closed cycles, %d comments, %d audit entries deleted",
            report.cycles_deleted,
            report.comments_deleted,
            report.audit_entries_deleted,
        )
