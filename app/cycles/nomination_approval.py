"""Line managers in the confirmation round: one link to their team's lists, and approval.

Each line manager whose direct reports have lists in a round gets one private link
(:class:`NominationTeam`, hash-only token like the suppliers'). Their team page shows
each report's list; they can add or remove colleagues on the report's behalf (recorded
as the report's proposals, marked as the manager's) and approve each list. Approving a
list also confirms it, so the launch applies its proposals; a later change by anyone
withdraws both, so an approval always covers the list as it stands.

Who approved is an employee id: nominations say who rates whom, never how, so nothing
here touches anonymity. The team is read live (reports whose manager this is now).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState, NominationList, NominationTeam
from app.db import utcnow
from app.errors import NotFound
from app.org.models import Department, Employee


def reachable_managers(session: Session, manager_ids: set[int]) -> dict[int, Any]:
    """The managers among these who can get a link: active and not on the paper channel."""
    if not manager_ids:
        return {}
    return {
        row.id: row
        for row in session.execute(
            select(Employee.id, Employee.email, Employee.full_name, Employee.language)
            .where(
                Employee.id.in_(manager_ids),
                Employee.active,
                Employee.paper_channel.is_(False),
            )
            .order_by(Employee.id)
        )
    }


def find_team(session: Session, *, token: str) -> NominationTeam | None:
    """The team link of a round still running with this token (of a manager still here)."""
    found = session.scalar(
        select(NominationTeam)
        .join(Cycle, Cycle.id == NominationTeam.cycle_id)
        .join(Employee, Employee.id == NominationTeam.manager_id)
        .where(
            NominationTeam.token_hash == cycles_service.hash_link_token(token),
            Cycle.state == CycleState.nominating,
            Employee.active,
        )
    )
    return found


def get_team(session: Session, *, team_id: int) -> NominationTeam:
    """A team link whose round is still running (NotFound once the cycle launched)."""
    found = session.get(NominationTeam, team_id)
    manager = session.get(Employee, found.manager_id) if found is not None else None
    # A manager who left (or was erased) during the round approves nothing any more.
    if found is None or found.token_hash is None or manager is None or not manager.active:
        raise NotFound("This team link is not valid any more")
    cycle = cycles_service.get_cycle(session, cycle_id=found.cycle_id)
    if cycle.state != CycleState.nominating:
        raise NotFound("This confirmation round has ended")
    return found


@dataclass(frozen=True)
class TeamMember:
    nomination: NominationList
    full_name: str
    department: str


def team_lists(session: Session, *, team: NominationTeam) -> list[TeamMember]:
    """The lists of the manager's active direct reports in this round, by name."""
    return [
        TeamMember(nomination=n, full_name=name, department=dept or "")
        for n, name, dept in session.execute(
            select(NominationList, Employee.full_name, Department.name)
            .join(Employee, Employee.id == NominationList.supplier_id)
            .outerjoin(Department, Department.id == Employee.department_id)
            .where(
                NominationList.cycle_id == team.cycle_id,
                Employee.manager_id == team.manager_id,
                Employee.active,
            )
            .order_by(Employee.full_name, Employee.id)
        )
    ]


def team_list(session: Session, *, team: NominationTeam, list_id: int) -> NominationList:
    """One report's list, only if that report is on this manager's team now."""
    found = session.scalar(
        select(NominationList)
        .join(Employee, Employee.id == NominationList.supplier_id)
        .where(
            NominationList.id == list_id,
            NominationList.cycle_id == team.cycle_id,
            Employee.manager_id == team.manager_id,
            Employee.active,
        )
    )
    if found is None:
        raise NotFound("This list is not one of your team's")
    return found


def approve(
    session: Session,
    *,
    team: NominationTeam,
    nomination: NominationList,
    now: datetime | None = None,
) -> None:
    """Approve a report's list as it stands (and confirm it, if the report has not)."""
    now = now or utcnow()
    if nomination.approved_at is not None:
        return  # approving twice (a double click) changes nothing
    if nomination.confirmed_at is None:
        nomination.confirmed_at = now
    nomination.approved_at = now
    nomination.approved_by_id = team.manager_id
    manager = session.get(Employee, team.manager_id)
    supplier = session.get(Employee, nomination.supplier_id)
    # The team page has no HR login: the manager is named by their employee id, in the
    # detail, where an erasure finds and replaces it.
    auth_service.record_audit(
        session,
        actor="line manager",
        action="approve nominations",
        entity="nomination_list",
        entity_id=nomination.id,
        detail=f"{supplier.external_id if supplier else nomination.supplier_id}'s list "
        f"approved by {manager.external_id if manager else team.manager_id}",
    )
    session.flush()


def withdraw_approval(nomination: NominationList) -> None:
    """A changed list is neither confirmed nor approved until someone looks again."""
    nomination.confirmed_at = None
    nomination.approved_at = None
    nomination.approved_by_id = None
