"""Quarterly cycles: create, launch (snapshot, invitations, emails), progress, reminders.

Cycles know nothing of ballots: closing a cycle (sealing the ballots, computing results)
is orchestrated one level up, in ``app.lifecycle``.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from babel.dates import format_datetime
from sqlalchemy import Integer, Table, and_, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from app import i18n
from app.config import Settings
from app.cycles.models import (
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
    Invitation,
)
from app.db import analyze, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.mail import service as mail_service
from app.matrix.models import MatrixLink
from app.org.models import Competency, Department, Employee
from app.templating import render_string

QUARTER_PATTERN = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]\s*([1-4])\s*$")
# Rating a quarter's service makes sense near its end: a quarter's cycle opens two
# weeks before the quarter ends (or now, if that is already past) and runs three weeks.
OPENS_BEFORE_QUARTER_END = timedelta(days=14)
DEFAULT_OPEN_FOR = timedelta(days=21)
SCALE_LIMITS = (0, 100)
NAME_PLACEHOLDER = "[[customer-name]]"
INSERT_CHUNK = 5000


# --- tokens ---------------------------------------------------------------------------


def new_link_token() -> str:
    """A private link token: 256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def private_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/r/{token}"


def mail_tag(cycle_id: int) -> str:
    return f"cycle:{cycle_id}"


# --- creating cycles ------------------------------------------------------------------


def parse_quarter(value: str) -> tuple[int, int]:
    """``"2026Q4"`` or ``"2026-Q4"`` -> ``(2026, 4)``; Invalid otherwise."""
    match = QUARTER_PATTERN.match(value or "")
    if not match or not 2000 <= int(match.group(1)) <= 2999:
        raise Invalid(
            f"{value!r} is not a quarter; write it like 2026Q4 or 2026-Q4",
            errors=[{"field": "quarter", "message": "expected a quarter such as 2026Q4"}],
        )
    return int(match.group(1)), int(match.group(2))


def quarter_period(year: int, quarter: int) -> tuple[date, date]:
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, end - timedelta(days=1)


def quarter_name(year: int, quarter: int) -> str:
    return f"{year}-Q{quarter}"


def quarter_of(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def create_cycle(
    session: Session,
    *,
    name: str,
    period_start: date,
    period_end: date,
    opens_at: datetime,
    closes_at: datetime,
    scale_min: int = 1,
    scale_max: int = 10,
    ask_nps: bool = True,
    ask_comment: bool = True,
) -> Cycle:
    """Create a draft cycle; nothing is sent until it is launched."""
    name = (name or "").strip()
    errors: list[dict[str, str]] = []
    if not name or len(name) > 50:
        errors.append({"field": "name", "message": "a name of 1 to 50 characters is required"})
    if period_start > period_end:
        errors.append({"field": "period_end", "message": "the period ends before it starts"})
    if opens_at >= closes_at:
        errors.append({"field": "closes_at", "message": "the cycle must close after it opens"})
    low, high = SCALE_LIMITS
    if not (low <= scale_min < scale_max <= high):
        errors.append(
            {
                "field": "scale_max",
                "message": f"the scale needs {low} <= minimum < maximum <= {high}",
            }
        )
    if errors:
        raise Invalid("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
    if session.scalar(select(Cycle.id).where(Cycle.name == name)) is not None:
        raise Conflict(f"A cycle named {name} already exists")
    cycle = Cycle(
        name=name,
        period_start=period_start,
        period_end=period_end,
        opens_at=opens_at,
        closes_at=closes_at,
        state=CycleState.draft,
        scale_min=scale_min,
        scale_max=scale_max,
        ask_nps=ask_nps,
        ask_comment=ask_comment,
    )
    session.add(cycle)
    session.flush()
    return cycle


def create_quarter_cycle(
    session: Session,
    *,
    quarter: str,
    now: datetime | None = None,
    scale_min: int = 1,
    scale_max: int = 10,
    ask_nps: bool = True,
    ask_comment: bool = True,
) -> Cycle:
    """The draft cycle of a quarter (``2026Q4`` -> ``2026-Q4``), open for three weeks."""
    year, number = parse_quarter(quarter)
    start, end = quarter_period(year, number)
    now = (now or utcnow()).replace(second=0, microsecond=0)
    opens_at = max(now, datetime.combine(end, datetime.min.time()) - OPENS_BEFORE_QUARTER_END)
    return create_cycle(
        session,
        name=quarter_name(year, number),
        period_start=start,
        period_end=end,
        opens_at=opens_at,
        closes_at=opens_at + DEFAULT_OPEN_FOR,
        scale_min=scale_min,
        scale_max=scale_max,
        ask_nps=ask_nps,
        ask_comment=ask_comment,
    )


def list_cycles(session: Session) -> list[Cycle]:
    """Every cycle, newest period first."""
    return list(session.scalars(select(Cycle).order_by(Cycle.period_start.desc(), Cycle.id.desc())))


def get_cycle(session: Session, *, cycle_id: int, for_update: bool = False) -> Cycle:
    """The cycle, or NotFound."""
    query = select(Cycle).where(Cycle.id == cycle_id)
    if for_update:
        query = query.with_for_update()
    cycle = session.scalar(query)
    if cycle is None:
        raise NotFound(f"There is no cycle with id {cycle_id}")
    return cycle


# --- launch ---------------------------------------------------------------------------


def launch_cycle(
    session: Session, *, cycle_id: int, settings: Settings, now: datetime | None = None
) -> Cycle:
    """Snapshot the organisation, create the invitations and queue their emails.

    Idempotent: a cycle that is already open or closed is returned unchanged. Every
    row is written in the caller's transaction, so a launch happens entirely or not at
    all. Set-based SQL (INSERT ... SELECT, bulk inserts) keeps it fast for 50,000
    employees.
    """
    cycle = get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state != CycleState.draft:
        return cycle
    now = now or utcnow()
    if cycle.closes_at <= now:
        raise Invalid(
            f"Cycle {cycle.name} was due to close on {cycle.closes_at:%Y-%m-%d %H:%M} UTC, "
            "which has passed; create a new cycle instead",
            errors=[{"field": "closes_at", "message": "in the past"}],
        )
    if not session.scalar(select(func.count()).select_from(Competency).where(Competency.active)):
        raise Invalid("There is no active competency to rate; add competencies first")

    cid = literal(cycle.id, Integer)
    supplier, customer = aliased(Employee), aliased(Employee)
    session.execute(
        insert(CyclePair).from_select(
            ["cycle_id", "supplier_id", "customer_id"],
            select(cid, MatrixLink.supplier_id, MatrixLink.customer_id)
            .join(supplier, supplier.id == MatrixLink.supplier_id)
            .join(customer, customer.id == MatrixLink.customer_id)
            .where(supplier.active, customer.active),
        )
    )
    customers = session.execute(
        select(
            CyclePair.customer_id,
            func.count(),
            Employee.email,
            Employee.full_name,
            Employee.language,
        )
        .join(Employee, Employee.id == CyclePair.customer_id)
        .where(CyclePair.cycle_id == cycle.id)
        .group_by(CyclePair.customer_id, Employee.email, Employee.full_name, Employee.language)
        .order_by(CyclePair.customer_id)
    ).all()
    if not customers:
        raise Invalid(
            "Nobody would be invited: the matrix has no supplier-customer pair between "
            "active employees"
        )
    session.execute(
        insert(CycleCompetency).from_select(
            [
                "cycle_id",
                "competency_id",
                "code",
                "name",
                "description",
                "indicators",
                "weight",
                "display_order",
            ],
            select(
                cid,
                Competency.id,
                Competency.code,
                Competency.name,
                Competency.description,
                Competency.indicators,
                Competency.weight,
                Competency.display_order,
            ).where(Competency.active),
        )
    )
    session.execute(
        insert(CycleDepartment).from_select(
            ["cycle_id", "department_id", "parent_id", "external_id", "name"],
            select(
                cid, Department.id, Department.parent_id, Department.external_id, Department.name
            ),
        )
    )
    participants = (
        select(CyclePair.supplier_id.label("id"))
        .where(CyclePair.cycle_id == cycle.id)
        .union(select(CyclePair.customer_id).where(CyclePair.cycle_id == cycle.id))
    )
    session.execute(
        insert(CycleEmployee).from_select(
            ["cycle_id", "employee_id", "department_id", "manager_id", "full_name", "external_id"],
            select(
                cid,
                Employee.id,
                Employee.department_id,
                Employee.manager_id,
                Employee.full_name,
                Employee.external_id,
            ).where(Employee.id.in_(participants)),
        )
    )

    invitations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    renderer = _EmailRenderer(cycle, kind="invitation")
    for customer_id, supplier_count, email, full_name, language in customers:
        token = new_link_token()
        invitations.append(
            {
                "cycle_id": cycle.id,
                "customer_id": customer_id,
                "token_hash": hash_link_token(token),
                "used": False,
            }
        )
        messages.append(
            renderer.message(
                to_address=email,
                to_name=full_name,
                language=language,
                supplier_count=supplier_count,
                link=private_link(settings, token),
            )
        )
    for start in range(0, len(invitations), INSERT_CHUNK):
        session.execute(
            insert(cast(Table, Invitation.__table__)), invitations[start : start + INSERT_CHUNK]
        )
    mail_service.enqueue_messages(session, messages=messages)
    # Links are opened within minutes of the launch, before autovacuum would notice
    # the new snapshot: plan the rating pages' joins for the rows that are there now.
    analyze(session, CyclePair, CycleEmployee, CycleDepartment, CycleCompetency, Invitation)

    cycle.state = CycleState.open
    cycle.launched_at = now
    session.flush()
    return cycle


class _EmailRenderer:
    """Render each (language, supplier count) variant once; names are filled in after.

    A launch mails every customer; rendering two Jinja templates 50,000 times would
    dominate it, while the texts differ only by name, language and count.
    """

    def __init__(self, cycle: Cycle, *, kind: str) -> None:
        self.cycle = cycle
        self.kind = kind
        self._cache: dict[tuple[str, int], tuple[str, str, str]] = {}

    def _variant(self, language: str, supplier_count: int) -> tuple[str, str, str]:
        key = (language, supplier_count)
        if key not in self._cache:
            _ = i18n.gettext_for(language)
            context = {
                "name": NAME_PLACEHOLDER,
                "cycle_name": self.cycle.name,
                "supplier_count": supplier_count,
                "closes_at": format_datetime(
                    self.cycle.closes_at, "d MMMM y, HH:mm", locale=language
                )
                + " UTC",
                "link": mail_service.LINK_PLACEHOLDER,
            }
            if self.kind == "invitation":
                subject = _("Please rate your colleagues: %(cycle)s") % {"cycle": self.cycle.name}
            else:
                subject = _("Reminder: please rate your colleagues: %(cycle)s") % {
                    "cycle": self.cycle.name
                }
            text = render_string(f"email/{self.kind}.txt", context, lang=language)
            body = render_string(f"email/{self.kind}.html", context, lang=language)
            self._cache[key] = (subject, text, body)
        return self._cache[key]

    def message(
        self, *, to_address: str, to_name: str, language: str, supplier_count: int, link: str
    ) -> dict[str, Any]:
        lang = i18n.normalize_language(language)
        subject, text, body = self._variant(lang, supplier_count)
        return {
            "kind": self.kind,
            "tag": mail_tag(self.cycle.id),
            "to_address": to_address,
            "to_name": to_name,
            "subject": subject,
            "body_text": text.replace(NAME_PLACEHOLDER, to_name),
            "body_html": body.replace(NAME_PLACEHOLDER, html.escape(to_name)),
            "secret_link": link,
        }


# --- progress -------------------------------------------------------------------------


@dataclass
class DepartmentProgress:
    department_id: int | None
    name: str
    invited: int
    responded: int

    @property
    def response_rate(self) -> float:
        return self.responded / self.invited if self.invited else 0.0


@dataclass
class CycleProgress:
    cycle_id: int
    invited: int
    responded: int
    undeliverable: int
    departments: list[DepartmentProgress] = field(default_factory=list)

    @property
    def response_rate(self) -> float:
        return self.responded / self.invited if self.invited else 0.0


def response_counts(session: Session, *, cycle_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """``{cycle_id: (invited, responded)}`` for the cycles given (counts only)."""
    ids = list(cycle_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(
            Invitation.cycle_id,
            func.count(),
            func.coalesce(func.sum(case((Invitation.used, 1), else_=0)), 0),
        )
        .where(Invitation.cycle_id.in_(ids))
        .group_by(Invitation.cycle_id)
    )
    counts = {cycle_id: (0, 0) for cycle_id in ids}
    for cycle_id, invited, responded in rows:
        counts[cycle_id] = (int(invited), int(responded))
    return counts


def cycle_progress(session: Session, *, cycle_id: int) -> CycleProgress:
    """Invited and responded, overall and per department (counts, never who)."""
    get_cycle(session, cycle_id=cycle_id)
    rows = session.execute(
        select(
            CycleEmployee.department_id,
            CycleDepartment.name,
            func.count(),
            func.coalesce(func.sum(case((Invitation.used, 1), else_=0)), 0),
        )
        .select_from(Invitation)
        .join(
            CycleEmployee,
            and_(
                CycleEmployee.cycle_id == Invitation.cycle_id,
                CycleEmployee.employee_id == Invitation.customer_id,
            ),
        )
        .outerjoin(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == Invitation.cycle_id,
                CycleDepartment.department_id == CycleEmployee.department_id,
            ),
        )
        .where(Invitation.cycle_id == cycle_id)
        .group_by(CycleEmployee.department_id, CycleDepartment.name)
    ).all()
    departments = sorted(
        (
            DepartmentProgress(
                department_id=dept_id,
                name=name or "(no department)",
                invited=int(invited),
                responded=int(responded),
            )
            for dept_id, name, invited, responded in rows
        ),
        key=lambda d: d.name.lower(),
    )
    return CycleProgress(
        cycle_id=cycle_id,
        invited=sum(d.invited for d in departments),
        responded=sum(d.responded for d in departments),
        undeliverable=mail_service.count_undeliverable(session, tag=mail_tag(cycle_id)),
        departments=departments,
    )


# --- reminders ------------------------------------------------------------------------


def scheduled_reminder_date(cycle: Cycle, settings: Settings, *, today: date) -> date | None:
    """The latest reminder date that has come (``REMINDER_DAYS_BEFORE_CLOSE``), if any.

    Dates on or before the launch day are skipped: the invitation has just gone out.
    """
    launched_on = (cycle.launched_at or cycle.opens_at).date()
    dates = [
        cycle.closes_at.date() - timedelta(days=days)
        for days in settings.reminder_days_before_close
        if days > 0
    ]
    due = [d for d in dates if launched_on < d <= today]
    return max(due) if due else None


def _remind(
    session: Session, *, cycle: Cycle, settings: Settings, not_reminded_since: date, today: date
) -> int:
    rows = session.execute(
        select(
            Invitation.id,
            Employee.email,
            Employee.full_name,
            Employee.language,
            select(func.count())
            .where(
                CyclePair.cycle_id == Invitation.cycle_id,
                CyclePair.customer_id == Invitation.customer_id,
            )
            .scalar_subquery(),
        )
        .join(Employee, Employee.id == Invitation.customer_id)
        .where(
            Invitation.cycle_id == cycle.id,
            Invitation.used.is_(False),
            Invitation.token_hash.is_not(None),
            or_(
                Invitation.last_reminded_on.is_(None),
                Invitation.last_reminded_on < not_reminded_since,
            ),
        )
        .order_by(Invitation.id)
    ).all()
    if not rows:
        return 0
    renderer = _EmailRenderer(cycle, kind="reminder")
    updates: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for invitation_id, email, full_name, language, supplier_count in rows:
        # Only hashes are stored, so the reminder carries a new link; the invitation's
        # link keeps working as well (see Invitation.reminder_token_hash).
        token = new_link_token()
        updates.append(
            {
                "id": invitation_id,
                "reminder_token_hash": hash_link_token(token),
                "last_reminded_on": today,
            }
        )
        messages.append(
            renderer.message(
                to_address=email,
                to_name=full_name,
                language=language,
                supplier_count=int(supplier_count or 0),
                link=private_link(settings, token),
            )
        )
    for start in range(0, len(updates), INSERT_CHUNK):
        session.execute(update(Invitation), updates[start : start + INSERT_CHUNK])
    mail_service.enqueue_messages(session, messages=messages)
    return len(rows)


def send_reminders(
    session: Session, *, cycle_id: int, settings: Settings, now: datetime | None = None
) -> int:
    """HR's "send reminders now": every customer who has not answered and has not had a
    reminder today. Returns how many were queued.

    A reminder sent by hand on or after a scheduled reminder date counts as that date's
    reminder, so nobody gets two on one day or the scheduled one again.
    """
    now = now or utcnow()
    cycle = get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state != CycleState.open or cycle.closes_at <= now:
        raise Conflict(f"Cycle {cycle.name} is not open; reminders go out only while it is")
    today = now.date()
    return _remind(session, cycle=cycle, settings=settings, not_reminded_since=today, today=today)


def send_scheduled_reminders(
    session: Session, *, cycle_id: int, settings: Settings, now: datetime | None = None
) -> int:
    """The automatic reminder: once per reminder date, to those who have not answered."""
    now = now or utcnow()
    cycle = get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state != CycleState.open or cycle.closes_at <= now:
        return 0
    due = scheduled_reminder_date(cycle, settings, today=now.date())
    if due is None:
        return 0
    return _remind(
        session, cycle=cycle, settings=settings, not_reminded_since=due, today=now.date()
    )


def open_cycle_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Cycle.id).where(Cycle.state == CycleState.open)))


def cycles_due_to_close(session: Session, *, now: datetime) -> list[int]:
    """Open cycles whose close date has passed."""
    return list(
        session.scalars(
            select(Cycle.id)
            .where(Cycle.state == CycleState.open, Cycle.closes_at <= now)
            .order_by(Cycle.closes_at)
        )
    )


# --- links ----------------------------------------------------------------------------


def find_invitation_by_token(session: Session, *, token: str) -> Invitation | None:
    """The invitation whose invitation or reminder link carries this token."""
    digest = hash_link_token(token)
    return session.scalar(
        select(Invitation).where(
            or_(Invitation.token_hash == digest, Invitation.reminder_token_hash == digest)
        )
    )


def end_links(session: Session, *, cycle_id: int) -> None:
    """Erase every link hash of a cycle (and when reminders went out): links die."""
    session.execute(
        update(Invitation)
        .where(Invitation.cycle_id == cycle_id)
        .values(token_hash=None, reminder_token_hash=None, last_reminded_on=None)
        .execution_options(synchronize_session=False)
    )


def mark_closed(session: Session, *, cycle: Cycle, now: datetime | None = None) -> None:
    cycle.state = CycleState.closed
    cycle.closed_at = now or utcnow()
    session.flush()
