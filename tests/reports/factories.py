"""Build closed cycles with snapshots and ballots directly, without the cycles service.

``random_company`` writes a whole random company into the database *and* returns the
same data as a :class:`CycleInput` for the pure module, so the two can be compared.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.cycles.models import (
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
    Invitation,
)
from app.org.models import Department, Employee
from app.ratings import service as ratings_service
from app.reports import coefficients as calc
from app.reports.service import compute_cycle_results
from tests.factories import make_department, make_employee, store_ballots

_seq = itertools.count(1)


def make_cycle(
    session: Session,
    *,
    name: str | None = None,
    period_start: date = date(2026, 4, 1),
    scale: tuple[int, int] = (1, 10),
    state: CycleState = CycleState.closed,
) -> Cycle:
    n = next(_seq)
    opens = datetime.combine(period_start, datetime.min.time())
    cycle = Cycle(
        name=name or f"T{n}-{uuid.uuid4().hex[:6]}",
        period_start=period_start,
        period_end=period_start + timedelta(days=89),
        opens_at=opens,
        closes_at=opens + timedelta(days=30),
        state=state,
        scale_min=scale[0],
        scale_max=scale[1],
    )
    session.add(cycle)
    session.flush()
    return cycle


def snapshot_competency(
    session: Session, cycle: Cycle, *, code: str, weight: float = 1.0, name: str | None = None
) -> CycleCompetency:
    cc = CycleCompetency(
        cycle_id=cycle.id,
        code=code,
        name=name or code.replace("_", " ").title(),
        weight=weight,
        display_order=next(_seq),
    )
    session.add(cc)
    session.flush()
    return cc


def snapshot_department(
    session: Session, cycle: Cycle, department: Department, *, parent: Department | None = None
) -> CycleDepartment:
    row = CycleDepartment(
        cycle_id=cycle.id,
        department_id=department.id,
        parent_id=parent.id if parent else None,
        external_id=department.external_id,
        name=department.name,
    )
    session.add(row)
    session.flush()
    return row


def snapshot_employee(
    session: Session, cycle: Cycle, employee: Employee, *, department: Department | None = None
) -> CycleEmployee:
    row = CycleEmployee(
        cycle_id=cycle.id,
        employee_id=employee.id,
        department_id=department.id if department else employee.department_id,
        manager_id=employee.manager_id,
        full_name=employee.full_name,
        external_id=employee.external_id,
    )
    session.add(row)
    session.flush()
    return row


def add_ballot(
    session: Session,
    cycle: Cycle,
    supplier: Employee,
    scores: Mapping[CycleCompetency, int | None],
    *,
    nps: int | None = None,
    comment: str | None = None,
) -> None:
    by_id = {comp.id: score for comp, score in scores.items()}
    order = ratings_service.cycle_competency_order(session, cycle_id=cycle.id)
    store_ballots(session, cycle.id, [(supplier.id, nps, comment, [by_id.get(c) for c in order])])


def rate(
    session: Session,
    cycle: Cycle,
    supplier: Employee,
    rows: list[list[int | None]],
    comps: list[CycleCompetency],
    *,
    nps: list[int | None] | None = None,
    comments: list[str | None] | None = None,
) -> None:
    """One ballot per row of scores (in competency order); adds the supplier's pairs too."""
    for i, row in enumerate(rows):
        add_ballot(
            session,
            cycle,
            supplier,
            dict(zip(comps, row, strict=True)),
            nps=nps[i] if nps else None,
            comment=comments[i] if comments else None,
        )
    session.merge(CyclePair(cycle_id=cycle.id, supplier_id=supplier.id, customer_id=supplier.id))
    session.flush()


def close(session: Session, cycle: Cycle, *, k: int = 3) -> None:
    cycle.state = CycleState.closed
    cycle.closed_at = datetime(2030, 1, 1)
    session.flush()
    compute_cycle_results(session, cycle_id=cycle.id, min_raters=k)


# --- a small hand-computed company ---------------------------------------------------


def build_three_levels(session: Session, *, name: str | None = None) -> dict[str, Any]:
    """The tree of the pure test (R > C1 > G1, R2), as database rows."""
    r = make_department(session, name="Root")
    c1 = make_department(session, parent=r, name="Child")
    g1 = make_department(session, parent=c1, name="Grandchild")
    r2 = make_department(session, name="Other root")
    emps = {
        name: make_employee(session, department=dept, full_name=name)
        for name, dept in [("e1", r), ("e2", c1), ("e3", g1), ("e4", g1), ("e5", r2), ("e6", r2)]
    }
    cycle = make_cycle(session, name=name, state=CycleState.open)
    q = snapshot_competency(session, cycle, code="quality")
    for dept, parent in [(r, None), (c1, r), (g1, c1), (r2, None)]:
        snapshot_department(session, cycle, dept, parent=parent)
    for emp in emps.values():
        snapshot_employee(session, cycle, emp)
    rate(session, cycle, emps["e1"], [[8], [8], [8]], [q], comments=["Always helps", None, "x"])
    rate(session, cycle, emps["e2"], [[6], [7], [8]], [q], nps=[10, 9, 3])
    rate(session, cycle, emps["e3"], [[4], [5], [6]], [q])
    rate(
        session,
        cycle,
        emps["e4"],
        [[10], [10]],
        [q],
        nps=[10, 10],
        comments=["secret praise", "and more"],
    )
    rate(session, cycle, emps["e5"], [[9], [9], [9]], [q])
    rate(session, cycle, emps["e6"], [], [q])
    close(session, cycle)
    return {"cycle": cycle, "r": r, "c1": c1, "g1": g1, "r2": r2, **emps}


# --- a random company ------------------------------------------------------------------


@dataclass
class RandomCompany:
    cycle: Cycle
    data: calc.CycleInput
    competencies: list[CycleCompetency]
    employees: list[int] = field(default_factory=list)


def random_org(
    session: Session, rng: random.Random, *, employees: int = 60, departments: int = 9
) -> tuple[list[Department], dict[int, int | None], list[Employee]]:
    """A department tree (three levels) and employees spread over it."""
    depts: list[Department] = []
    parents: dict[int, int | None] = {}
    depth: dict[int, int] = {}
    for i in range(departments):
        candidates = [d for d in depts if depth[d.id] < 2]
        parent = rng.choice(candidates) if candidates and i > 1 else None
        d = make_department(session, parent=parent)
        depts.append(d)
        parents[d.id] = parent.id if parent else None
        depth[d.id] = depth[parent.id] + 1 if parent else 0
    emps = [
        make_employee(session, department=rng.choice(depts) if rng.random() > 0.05 else None)
        for _ in range(employees)
    ]
    return depts, parents, emps


def random_company(
    session: Session,
    rng: random.Random,
    *,
    org: tuple[list[Department], dict[int, int | None], list[Employee]],
    name: str,
    period_start: date,
    scale: tuple[int, int] = (1, 10),
    weights: Mapping[str, float] | None = None,
) -> RandomCompany:
    """A closed cycle over the org with random ballots; not yet computed."""
    depts, parents, emps = org
    cycle = make_cycle(
        session, name=name, period_start=period_start, scale=scale, state=CycleState.open
    )
    weights = weights or {"quality": 2.0, "speed": 1.0, "communication": 1.5, "reliability": 0.5}
    comps = [snapshot_competency(session, cycle, code=c, weight=w) for c, w in weights.items()]
    by_code = {c.code: c for c in comps}
    order = sorted(c.id for c in comps)
    session.execute(
        insert(CycleDepartment),
        [
            {
                "cycle_id": cycle.id,
                "department_id": d.id,
                "parent_id": parents[d.id],
                "external_id": d.external_id,
                "name": d.name,
            }
            for d in depts
        ],
    )
    session.execute(
        insert(CycleEmployee),
        [
            {
                "cycle_id": cycle.id,
                "employee_id": e.id,
                "department_id": e.department_id,
                "full_name": e.full_name,
                "external_id": e.external_id,
            }
            for e in emps
        ],
    )
    pairs = []
    ballots: list[tuple[int, int | None, str | None, list[int | None]]] = []
    pure: dict[int, list[calc.BallotAnswers]] = {}
    suppliers: dict[int, int | None] = {}
    invitations: dict[int, bool] = {}
    for supplier in emps:
        if rng.random() < 0.1:
            continue  # not a supplier this cycle
        suppliers[supplier.id] = supplier.department_id
        customers = rng.sample([e for e in emps if e.id != supplier.id], rng.randint(1, 9))
        level = rng.uniform(scale[0], scale[1])
        for customer in customers:
            pairs.append(
                {"cycle_id": cycle.id, "supplier_id": supplier.id, "customer_id": customer.id}
            )
            invitations.setdefault(customer.id, False)
            if rng.random() > 0.8:
                continue  # did not answer
            invitations[customer.id] = True
            answer: dict[str, int | None] = {}
            for code in weights:
                if rng.random() < 0.15:
                    answer[code] = None
                else:
                    answer[code] = min(scale[1], max(scale[0], round(rng.gauss(level, 1.5))))
            nps = rng.randint(0, 10) if rng.random() < 0.7 else None
            comment = rng.choice([None, None, "Great help", "  ", "Slow to answer"])
            by_id = {by_code[code].id: s for code, s in answer.items()}
            ballots.append((supplier.id, nps, comment, [by_id.get(cid) for cid in order]))
            pure.setdefault(supplier.id, []).append(calc.BallotAnswers(answer, nps, comment))
    session.execute(insert(CyclePair), pairs)
    session.execute(
        insert(Invitation),
        [{"cycle_id": cycle.id, "customer_id": c, "used": used} for c, used in invitations.items()],
    )
    if ballots:
        store_ballots(session, cycle.id, ballots)
    session.flush()
    data = calc.CycleInput(
        scale=calc.Scale(*scale),
        weights={c: w for c, w in weights.items()},
        departments=parents,
        suppliers=suppliers,
        ballots=pure,
        invited=len(invitations),
        responded=sum(invitations.values()),
    )
    return RandomCompany(cycle=cycle, data=data, competencies=comps, employees=[e.id for e in emps])
