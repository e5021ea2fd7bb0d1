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
    return []


def seed_past_cycles(session: Session, settings: Settings) -> None:
    """Two closed quarters with ballots, so results and trends show real data (reports)."""


def seed_open_cycle(session: Session, settings: Settings) -> None:
    """The current quarter, launched, with its invitations in the outbox (cycles issue)."""


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
