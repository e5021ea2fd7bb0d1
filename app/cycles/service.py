"""Quarterly cycles: create, launch (snapshot, invitations, emails), progress, reminders.

Cycles know nothing of ballots: closing a cycle (sealing the ballots, computing results)
is orchestrated one level up, in ``app.lifecycle``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement

from app import crypto, dates, i18n
from app.auth import service as auth_service
from app.config import Settings
from app.cycles import governor, rater_load
from app.cycles.models import (
    CloseJob,
    CloseJobState,
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleResponse,
    CycleState,
    Invitation,
    NominationChange,
    NominationList,
    NominationTeam,
)
from app.db import analyze, progress, utcnow
from app.db.wakeup import wake_worker
from app.errors import Conflict, Invalid, NotFound
from app.mail import service as mail_service
from app.matrix.models import MatrixLink
from app.org.models import Competency, Department, Employee
from app.templating import render_string

# States a cycle can launch from: a plain draft, or one in its confirmation round.
LAUNCHABLE = (CycleState.draft, CycleState.nominating)
QUARTER_PATTERN = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]\s*([1-4])\s*$")
# Rating a quarter's service makes sense near its end: a quarter's cycle opens two
# weeks before the quarter ends (or now, if that is already past) and runs three weeks.
OPENS_BEFORE_QUARTER_END = timedelta(days=14)
DEFAULT_OPEN_FOR = timedelta(days=21)
SCALE_LIMITS = (0, 100)
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
    max_suppliers_per_customer: int = governor.DEFAULT_CAP,
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
    cap_low, cap_high = governor.CAP_LIMITS
    if not cap_low <= max_suppliers_per_customer <= cap_high:
        errors.append(
            {
                "field": "max_suppliers_per_customer",
                "message": f"between {cap_low} and {cap_high} suppliers per customer",
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
        max_suppliers_per_customer=max_suppliers_per_customer,
        rater_sample_seed=secrets.randbelow(2**31),
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
    max_suppliers_per_customer: int = governor.DEFAULT_CAP,
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
        max_suppliers_per_customer=max_suppliers_per_customer,
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


def launch_size(session: Session) -> tuple[int, int, int]:
    """(customers to invite, supplier-customer pairs, active competencies) if launched now."""
    supplier, customer = aliased(Employee), aliased(Employee)
    active_links = (
        select(MatrixLink.customer_id)
        .join(supplier, supplier.id == MatrixLink.supplier_id)
        .join(customer, customer.id == MatrixLink.customer_id)
        .where(supplier.active, customer.active)
    )
    pairs = int(session.scalar(select(func.count()).select_from(active_links.subquery())) or 0)
    customers = int(
        session.scalar(select(func.count(func.distinct(active_links.subquery().c.customer_id))))
        or 0
    )
    competencies = int(
        session.scalar(select(func.count()).select_from(Competency).where(Competency.active)) or 0
    )
    return customers, pairs, competencies


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
    if cycle.state not in LAUNCHABLE:
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
    if cycle.state == CycleState.nominating:
        apply_nominations(session, cycle=cycle)

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
    rater_load.apply_rater_cap(session, cycle=cycle, k=settings.anonymity_min_raters)
    customers = session.execute(
        select(
            CyclePair.customer_id,
            func.count(),
            Employee.email,
            Employee.full_name,
            Employee.language,
            Employee.paper_channel,
        )
        .join(Employee, Employee.id == CyclePair.customer_id)
        .where(CyclePair.cycle_id == cycle.id)
        .group_by(
            CyclePair.customer_id,
            Employee.email,
            Employee.full_name,
            Employee.language,
            Employee.paper_channel,
        )
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
                "translations",
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
                Competency.translations,
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

    _mark_raters_who_count(session, cycle=cycle, settings=settings, now=now)

    invitations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    renderer = _rating_mail(cycle, kind="invitation", tz=settings.org_time_zone)
    for customer_id, supplier_count, email, full_name, language, paper in customers:
        if paper:
            invitations.append(paper_invitation(cycle_id=cycle.id, customer_id=customer_id))
            continue
        token = new_link_token()
        invitations.append(
            {
                "cycle_id": cycle.id,
                "customer_id": customer_id,
                "token_hash": hash_link_token(token),
                "by_paper": False,
                "used": False,
            }
        )
        messages.append(
            renderer.message(
                to_address=email,
                to_name=full_name,
                language=language,
                variant=supplier_count,
                link=private_link(settings, token),
            )
        )
    for start in range(0, len(invitations), INSERT_CHUNK):
        session.execute(
            insert(cast(Table, Invitation.__table__)), invitations[start : start + INSERT_CHUNK]
        )
    mail_service.enqueue_messages(session, messages=messages, secret_key=settings.secret_key)
    # Links are opened within minutes of the launch, before autovacuum would notice
    # the new snapshot: plan the rating pages' joins for the rows that are there now.
    analyze(session, CyclePair, CycleEmployee, CycleDepartment, CycleCompetency, Invitation)

    cycle.pool_salt = _new_pool_salt()
    cycle.pool_key_check = crypto.key_check(pool_key(settings.secret_key, cycle))
    cycle.state = CycleState.open
    cycle.launched_at = now
    session.flush()
    return cycle


def apply_nominations(session: Session, *, cycle: Cycle) -> tuple[int, int]:
    """Write the confirmed lists' proposals to the matrix and end the round's links.

    Unconfirmed lists launch as the matrix has them. Audited as one entry (the matrix
    changed without an HR click per link). Returns (links added, links removed).
    """
    confirmed = (
        select(NominationList.id)
        .where(NominationList.cycle_id == cycle.id, NominationList.confirmed_at.is_not(None))
        .scalar_subquery()
    )
    supplier, customer = aliased(Employee), aliased(Employee)
    # Someone who left since the proposal is not added: matrix links join active people.
    changes = session.execute(
        select(NominationList.supplier_id, NominationChange.customer_id, NominationChange.action)
        .join(NominationList, NominationList.id == NominationChange.list_id)
        .join(supplier, supplier.id == NominationList.supplier_id)
        .join(customer, customer.id == NominationChange.customer_id)
        .where(
            NominationChange.list_id.in_(confirmed),
            or_(NominationChange.action == "remove", and_(supplier.active, customer.active)),
        )
        .order_by(NominationChange.id)
    ).all()
    existing = {
        (s, c)
        for s, c in session.execute(
            select(MatrixLink.supplier_id, MatrixLink.customer_id).where(
                MatrixLink.supplier_id.in_({s for s, _c, _a in changes} or {0})
            )
        )
    }
    added = removed = 0
    for supplier_id, customer_id, action in changes:
        pair = (supplier_id, customer_id)
        if action == "add" and pair not in existing:
            session.add(MatrixLink(supplier_id=supplier_id, customer_id=customer_id))
            existing.add(pair)
            added += 1
        elif action == "remove" and pair in existing:
            session.execute(
                delete(MatrixLink).where(
                    MatrixLink.supplier_id == supplier_id, MatrixLink.customer_id == customer_id
                )
            )
            existing.discard(pair)
            removed += 1
    session.execute(
        update(NominationList).where(NominationList.cycle_id == cycle.id).values(token_hash=None)
    )
    session.execute(
        update(NominationTeam).where(NominationTeam.cycle_id == cycle.id).values(token_hash=None)
    )
    session.flush()
    lists = session.scalar(
        select(func.count()).select_from(NominationList).where(NominationList.id.in_(confirmed))
    )
    auth_service.record_audit(
        session,
        actor="nomination round",
        action="apply nominations",
        entity="matrix",
        entity_id=cycle.id,
        detail=f"{cycle.name}: links added {added}, removed {removed}, confirmed lists {lists}",
    )
    return added, removed


def paper_invitation(*, cycle_id: int, customer_id: int) -> dict[str, Any]:
    """A paper-channel customer's invitation: no link and no email; the code comes
    when HR prints the department's letters (see ``app.cycles.paper``)."""
    return {
        "cycle_id": cycle_id,
        "customer_id": customer_id,
        "token_hash": None,
        "by_paper": True,
        "used": False,
    }


def pool_key(secret_key: str, cycle: Cycle) -> bytes:
    """The key that seals the cycle's pending submissions (HKDF of SECRET_KEY + salt)."""
    return cycle_pool_key(secret_key, cycle.id, cycle.pool_salt)


def cycle_pool_key(secret_key: str, cycle_id: int, pool_salt: bytes | None) -> bytes:
    """:func:`pool_key` from the cycle's id and salt, for a caller that did not load it."""
    return crypto.derive_key(secret_key, f"ballot-pool/cycle:{cycle_id}", salt=pool_salt)


def forget_pool_key(cycle: Cycle) -> None:
    """Make the cycle's pool unreadable for good, even with SECRET_KEY: a new random
    salt replaces the one its key was derived from (the close, once it has read it)."""
    cycle.pool_salt = _new_pool_salt()


def _new_pool_salt() -> bytes:
    return os.urandom(16)


# --- raters who count toward k -------------------------------------------------------

NOT_COUNTING_NEW = "new"
NOT_COUNTING_EMAIL_CHANGED = "email_changed"
NOT_COUNTING_EMAIL_DOMAIN = "email_domain"
NOT_COUNTING_PAPER = "paper"


@dataclass(frozen=True)
class RaterEligibility:
    counts: bool
    reason: str | None = None


def rater_eligibility(
    *,
    email: str,
    created_at: datetime,
    email_changed_at: datetime | None,
    launch_at: datetime,
    first_launch_at: datetime | None,
    settings: Settings,
    paper: bool = False,
) -> RaterEligibility:
    """Whether a customer counts toward their suppliers' k at a launch, and why not.

    HR (or whoever feeds the HRIS) could otherwise add k - 1 mailboxes it reads as a
    victim's fellow customers, answer them, and subtract its own answers from the mean.
    A record, or an address, younger than ``ANONYMITY_RATER_MIN_AGE_DAYS`` at launch
    does not count, unless it was there before the organisation's first launch (so a
    new customer's first quarter is not withheld); nor does an address outside
    ``ALLOWED_EMAIL_DOMAINS`` when that is set. A paper-channel rater's code passes
    through HR's hands, so they count only if ``PAPER_RATERS_COUNT_TOWARD_K``; their
    address is never written to, so its domain does not matter.
    """
    if paper and not settings.paper_raters_count_toward_k:
        return RaterEligibility(False, NOT_COUNTING_PAPER)
    domains = settings.allowed_email_domains
    if domains and not paper and email.rsplit("@", 1)[-1].lower() not in domains:
        return RaterEligibility(False, NOT_COUNTING_EMAIL_DOMAIN)
    cutoff = launch_at - timedelta(days=settings.anonymity_rater_min_age_days)
    if first_launch_at is not None and first_launch_at > cutoff:
        cutoff = first_launch_at
    if created_at > cutoff:
        return RaterEligibility(False, NOT_COUNTING_NEW)
    if email_changed_at is not None and email_changed_at > cutoff:
        return RaterEligibility(False, NOT_COUNTING_EMAIL_CHANGED)
    return RaterEligibility(True)


def _first_launch_at(session: Session, *, now: datetime) -> datetime:
    first = session.scalar(
        select(func.min(Cycle.launched_at)).where(Cycle.launched_at.is_not(None))
    )
    # The organisation's first launch is this one: everyone already here counts.
    return first if first is not None else now


def _raters_who_do_not_count(
    session: Session, *, employees: Any, settings: Settings, now: datetime
) -> dict[int, RaterEligibility]:
    """``{employee id: verdict}`` for those of ``employees`` (a select of ids) who do not
    count toward k if a cycle launched at ``now``."""
    first = _first_launch_at(session, now=now)
    rows = session.execute(
        select(
            Employee.id,
            Employee.email,
            Employee.created_at,
            Employee.email_changed_at,
            Employee.paper_channel,
        ).where(Employee.id.in_(employees))
    ).all()
    verdicts = {
        employee_id: rater_eligibility(
            email=email,
            created_at=created_at,
            email_changed_at=changed_at,
            launch_at=now,
            first_launch_at=first,
            settings=settings,
            paper=paper,
        )
        for employee_id, email, created_at, changed_at, paper in rows
    }
    return {e: v for e, v in verdicts.items() if not v.counts}


def _mark_raters_who_count(
    session: Session, *, cycle: Cycle, settings: Settings, now: datetime
) -> None:
    customers = select(CyclePair.customer_id).where(CyclePair.cycle_id == cycle.id)
    not_counting = _raters_who_do_not_count(
        session, employees=customers, settings=settings, now=now
    )
    changes = [
        {
            "_cycle": cycle.id,
            "_employee": employee_id,
            "counts_toward_k": False,
            "not_counting_reason": verdict.reason,
        }
        for employee_id, verdict in not_counting.items()
    ]
    table = cast(Table, CycleEmployee.__table__)
    for start in range(0, len(changes), INSERT_CHUNK):
        session.execute(
            table.update()
            .where(
                table.c.cycle_id == bindparam("_cycle"),
                table.c.employee_id == bindparam("_employee"),
            )
            .values(
                counts_toward_k=bindparam("counts_toward_k"),
                not_counting_reason=bindparam("not_counting_reason"),
            ),
            changes[start : start + INSERT_CHUNK],
        )


@dataclass(frozen=True)
class SupplierCoverage:
    supplier_id: int
    full_name: str
    customers: int
    counting: int
    # reason -> how many of the customers do not count for it
    not_counting: dict[str, int]


def supplier_coverage(session: Session, *, cycle_id: int) -> list[SupplierCoverage]:
    """Per supplier of a launched cycle: customers, how many count toward k, why not."""
    customer = aliased(CycleEmployee)
    supplier = aliased(CycleEmployee)
    rows = session.execute(
        select(
            CyclePair.supplier_id,
            supplier.full_name,
            customer.counts_toward_k,
            customer.not_counting_reason,
            func.count(),
        )
        .join(
            customer,
            _snapshot_of(
                cycle_id=CyclePair.cycle_id, employee_id=CyclePair.customer_id, row=customer
            ),
        )
        .join(
            supplier,
            _snapshot_of(
                cycle_id=CyclePair.cycle_id, employee_id=CyclePair.supplier_id, row=supplier
            ),
        )
        .where(CyclePair.cycle_id == cycle_id)
        .group_by(
            CyclePair.supplier_id,
            supplier.full_name,
            customer.counts_toward_k,
            customer.not_counting_reason,
        )
    ).all()
    return _tally_coverage(
        (supplier_id, name, None if counts else reason or "", n)
        for supplier_id, name, counts, reason, n in rows
    )


def _tally_coverage(
    customers: Iterable[tuple[int, str, str | None, int]],
) -> list[SupplierCoverage]:
    """Per supplier, from (supplier, name, reason the customers do not count or None,
    how many such customers): fewest counting raters first."""
    totals: dict[int, tuple[str, int, int, dict[str, int]]] = {}
    for supplier_id, name, reason, n in customers:
        _name, all_, counting, not_counting = totals.get(supplier_id, (name, 0, 0, {}))
        if reason is None:
            counting += n
        else:
            not_counting[reason] = not_counting.get(reason, 0) + n
        totals[supplier_id] = (name, all_ + n, counting, not_counting)
    coverage = [SupplierCoverage(sid, *figures) for sid, figures in totals.items()]
    return sorted(coverage, key=lambda c: (c.counting, c.full_name.lower()))


@dataclass
class CoverageSummary:
    """Raters who count toward k, for HR before and after a launch (never answers)."""

    suppliers: int = 0
    # reason -> how many customers do not count for it
    not_counting: dict[str, int] = field(default_factory=dict)
    # (external id, full name, reason) of the customers who do not count, first ones
    not_counting_people: list[tuple[str, str, str]] = field(default_factory=list)
    # suppliers with fewer than k customers who count: their results will not show
    below_k: list[SupplierCoverage] = field(default_factory=list)


SHOWN_PEOPLE = 50


def _summarise(
    session: Session,
    *,
    coverage: list[SupplierCoverage],
    not_counting: dict[int, str],
    k: int,
) -> CoverageSummary:
    reasons: dict[str, int] = {}
    for reason in not_counting.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    shown = sorted(not_counting)[:SHOWN_PEOPLE]
    people = [
        (external_id, name, not_counting[employee_id])
        for employee_id, external_id, name in session.execute(
            select(Employee.id, Employee.external_id, Employee.full_name)
            .where(Employee.id.in_(shown))
            .order_by(Employee.full_name)
        )
    ]
    return CoverageSummary(
        suppliers=len(coverage),
        not_counting=reasons,
        not_counting_people=people,
        below_k=[c for c in coverage if c.counting < k],
    )


def launch_coverage(
    session: Session, *, settings: Settings, now: datetime | None = None
) -> CoverageSummary:
    """What a launch now would give: raters who would not count, and why; suppliers who
    would have fewer than k raters who count (from the live matrix)."""
    now = now or utcnow()
    supplier, customer = aliased(Employee), aliased(Employee)
    links = (
        select(MatrixLink.supplier_id, MatrixLink.customer_id, supplier.full_name)
        .join(supplier, supplier.id == MatrixLink.supplier_id)
        .join(customer, customer.id == MatrixLink.customer_id)
        .where(supplier.active, customer.active)
    )
    verdicts = _raters_who_do_not_count(
        session,
        employees=select(links.subquery().c.customer_id),
        settings=settings,
        now=now,
    )
    coverage = _tally_coverage(
        (
            supplier_id,
            name,
            (verdicts[customer_id].reason or "") if customer_id in verdicts else None,
            1,
        )
        for supplier_id, customer_id, name in session.execute(links)
    )
    return _summarise(
        session,
        coverage=coverage,
        not_counting={e: v.reason or "" for e, v in verdicts.items()},
        k=settings.anonymity_min_raters,
    )


def cycle_coverage(session: Session, *, cycle_id: int, k: int) -> CoverageSummary:
    """The same for a launched cycle, from its snapshot."""
    not_counting = dict(
        session.execute(
            select(CycleEmployee.employee_id, CycleEmployee.not_counting_reason).where(
                CycleEmployee.cycle_id == cycle_id, CycleEmployee.counts_toward_k.is_(False)
            )
        ).all()
    )
    return _summarise(
        session,
        coverage=supplier_coverage(session, cycle_id=cycle_id),
        not_counting={e: r or "" for e, r in not_counting.items()},
        k=k,
    )


REASON_TEXT = {
    NOT_COUNTING_NEW: "record younger than the minimum age",
    NOT_COUNTING_EMAIL_CHANGED: "email changed within the minimum age",
    NOT_COUNTING_EMAIL_DOMAIN: "email outside the allowed domains",
    NOT_COUNTING_PAPER: "paper channel (PAPER_RATERS_COUNT_TOWARD_K is off)",
}


def describe_coverage(summary: CoverageSummary, *, k: int, min_age_days: int) -> list[str]:
    """Plain sentences for the launch preview, the cycle page and the audit log."""
    lines = []
    total = sum(summary.not_counting.values())
    if total:
        reasons = ", ".join(
            f"{n} {REASON_TEXT.get(reason, reason)}"
            for reason, n in sorted(summary.not_counting.items())
        )
        lines.append(
            f"{total} raters do not count toward k = {k} ({reasons}; minimum age "
            f"{min_age_days} days): their answers count in the figures, but a supplier "
            "needs k raters who count for results to show"
        )
        people = ", ".join(
            f"{name} ({external_id}): {REASON_TEXT.get(reason, reason)}"
            for external_id, name, reason in summary.not_counting_people
        )
        more = total - len(summary.not_counting_people)
        lines.append(f"Not counting: {people}" + (f" and {more} more" if more > 0 else ""))
    else:
        lines.append(f"Every rater counts toward k = {k}")
    if summary.below_k:
        names = ", ".join(
            f"{c.full_name} ({c.counting} of {c.customers})" for c in summary.below_k[:SHOWN_PEOPLE]
        )
        more = len(summary.below_k) - SHOWN_PEOPLE
        lines.append(
            f"{len(summary.below_k)} of {summary.suppliers} suppliers have fewer than {k} "
            f"raters who count, so their results will show “not enough responses”: {names}"
            + (f" and {more} more" if more > 0 else "")
        )
    return lines


def launch_audit_detail(session: Session, *, cycle: Cycle, settings: Settings) -> str:
    """Who does not count toward k at this launch, for the audit log: a made-up rater
    shows up here, with the date of the launch that would have counted them."""
    k = settings.anonymity_min_raters
    lines = describe_coverage(
        cycle_coverage(session, cycle_id=cycle.id, k=k),
        k=k,
        min_age_days=settings.anonymity_rater_min_age_days,
    )
    return ". ".join(lines)[:4000]


def counting_responders(session: Session, *, cycle_id: int) -> dict[int, int]:
    """Per supplier of the cycle: customers who count toward k and answered."""
    # The customers who count and answered, found once; each pair then only asks
    # whether its customer is among them. (Joining every pair to its invitation and
    # snapshot row took five times as long at 450,000 pairs.)
    counted = (
        select(Invitation.customer_id)
        .join(
            CycleEmployee,
            _snapshot_of(cycle_id=Invitation.cycle_id, employee_id=Invitation.customer_id),
        )
        .where(
            Invitation.cycle_id == cycle_id,
            Invitation.used.is_(True),
            CycleEmployee.counts_toward_k.is_(True),
        )
    )
    rows = session.execute(
        select(
            CyclePair.supplier_id,
            func.sum(case((CyclePair.customer_id.in_(counted), 1), else_=0)),
        )
        .where(CyclePair.cycle_id == cycle_id)
        .group_by(CyclePair.supplier_id)
    ).all()
    return {int(supplier_id): int(n) for supplier_id, n in rows}


def forget_respondents(session: Session, *, cycle_id: int) -> None:
    """Keep invited/answered counts per department, then delete the invitations.

    After this the database no longer knows who answered (nor the link hashes, nor
    who was reminded when): only counts, as the results pages need.
    """
    session.execute(
        insert(CycleResponse).from_select(
            ["cycle_id", "department_id", "invited", "responded"],
            select(Invitation.cycle_id, CycleEmployee.department_id, func.count(), _answered())
            .select_from(Invitation)
            .outerjoin(
                CycleEmployee,
                _snapshot_of(cycle_id=Invitation.cycle_id, employee_id=Invitation.customer_id),
            )
            .where(Invitation.cycle_id == cycle_id)
            .group_by(Invitation.cycle_id, CycleEmployee.department_id),
        )
    )
    session.execute(
        delete(Invitation)
        .where(Invitation.cycle_id == cycle_id)
        .execution_options(synchronize_session=False)
    )


def _rating_mail(cycle: Cycle, *, kind: str, tz: str) -> mail_service.MassMail:
    """Invitations and reminders; the text differs by language and supplier count."""

    def render(language: str, supplier_count: Any) -> mail_service.Texts:
        _ = i18n.gettext_for(language)
        context = {
            "name": mail_service.NAME_PLACEHOLDER,
            "cycle_name": cycle.name,
            "supplier_count": supplier_count,
            "closes_at": dates.format_datetime(cycle.closes_at, language, tz) + f" ({tz})",
            "link": mail_service.LINK_PLACEHOLDER,
        }
        if kind == "invitation":
            subject = _("Please rate your colleagues: %(cycle)s") % {"cycle": cycle.name}
        else:
            subject = _("Reminder: please rate your colleagues: %(cycle)s") % {"cycle": cycle.name}
        return (
            subject,
            render_string(f"email/{kind}.txt", context, lang=language, tz=tz),
            render_string(f"email/{kind}.html", context, lang=language, tz=tz),
        )

    return mail_service.MassMail(kind=kind, tag=mail_tag(cycle.id), render=render)


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


def _snapshot_of(
    *, cycle_id: Any, employee_id: Any, row: Any = CycleEmployee
) -> ColumnElement[bool]:
    """Join condition: the launch snapshot ``row`` (CycleEmployee or an alias of it) of
    ``employee_id`` in ``cycle_id``."""
    return and_(row.cycle_id == cycle_id, row.employee_id == employee_id)


def _answered() -> ColumnElement[Any]:
    """How many of the grouped invitations were used."""
    return func.coalesce(func.sum(case((Invitation.used, 1), else_=0)), 0)


def response_counts(session: Session, *, cycle_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """``{cycle_id: (invited, responded)}`` for the cycles given (counts only)."""
    ids = list(cycle_ids)
    if not ids:
        return {}
    live = (
        select(
            Invitation.cycle_id,
            func.count(),
            _answered(),
        )
        .where(Invitation.cycle_id.in_(ids))
        .group_by(Invitation.cycle_id)
    )
    kept = (
        select(
            CycleResponse.cycle_id,
            func.sum(CycleResponse.invited),
            func.sum(CycleResponse.responded),
        )
        .where(CycleResponse.cycle_id.in_(ids))
        .group_by(CycleResponse.cycle_id)
    )
    counts = {cycle_id: (0, 0) for cycle_id in ids}
    for query in (live, kept):
        for cycle_id, invited, responded in session.execute(query):
            counts[cycle_id] = (int(invited), int(responded))
    return counts


SMALL_DEPARTMENTS = "(departments with fewer than k invitations)"


def cycle_progress(session: Session, *, cycle_id: int, min_invited: int) -> CycleProgress:
    """Invited and responded, overall and per department (counts, never who).

    A department with fewer than ``min_invited`` (k) invitations is not shown alone:
    "1 of 2 answered" in a team of two says who did. Those are summed in one row.
    """
    cycle = get_cycle(session, cycle_id=cycle_id)
    if cycle.state == CycleState.closed:
        query = (
            select(
                CycleResponse.department_id,
                CycleDepartment.name,
                CycleResponse.invited,
                CycleResponse.responded,
            )
            .select_from(CycleResponse)
            .outerjoin(
                CycleDepartment,
                and_(
                    CycleDepartment.cycle_id == CycleResponse.cycle_id,
                    CycleDepartment.department_id == CycleResponse.department_id,
                ),
            )
            .where(CycleResponse.cycle_id == cycle_id)
        )
    else:
        query = (
            select(
                CycleEmployee.department_id,
                CycleDepartment.name,
                func.count(),
                _answered(),
            )
            .select_from(Invitation)
            .join(
                CycleEmployee,
                _snapshot_of(cycle_id=Invitation.cycle_id, employee_id=Invitation.customer_id),
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
        )
    shown: list[DepartmentProgress] = []
    small = DepartmentProgress(department_id=None, name=SMALL_DEPARTMENTS, invited=0, responded=0)
    for dept_id, name, invited, responded in session.execute(query).all():
        row = DepartmentProgress(
            department_id=dept_id,
            name=name or "(no department)",
            invited=int(invited),
            responded=int(responded),
        )
        if row.invited >= min_invited:
            shown.append(row)
        else:
            small.invited += row.invited
            small.responded += row.responded
    departments = sorted(shown, key=lambda d: d.name.lower())
    if small.invited:
        departments.append(small)
    return CycleProgress(
        cycle_id=cycle_id,
        invited=sum(d.invited for d in departments),
        responded=sum(d.responded for d in departments),
        undeliverable=mail_service.count_undeliverable(session, tag=mail_tag(cycle_id)),
        departments=departments,
    )


# --- reminders ------------------------------------------------------------------------


def scheduled_reminder_date(cycle: Cycle, settings: Settings, *, today: date) -> date | None:
    """The latest reminder date that has come (``REMINDER_DAYS_BEFORE_CLOSE``, or the
    cycle's own days after opening), if any.

    Dates on or before the launch day are skipped: the invitation has just gone out.
    """
    launched_on = (cycle.launched_at or cycle.opens_at).date()
    if cycle.reminder_days_after_open:
        # The quarterly rhythm's days, counted from the opening ("day 7 and day 9").
        opened_on = cycle.opens_at.date()
        dates = [opened_on + timedelta(days=days) for days in cycle.reminder_days_after_open]
    else:
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
            Invitation.by_paper.is_(False),
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
    renderer = _rating_mail(cycle, kind="reminder", tz=settings.org_time_zone)
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
                variant=int(supplier_count or 0),
                link=private_link(settings, token),
            )
        )
    for start in range(0, len(updates), INSERT_CHUNK):
        session.execute(update(Invitation), updates[start : start + INSERT_CHUNK])
    mail_service.enqueue_messages(session, messages=messages, secret_key=settings.secret_key)
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


def mark_closed(session: Session, *, cycle: Cycle, now: datetime | None = None) -> None:
    cycle.state = CycleState.closed
    cycle.closed_at = now or utcnow()
    session.flush()


# --- the close as a job (run by the worker, see app.lifecycle.run_close_jobs) -------------

STEP_QUEUED = "queued"
STEP_STARTING = "starting"
STEP_RELEASING = "releasing answers"
STEP_COMPUTING = "computing results"
STEP_READY = "results ready"
STEP_FAILED = "failed"
# A worker's hold on a running job. A worker that dies mid-close leaves its transaction
# rolled back and the job "running": after the lease another worker takes it over.
CLOSE_LEASE = timedelta(minutes=10)
REQUESTED_BY_CLOSE_DATE = "close date"


def close_job_key(job_id: int) -> str:
    return f"close-job-{job_id}"


def _with_progress(session: Session, job: CloseJob | None) -> CloseJob | None:
    # SQLite: a running close records its step in a file (see app.db.progress); shown
    # as the row's own value, never written back.
    if job is not None and job.state == CloseJobState.running:
        found = progress.read(session.get_bind(), close_job_key(job.id))
        if found is not None:
            set_committed_value(job, "step", found[0])
            set_committed_value(job, "percent", found[1])
    return job


def latest_close_job(session: Session, *, cycle_id: int) -> CloseJob | None:
    return _with_progress(
        session,
        session.scalars(
            select(CloseJob)
            .where(CloseJob.cycle_id == cycle_id)
            .order_by(CloseJob.id.desc())
            .limit(1)
        ).first(),
    )


def get_close_job(session: Session, *, cycle_id: int, job_id: int) -> CloseJob:
    job = session.get(CloseJob, job_id)
    if job is None or job.cycle_id != cycle_id:
        raise NotFound(f"There is no close job {job_id} for cycle {cycle_id}.")
    _with_progress(session, job)
    return job


def request_close(
    session: Session, *, cycle_id: int, requested_by: str, now: datetime | None = None
) -> tuple[CloseJob, bool]:
    """Queue the close of an open cycle for the worker: (the job, whether it is new).

    A close already queued or running is returned as it is; so is the finished job of a
    closed cycle (closing again changes nothing). A draft cannot be closed. Flush only.
    """
    cycle = get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state in LAUNCHABLE:
        raise Conflict(f"Cycle {cycle.name} was never launched; only an open cycle can close")
    latest = latest_close_job(session, cycle_id=cycle_id)
    if latest is not None and latest.state in (CloseJobState.queued, CloseJobState.running):
        return latest, False
    now = now or utcnow()
    if cycle.state == CycleState.closed:
        if latest is not None and latest.state == CloseJobState.done:
            return latest, False
        # Closed another way (the command line, the demo, before close jobs existed).
        job = CloseJob(
            cycle_id=cycle_id,
            state=CloseJobState.done,
            step=STEP_READY,
            percent=100,
            requested_by=requested_by[:200],
            created_at=now,
            finished_at=cycle.closed_at or now,
        )
        session.add(job)
        session.flush()
        return job, False
    job = CloseJob(
        cycle_id=cycle_id,
        state=CloseJobState.queued,
        step=STEP_QUEUED,
        percent=0,
        requested_by=requested_by[:200],
        created_at=now,
    )
    session.add(job)
    session.flush()
    wake_worker(session)
    return job, True


def _close_job_due(now: datetime) -> ColumnElement[bool]:
    return or_(
        CloseJob.state == CloseJobState.queued,
        and_(CloseJob.state == CloseJobState.running, CloseJob.locked_until < now),
    )


def close_job_waiting(session: Session, *, now: datetime | None = None) -> bool:
    """Whether a close job waits for a worker (a read: the worker asks before it takes
    the write lock to claim one)."""
    return bool(session.scalar(select(exists().where(_close_job_due(now or utcnow())))))


def claim_close_job(session: Session, *, now: datetime | None = None) -> CloseJob | None:
    """Take the oldest queued close job (or one whose worker's lease ran out). Flush only.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never take the same job;
    SQLite has one writer at a time (the caller's write transaction) and ignores it.
    """
    now = now or utcnow()
    job = session.scalars(
        select(CloseJob)
        .where(_close_job_due(now))
        .order_by(CloseJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if job is None:
        return None
    job.state = CloseJobState.running
    job.step = STEP_STARTING
    job.percent = 5
    job.attempts += 1
    job.started_at = now
    job.locked_until = now + CLOSE_LEASE
    job.error = None
    session.flush()
    return job


def fail_close_job(session: Session, *, job_id: int, error: str) -> None:
    """Record that a close failed: its transaction rolled back, the cycle is still open."""
    job = session.get(CloseJob, job_id)
    if job is None:
        return
    job.state = CloseJobState.failed
    job.step = STEP_FAILED
    job.error = error[:2000]
    job.finished_at = utcnow()
    job.locked_until = None
    session.flush()
