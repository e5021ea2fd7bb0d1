"""The confirmation round before a launch: suppliers check who should rate them.

HR starts the round on a draft cycle (state ``nominating``). Each supplier in the
matrix gets a private link (hash-only token, as the rating links) to a page listing
their current customers; they add colleagues from the directory, remove customers with
a reason, and confirm. Changes are proposals (:class:`NominationChange`): the matrix
only changes at launch, and only for confirmed lists (``service.apply_nominations``);
unconfirmed lists launch as they are. HR follows the coverage meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from app import i18n
from app.config import Settings
from app.cycles import nomination_approval
from app.cycles import service as cycles_service
from app.cycles.models import (
    Cycle,
    CycleState,
    NominationChange,
    NominationLinksTo,
    NominationList,
    NominationTeam,
)
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.mail import service as mail_service
from app.matrix.models import MatrixLink
from app.org.models import Department, Employee
from app.templating import render_string

REASON_MAX = 300
# A list is a handful of colleagues; a page of proposals this long is a mistake or abuse.
MAX_CHANGES_PER_LIST = 100
SEARCH_MIN, SEARCH_MAX, SEARCH_LIMIT = 2, 100, 20


def nomination_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/n/{token}"


def mail_tag(cycle_id: int) -> str:
    # The cycle's own tag: when it closes, its mail with dead links is purged with it.
    return cycles_service.mail_tag(cycle_id)


# --- starting the round ---------------------------------------------------------------


def _suppliers(session: Session) -> list[Any]:
    """Active suppliers with at least one active customer, as the launch would see them."""
    customer = select(Employee.id).where(Employee.active)
    return list(
        session.execute(
            select(
                Employee.id,
                Employee.email,
                Employee.full_name,
                Employee.language,
                Employee.manager_id,
            )
            .where(
                Employee.active,
                Employee.id.in_(
                    select(MatrixLink.supplier_id).where(MatrixLink.customer_id.in_(customer))
                ),
            )
            .order_by(Employee.id)
        ).all()
    )


def start_round(
    session: Session,
    *,
    cycle_id: int,
    settings: Settings,
    links_to: NominationLinksTo | None = None,
    now: datetime | None = None,
) -> int:
    """Move a draft into its confirmation round and email the links to the lists.

    ``links_to`` (default: the NOMINATION_LINKS_TO setting) says who gets each list's
    link: the supplier, or their line manager on the team page. Every line manager of
    a supplier gets one team link either way, to approve the lists; with
    ``line_manager`` a supplier gets their own link only when no manager can (none,
    inactive, or on the paper channel). Suppliers on the paper channel get no email;
    their list launches as it is unless their manager changes it. Returns how many
    suppliers were emailed (``team_links`` counts the managers). Flush only.
    """
    now = now or utcnow()
    links_to = NominationLinksTo(links_to or settings.nomination_links_to)
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state != CycleState.draft:
        raise Conflict(
            f"Cycle {cycle.name} is {cycle.state}: only a draft can start a confirmation round"
        )
    if cycle.closes_at <= now:
        raise Invalid(f"Cycle {cycle.name} was due to close already; create a new cycle")
    suppliers = _suppliers(session)
    if not suppliers:
        raise Invalid("The matrix has no supplier with an active customer to confirm")
    paper = set(
        session.scalars(
            select(Employee.id).where(
                Employee.id.in_([s.id for s in suppliers]), Employee.paper_channel.is_(True)
            )
        )
    )
    managers = nomination_approval.reachable_managers(
        session, {s.manager_id for s in suppliers if s.manager_id is not None}
    )
    renderer = _nomination_mail(cycle, kind="nomination")
    messages: list[dict[str, Any]] = []
    for supplier in suppliers:
        by_manager = links_to == NominationLinksTo.line_manager and supplier.manager_id in managers
        token = None if supplier.id in paper or by_manager else cycles_service.new_link_token()
        session.add(
            NominationList(
                cycle_id=cycle.id,
                supplier_id=supplier.id,
                token_hash=cycles_service.hash_link_token(token) if token else None,
                created_at=now,
            )
        )
        if token:
            messages.append(
                renderer.message(
                    to_address=supplier.email,
                    to_name=supplier.full_name,
                    language=supplier.language,
                    link=nomination_link(settings, token),
                )
            )
    emailed = len(messages)
    team_renderer = _nomination_mail(cycle, kind="nomination-team")
    for manager in managers.values():
        token = cycles_service.new_link_token()
        session.add(
            NominationTeam(
                cycle_id=cycle.id,
                manager_id=manager.id,
                token_hash=cycles_service.hash_link_token(token),
                created_at=now,
            )
        )
        messages.append(
            team_renderer.message(
                to_address=manager.email,
                to_name=manager.full_name,
                language=manager.language,
                link=nomination_link(settings, token),
            )
        )
    mail_service.enqueue_messages(session, messages=messages, secret_key=settings.secret_key)
    cycle.state = CycleState.nominating
    cycle.nomination_links_to = links_to
    session.flush()
    return emailed


def start_audit_detail(session: Session, *, cycle: Cycle, emailed: int) -> str:
    """What the API and the HR page write in the audit when a round starts."""
    managers = team_links(session, cycle_id=cycle.id)
    return (
        f"{emailed} suppliers emailed, {managers} line managers emailed "
        f"(links to {cycle.nomination_links_to})"
    )


def team_links(session: Session, *, cycle_id: int) -> int:
    """How many line managers got a team link in this cycle's round."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(NominationTeam)
            .where(NominationTeam.cycle_id == cycle_id)
        )
        or 0
    )


def _nomination_mail(cycle: Cycle, *, kind: str) -> mail_service.MassMail:
    """``nomination`` goes to a supplier (their own list), ``nomination-team`` to a line
    manager (their direct reports' lists)."""

    def render(language: str, _variant: Any) -> mail_service.Texts:
        _ = i18n.gettext_for(language)
        context = {
            "name": mail_service.NAME_PLACEHOLDER,
            "cycle_name": cycle.name,
            "link": mail_service.LINK_PLACEHOLDER,
            "opens": cycle.opens_at.date().isoformat(),
        }
        if kind == "nomination-team":
            subject = _("Who should rate your team in %(cycle)s?")
        else:
            subject = _("Who should rate you in %(cycle)s?")
        template = kind.replace("-", "_")
        return (
            subject % {"cycle": cycle.name},
            render_string(f"email/{template}.txt", context, lang=language),
            render_string(f"email/{template}.html", context, lang=language),
        )

    return mail_service.MassMail(kind=kind, tag=mail_tag(cycle.id), render=render)


# --- the supplier's list ----------------------------------------------------------------


def find_list(session: Session, *, token: str) -> NominationList | None:
    """The list of a round still running whose link has this token."""
    found = session.scalar(
        select(NominationList)
        .join(Cycle, Cycle.id == NominationList.cycle_id)
        .where(
            NominationList.token_hash == cycles_service.hash_link_token(token),
            Cycle.state == CycleState.nominating,
        )
    )
    return found


def get_list(session: Session, *, list_id: int) -> NominationList:
    """A list whose round is still running (NotFound once the cycle launched)."""
    found = session.get(NominationList, list_id)
    if found is None or found.token_hash is None:
        raise NotFound("This confirmation link is not valid any more")
    cycle = cycles_service.get_cycle(session, cycle_id=found.cycle_id)
    if cycle.state != CycleState.nominating:
        raise NotFound("This confirmation round has ended")
    return found


@dataclass(frozen=True)
class Colleague:
    id: int
    full_name: str
    department: str
    # "current" (in the matrix), "added" (proposed), "removed" (proposed, with reason)
    status: str = "current"
    reason: str = ""
    # The proposal came from the supplier's line manager (on the team page).
    by_manager: bool = False


def _colleagues(session: Session, where: Any) -> list[Colleague]:
    return [
        Colleague(id=i, full_name=n, department=d or "")
        for i, n, d in session.execute(
            select(Employee.id, Employee.full_name, Department.name)
            .outerjoin(Department, Department.id == Employee.department_id)
            .where(where, Employee.active)
            .order_by(Employee.full_name, Employee.id)
        )
    ]


def customer_list(session: Session, *, nomination: NominationList) -> list[Colleague]:
    """The current customers with the supplier's proposals on top, in name order."""
    current = _colleagues(
        session,
        Employee.id.in_(
            select(MatrixLink.customer_id).where(MatrixLink.supplier_id == nomination.supplier_id)
        ),
    )
    changes = {
        c.customer_id: c
        for c in session.scalars(
            select(NominationChange).where(NominationChange.list_id == nomination.id)
        )
    }
    shown = [
        Colleague(
            c.id,
            c.full_name,
            c.department,
            "removed",
            changes[c.id].reason,
            changes[c.id].proposed_by_id is not None,
        )
        if c.id in changes and changes[c.id].action == "remove"
        else c
        for c in current
    ]
    added = [cid for cid, c in changes.items() if c.action == "add"]
    if added:
        shown += [
            Colleague(
                c.id,
                c.full_name,
                c.department,
                "added",
                by_manager=changes[c.id].proposed_by_id is not None,
            )
            for c in _colleagues(session, Employee.id.in_(added))
        ]
    return sorted(shown, key=lambda c: (c.full_name, c.id))


def search_directory(
    session: Session, *, query: str, exclude: set[int], limit: int = SEARCH_LIMIT
) -> list[Colleague]:
    """Active colleagues whose name or department contains the query (limited)."""
    query = query.strip()
    if not SEARCH_MIN <= len(query) <= SEARCH_MAX:
        raise Invalid(
            f"Type {SEARCH_MIN} to {SEARCH_MAX} characters to search",
            errors=[{"field": "q", "message": "length"}],
        )
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern += "%"
    found = _colleagues(
        session,
        or_(
            func.lower(Employee.full_name).like(pattern, escape="\\"),
            func.lower(Department.name).like(pattern, escape="\\"),
        )
        & Employee.id.not_in(exclude or {0}),
    )
    return found[:limit]


def _change(session: Session, nomination: NominationList, customer_id: int) -> Any:
    return session.scalar(
        select(NominationChange).where(
            NominationChange.list_id == nomination.id, NominationChange.customer_id == customer_id
        )
    )


def _is_customer(session: Session, nomination: NominationList, customer_id: int) -> bool:
    return (
        session.scalar(
            select(MatrixLink.supplier_id).where(
                MatrixLink.supplier_id == nomination.supplier_id,
                MatrixLink.customer_id == customer_id,
            )
        )
        is not None
    )


def _check_room(session: Session, nomination: NominationList) -> None:
    count = session.scalar(
        select(func.count())
        .select_from(NominationChange)
        .where(NominationChange.list_id == nomination.id)
    )
    if (count or 0) >= MAX_CHANGES_PER_LIST:
        raise Invalid(f"A list takes at most {MAX_CHANGES_PER_LIST} changes; ask HR for more")


def propose_add(
    session: Session,
    *,
    nomination: NominationList,
    customer_id: int,
    proposed_by: int | None = None,
) -> None:
    """Propose a colleague as a customer (or take back their removal).

    ``proposed_by``: the line manager's employee id when they act for the supplier.
    """
    employee = session.get(Employee, customer_id)
    if employee is None or not employee.active:
        raise Invalid("This colleague is not in the directory")
    if customer_id == nomination.supplier_id:
        raise Invalid("You cannot rate yourself")
    change = _change(session, nomination, customer_id)
    if change is not None and change.action == "remove":
        session.delete(change)
    elif change is None and not _is_customer(session, nomination, customer_id):
        _check_room(session, nomination)
        session.add(
            NominationChange(
                list_id=nomination.id,
                customer_id=customer_id,
                action="add",
                proposed_by_id=proposed_by,
            )
        )
    # A change reopens the list: confirm (and approve) again.
    nomination_approval.withdraw_approval(nomination)
    session.flush()


def propose_remove(
    session: Session,
    *,
    nomination: NominationList,
    customer_id: int,
    reason: str,
    proposed_by: int | None = None,
) -> None:
    """Propose removing a customer, with a reason (or take back their addition)."""
    change = _change(session, nomination, customer_id)
    if change is not None and change.action == "add":
        session.delete(change)
    elif change is None:
        if not _is_customer(session, nomination, customer_id):
            raise Invalid("This colleague is not on your list")
        reason = " ".join(reason.split())
        if not reason:
            raise Invalid(
                "Say why this colleague should not rate you",
                errors=[{"field": "reason", "message": "required"}],
            )
        if len(reason) > REASON_MAX:
            raise Invalid(
                f"Keep the reason under {REASON_MAX} characters",
                errors=[{"field": "reason", "message": "too long"}],
            )
        _check_room(session, nomination)
        session.add(
            NominationChange(
                list_id=nomination.id,
                customer_id=customer_id,
                action="remove",
                reason=reason,
                proposed_by_id=proposed_by,
            )
        )
    # A change reopens the list: confirm (and approve) again.
    nomination_approval.withdraw_approval(nomination)
    session.flush()


def confirm(session: Session, *, nomination: NominationList, now: datetime | None = None) -> None:
    nomination.confirmed_at = now or utcnow()
    session.flush()


# --- coverage, for HR -------------------------------------------------------------------


@dataclass(frozen=True)
class ListCoverage:
    supplier_id: int
    external_id: str
    full_name: str
    confirmed_at: datetime | None
    customers: int  # after the proposals, if the list is confirmed
    added: int
    removed: int
    emailed: bool
    # Who holds a link to the list: "supplier", "line_manager" (their team page only) or
    # "none" (paper channel, no reachable manager).
    link_to: str = "supplier"
    manager_id: int | None = None
    manager_external_id: str | None = None
    manager_name: str | None = None
    approved_at: datetime | None = None
    approved_by_external_id: str | None = None


@dataclass(frozen=True)
class ManagerCoverage:
    """A line manager's approvals: their direct reports' lists, how many approved."""

    manager_id: int
    external_id: str
    full_name: str
    lists: int
    approved: int
    has_link: bool

    @property
    def waiting(self) -> int:
        return self.lists - self.approved


@dataclass(frozen=True)
class RoundCoverage:
    cycle: Cycle
    lists: list[ListCoverage]
    short_of: int  # k + 2
    managers: list[ManagerCoverage]

    @property
    def confirmed(self) -> int:
        return sum(1 for row in self.lists if row.confirmed_at is not None)

    @property
    def approved(self) -> int:
        return sum(1 for row in self.lists if row.approved_at is not None)

    @property
    def unapproved(self) -> int:
        return len(self.lists) - self.approved

    @property
    def short(self) -> list[ListCoverage]:
        return [row for row in self.lists if row.customers < self.short_of]

    @property
    def managers_waiting(self) -> list[ManagerCoverage]:
        """Line managers with at least one list they have not approved (yet)."""
        return [m for m in self.managers if m.waiting]


def coverage(session: Session, *, cycle_id: int, k: int) -> RoundCoverage:
    """Who confirmed and approved, and each supplier's customers as the launch would take them."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    current = dict(
        session.execute(
            select(MatrixLink.supplier_id, func.count())
            .join(Employee, Employee.id == MatrixLink.customer_id)
            .where(Employee.active)
            .group_by(MatrixLink.supplier_id)
        ).all()
    )
    proposals: dict[tuple[int, str], int] = {
        (list_id, action): n
        for list_id, action, n in session.execute(
            select(NominationChange.list_id, NominationChange.action, func.count())
            .join(NominationList, NominationList.id == NominationChange.list_id)
            .where(NominationList.cycle_id == cycle_id)
            .group_by(NominationChange.list_id, NominationChange.action)
        )
    }
    # A team link works while its token lives (until launch) and its manager is here.
    teams = {
        manager_id: token_hash is not None and active
        for manager_id, token_hash, active in session.execute(
            select(NominationTeam.manager_id, NominationTeam.token_hash, Employee.active)
            .join(Employee, Employee.id == NominationTeam.manager_id)
            .where(NominationTeam.cycle_id == cycle_id)
        )
    }
    supplier, manager, approver = aliased(Employee), aliased(Employee), aliased(Employee)
    rows = []
    for found in session.execute(
        select(
            NominationList,
            supplier.external_id,
            supplier.full_name,
            manager.id.label("manager_id"),
            manager.external_id.label("manager_external_id"),
            manager.full_name.label("manager_name"),
            approver.external_id.label("approver"),
        )
        .join(supplier, supplier.id == NominationList.supplier_id)
        .outerjoin(manager, manager.id == supplier.manager_id)
        .outerjoin(approver, approver.id == NominationList.approved_by_id)
        .where(NominationList.cycle_id == cycle_id)
        .order_by(supplier.full_name, supplier.id)
    ):
        nomination = found[0]
        added = proposals.get((nomination.id, "add"), 0)
        removed = proposals.get((nomination.id, "remove"), 0)
        customers = current.get(nomination.supplier_id, 0)
        if nomination.confirmed_at is not None:
            customers += added - removed
        if nomination.token_hash is not None:
            link_to = "supplier"
        elif teams.get(found.manager_id):
            link_to = "line_manager"
        else:
            link_to = "none"
        rows.append(
            ListCoverage(
                supplier_id=nomination.supplier_id,
                external_id=found.external_id,
                full_name=found.full_name,
                confirmed_at=nomination.confirmed_at,
                customers=customers,
                added=added,
                removed=removed,
                emailed=link_to != "none" or cycle.state != CycleState.nominating,
                link_to=link_to,
                manager_id=found.manager_id,
                manager_external_id=found.manager_external_id,
                manager_name=found.manager_name,
                approved_at=nomination.approved_at,
                approved_by_external_id=found.approver,
            )
        )
    return RoundCoverage(cycle=cycle, lists=rows, short_of=k + 2, managers=_managers(rows, teams))


def _managers(rows: list[ListCoverage], teams: dict[int, bool]) -> list[ManagerCoverage]:
    by_manager: dict[int, list[ListCoverage]] = {}
    for row in rows:
        if row.manager_id is not None:
            by_manager.setdefault(row.manager_id, []).append(row)
    found = [
        ManagerCoverage(
            manager_id=manager_id,
            external_id=lists[0].manager_external_id or "",
            full_name=lists[0].manager_name or "",
            lists=len(lists),
            approved=sum(1 for row in lists if row.approved_at is not None),
            has_link=teams.get(manager_id, False),
        )
        for manager_id, lists in by_manager.items()
    ]
    return sorted(found, key=lambda m: (m.full_name, m.manager_id))
