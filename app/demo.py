"""The demo company that ``make run`` loads on first start."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.org.models import Department

CREDENTIALS_FILE = "demo-credentials.txt"


def seed_demo(session: Session, settings: Settings, *, only_if_empty: bool = True) -> bool:
    """Load the demo company; returns False when the database already had data."""
    if only_if_empty and session.scalar(select(func.count()).select_from(Department)):
        return False
    credentials: list[str] = []
    seed_org(session)
    credentials += seed_accounts(session)
    seed_past_cycles(session, settings)
    seed_open_cycle(session, settings)
    write_demo_credentials(settings, credentials)
    return True


def seed_org(session: Session) -> None:
    """Departments, employees, competencies and the matrix (foundation issue)."""


def seed_accounts(session: Session) -> list[str]:
    """Demo HR/admin/manager logins and an HRIS API key; returns lines to print."""
    lines: list[str] = []
    lines += _seed_demo_users(session)
    return lines


def _seed_demo_users(session: Session) -> list[str]:
    """An admin, an HR user and a manager linked to the demo employee with the biggest team.

    Passwords are random per database, so a demo left running is not open to a guess.
    """
    from sqlalchemy.orm import aliased

    from app.auth import service as auth_service
    from app.auth.models import Role
    from app.org.models import Employee

    lines = []
    for label, email, role, name in (
        ("Admin", "admin@demo.example", Role.admin, "Demo Admin"),
        ("HR", "hr@demo.example", Role.hr, "Demo HR"),
    ):
        password = auth_service.new_secret(9)
        auth_service.create_user(session, email=email, password=password, role=role, full_name=name)
        lines.append(f"{label} login: {email} / {password}")
    report = aliased(Employee)
    boss = session.execute(
        select(Employee.id, Employee.full_name)
        .join(report, report.manager_id == Employee.id)
        .where(Employee.active, report.active)
        .group_by(Employee.id, Employee.full_name)
        .order_by(func.count().desc(), Employee.id)
        .limit(1)
    ).first()
    if boss is not None:
        password = auth_service.new_secret(9)
        auth_service.create_user(
            session,
            email="manager@demo.example",
            password=password,
            role=Role.manager,
            full_name=str(boss.full_name),
            employee_id=int(boss.id),
        )
        lines.append(
            f"Manager login: manager@demo.example / {password} (sees {boss.full_name}'s team)"
        )
    return lines


def seed_past_cycles(session: Session, settings: Settings) -> None:
    """Two closed quarters with ballots, so results and trends show real data (reports)."""


def seed_open_cycle(session: Session, settings: Settings) -> None:
    """The current quarter, launched, with its invitations in the outbox (cycles issue).

    Open now and closing in three weeks; the worker of ``make run`` then delivers the
    invitations as .eml files, and /outbox shows them with their links.
    """
    from datetime import timedelta

    from app.cycles import service as cycles_service
    from app.cycles.models import Cycle
    from app.db import utcnow
    from app.matrix.models import MatrixLink

    if not session.scalar(select(func.count()).select_from(MatrixLink)):
        return  # no matrix, nobody to invite
    now = utcnow().replace(second=0, microsecond=0)
    year, number = cycles_service.quarter_of(now.date())
    name = cycles_service.quarter_name(year, number)
    if session.scalar(select(Cycle.id).where(Cycle.name == name)) is not None:
        return
    start, end = cycles_service.quarter_period(year, number)
    cycle = cycles_service.create_cycle(
        session,
        name=name,
        period_start=start,
        period_end=end,
        opens_at=now,
        closes_at=now + timedelta(days=21),
    )
    cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings)


def _credentials_path(settings: Settings) -> str:
    return str(settings.mail_dir.parent / CREDENTIALS_FILE)


def write_demo_credentials(settings: Settings, lines: list[str]) -> None:
    # Development convenience only: the demo's secrets, so `make run` can print them.
    if settings.environment == "production" or not lines:
        return
    settings.mail_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(_credentials_path(settings), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def read_demo_credentials(settings: Settings) -> list[str]:
    try:
        with open(_credentials_path(settings), encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh if line.strip()]
    except OSError:
        return []
